"""Per-trace join state: what the labeller keeps about one trace between events.

The state is small and JSON-serialisable (it lives in a changelog-backed Faust table):
the run is kept as a :class:`RunSummary` (its features and the fields an Outcome
needs, not its messages), feedback as a bounded list of :class:`FeedbackItem`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agentgym.processors.labelling.exceptions import InvalidEventError

__all__ = [
    "RunSummary",
    "FeedbackItem",
    "TraceState",
    "summarise_experience",
    "feedback_item",
    "validate_feedback",
    "validate_experience",
    "MAX_COMMENT_CHARS",
]

MAX_COMMENT_CHARS = 2000  # comments are kept only for their sentiment words
FeedbackSourceName = Literal["human", "ai", "system"]
_KINDS = ("rating", "thumbs", "comment", "correction", "implicit")


@dataclass
class RunSummary:
    """The parts of an Experience the labeller needs (features and Outcome fields)."""

    event_id: str
    timestamp_ms: int
    model_name: str
    model_version: str
    experiment_id: str | None
    variant: str | None
    unit_id: str | None
    status: str  # ok, error, timeout, cancelled
    run_error: bool  # the Experience's error field was set
    latency_ms: float
    tokens: int  # prompt + completion (the steps' sum when the run reports none)
    cost_usd: float
    n_steps: int
    step_errors: int  # errored steps that are not tool calls
    failed_tool_calls: int  # tool steps that errored
    step_retries: int  # steps that repeat the step before them right after it errored
    output_empty: bool
    output_chars: int
    # Experience v3: the experiment configuration version and status that served the run
    # (0 and '' from older SDKs, and in trace states saved before these fields existed)
    config_version: int = 0
    experiment_status: str = ""


@dataclass
class FeedbackItem:
    """One Feedback record, normalised (ratings to [0, 1])."""

    event_id: str
    timestamp_ms: int
    kind: str
    source: str
    rating: float | None = None  # rating / rating_scale
    thumbs_up: bool | None = None
    comment: str | None = None
    correction: str | None = None
    signal: str | None = None
    value: float | None = None

    @property
    def explicit(self) -> bool:
        """A rating, thumbs or correction (comments and implicit signals are not labels)."""
        return self.kind in ("rating", "thumbs", "correction")


@dataclass
class TraceState:
    """Everything known about one trace, and what was emitted for it.

    Attributes:
        partition: the Kafka partition the trace's events arrive on (experiences,
            feedback and outcomes are co-partitioned); outcomes and changelog writes
            go to it.
        last_event_ms: wall-clock time of the last experience/feedback (the quiet
            period counts from here).
        dirty: something arrived since the last outcome was emitted.
        revision: the last emitted Outcome revision (-1: none yet).
        emitted: label, confidence, labeller and reasons of the last emitted outcome.
        learned: the label the online model was trained with on this trace, if any.
        drift_counted: the trace's outcome was fed to the drift detector.
    """

    trace_id: str
    tenant_id: str
    agent_id: str
    partition: int
    first_seen_ms: int
    last_event_ms: int
    run: RunSummary | None = None
    feedback: list[FeedbackItem] = field(default_factory=list)
    dirty: bool = True
    revision: int = -1
    emitted: dict[str, Any] | None = None
    learned: str | None = None
    drift_counted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the Faust table's value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceState:
        """Inverse of :meth:`to_dict`; unknown keys (from a newer writer) are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in data.items() if k in known}
        run = d.get("run")
        d["run"] = RunSummary(**run) if run else None
        fb_fields = set(FeedbackItem.__dataclass_fields__)
        d["feedback"] = [FeedbackItem(**{k: v for k, v in f.items() if k in fb_fields}) for f in d.get("feedback") or []]
        return cls(**d)

    def add_run(self, run: RunSummary, now_ms: int) -> None:
        """Joins the experience (a redelivered one replaces the earlier copy)."""
        self.run = run
        self.touch(now_ms)

    def add_feedback(self, item: FeedbackItem, now_ms: int, max_items: int = 50) -> bool:
        """Joins one feedback item; False (and nothing changes) for a redelivered one."""
        if any(f.event_id == item.event_id for f in self.feedback):
            return False
        self.feedback.append(item)
        self.feedback.sort(key=lambda f: f.timestamp_ms)
        while len(self.feedback) > max_items:
            # drop the oldest, but a correction last: it carries the training target
            drop = next((i for i, f in enumerate(self.feedback) if f.kind != "correction"), 0)
            del self.feedback[drop]
        self.touch(now_ms)
        return True

    def touch(self, now_ms: int) -> None:
        """Marks new information: re-arms the quiet period."""
        self.last_event_ms = max(self.last_event_ms, now_ms)
        self.dirty = True

    def due_at(self, quiet_period_ms: int, orphan_wait_ms: int) -> int:
        """Wall-clock ms at which this trace should be (re)labelled, if dirty."""
        return self.last_event_ms + (quiet_period_ms if self.run is not None else max(quiet_period_ms, orphan_wait_ms))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_experience(record: dict[str, Any], key: bytes | None = None) -> None:
    """Checks what the labeller relies on in a decoded Experience.

    Raises:
        InvalidEventError: naming the field.
    """
    for f in ("trace_id", "tenant_id", "agent_id"):
        if not record.get(f):
            raise InvalidEventError("Experience", f, "must be a non-empty string")
    if not _finite(record.get("latency_ms")) or record["latency_ms"] < 0:
        raise InvalidEventError("Experience", "latency_ms", f"must be a finite number >= 0, got {record.get('latency_ms')!r}")
    _check_key("Experience", record, key)


def _check_key(name: str, record: dict[str, Any], key: bytes | None) -> None:
    # the key decides the partition: a key that is not the trace id lands the event
    # where the rest of its trace is not, and the join would silently miss it
    if key is not None and key != record["trace_id"].encode():
        raise InvalidEventError(name, "trace_id", f"message key {key[:64]!r} is not the trace id {record['trace_id'][:64]!r}")


def validate_feedback(record: dict[str, Any], key: bytes | None = None) -> None:
    """Checks a decoded Feedback record for what the schema cannot express.

    Raises:
        InvalidEventError: naming the field, e.g. a rating outside [0, rating_scale]
            or a ``thumbs`` record without ``thumbs_up``.
    """
    for f in ("trace_id", "tenant_id", "agent_id"):
        if not record.get(f):
            raise InvalidEventError("Feedback", f, "must be a non-empty string")
    kind = record.get("kind")
    if kind not in _KINDS:
        raise InvalidEventError("Feedback", "kind", f"{kind!r} is not one of {list(_KINDS)}")
    scale = record.get("rating_scale", 5.0)
    rating = record.get("rating")
    if rating is not None:
        if not _finite(scale) or scale <= 0:
            raise InvalidEventError("Feedback", "rating_scale", f"must be a finite number > 0, got {scale!r}")
        if not _finite(rating) or not 0 <= rating <= scale:
            raise InvalidEventError("Feedback", "rating", f"{rating!r} is outside [0, {scale}]")
    required = {"rating": "rating", "thumbs": "thumbs_up", "correction": "correction", "comment": "comment", "implicit": "signal"}[kind]
    value = record.get(required)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidEventError("Feedback", required, f"a {kind} feedback needs {required}")
    v = record.get("value")
    if v is not None and not _finite(v):
        raise InvalidEventError("Feedback", "value", f"must be finite, got {v!r}")
    _check_key("Feedback", record, key)


def summarise_experience(record: dict[str, Any]) -> RunSummary:
    """Reduces a decoded Experience to its :class:`RunSummary`."""
    steps = record.get("steps") or []
    step_errors = failed_tools = retries = 0
    step_tokens = 0
    prev: dict[str, Any] | None = None
    for s in steps:
        errored = bool(s.get("error"))
        if errored:
            if s.get("kind") == "tool":
                failed_tools += 1
            else:
                step_errors += 1
        # a retry: the same step again right after it failed
        if prev is not None and prev.get("error") and prev.get("name") == s.get("name"):
            retries += 1
        step_tokens += int(s.get("prompt_tokens") or 0) + int(s.get("completion_tokens") or 0)
        prev = s
    tokens = int(record.get("prompt_tokens") or 0) + int(record.get("completion_tokens") or 0)
    assignment = record.get("assignment") or {}
    output = record.get("output")
    return RunSummary(
        event_id=record["event_id"],
        timestamp_ms=int(record["timestamp_ms"]),
        model_name=record.get("model_name") or "",
        model_version=record.get("model_version") or "",
        experiment_id=assignment.get("experiment_id"),
        variant=assignment.get("variant"),
        unit_id=assignment.get("unit_id"),
        status=str(record.get("status") or "ok"),
        run_error=bool(record.get("error")),
        latency_ms=float(record.get("latency_ms") or 0.0),
        tokens=tokens or step_tokens,
        cost_usd=float(record.get("cost_usd") or 0.0),
        n_steps=len(steps),
        step_errors=step_errors,
        failed_tool_calls=failed_tools,
        step_retries=retries,
        output_empty=not (output or "").strip(),
        output_chars=len(output or ""),
        config_version=int(assignment.get("config_version") or 0),
        experiment_status=str(assignment.get("experiment_status") or ""),
    )


def feedback_item(record: dict[str, Any]) -> FeedbackItem:
    """A validated Feedback record as a :class:`FeedbackItem` (call :func:`validate_feedback` first)."""
    rating = record.get("rating")
    scale = record.get("rating_scale") or 5.0
    comment = record.get("comment")
    return FeedbackItem(
        event_id=record["event_id"],
        timestamp_ms=int(record["timestamp_ms"]),
        kind=record["kind"],
        source=record.get("source") or "human",
        rating=None if rating is None else float(rating) / float(scale),
        thumbs_up=record.get("thumbs_up"),
        comment=comment[:MAX_COMMENT_CHARS] if comment else None,
        correction=record.get("correction"),
        signal=(record.get("signal") or "").strip().lower() or None,
        value=record.get("value"),
    )
