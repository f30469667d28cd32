"""Relabelling history from the log: the pure half of ``agentgym labeller replay``.

Kafka keeps every experience and every piece of feedback, so when the rules change the
past can be labelled again. :class:`PartitionReplay` takes one partition's events (the
trace topics are co-partitioned by trace id, so a partition holds whole traces) and the
outcomes already emitted for them, decides every trace again with the given rules and
model (:func:`agentgym.processors.labelling.decision.decide`, as the live labeller does),
and returns the Outcome revisions to emit. The Kafka side (seeking by timestamp,
checkpoints, progress) is :mod:`agentgym.processors.relabel`.

**The revision scheme.** Storage keeps, per trace, the Outcome with the highest
``revision``; among equal revisions, the one inserted last (``outcomes`` is a
``ReplacingMergeTree(revision)``, and ``v_outcomes_latest``/``v_runs`` read it with
``FINAL``). The live labeller numbers its revisions 0, 1, 2, … in its own trace state
(event id ``<trace>:outcome:<n>``, :func:`~agentgym.processors.labelling.engine.outcome_event_id`),
which knows nothing of a replay. So a replay revision:

* takes the number ``L + 1``, where ``L`` is the highest *live* revision of the trace
  in ``gym-outcomes-v1`` (``-1``: none): above every live revision so far, so the
  views show it at once; and never above the live labeller's *next* revision
  (also ``L + 1``), which is therefore not shadowed: equal numbers, and the live one,
  written later, wins;
* gets its own event id, ``<trace>:outcome:<L + 1>:replay:<digest>``, the digest a hash
  of the decision (label, confidence, labeller, corrected output). It never collides
  with a live id, and the same decision replayed twice has the same id, so a replay
  that is interrupted and started again is deduplicated downstream;
* is emitted only when the new decision differs from the trace's latest outcome (live
  or replay, as storage shows it; :meth:`Decision.same_as`, as the live labeller
  compares): a second replay with the same rules and model emits nothing.

A later replay of the same trace takes ``L + 1`` again (equal numbers, inserted later:
it wins); a later live revision ``L + 1`` or ``L + 2`` wins over it. Consumers that
follow the topic (the experiments processor) take a replay revision as what it is: a
revised label of the trace. One caveat: the live labeller keeps labelling with *its*
rules, so a trace that gets new feedback after the replay is labelled again with them;
give the live labeller the fixed rules (``AGENTGYM_LABELLER_RULES_PATH``) before
replaying the past.

Which traces: those whose *experience* is in the window (by its Kafka timestamp), with
all their feedback up to the end of the topic (a late correction counts). Feedback of
a trace whose experience is outside the window is not relabelled (the run's features
and model version would be missing). Deleted users' events and deleted traces
(:class:`~agentgym.processors.deletions.DeletionSet`) are skipped, as the live labeller
skips them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agentgym.processors.labelling.decision import Decision, decide
from agentgym.processors.labelling.engine import AgentLearner, LabellingEngine
from agentgym.processors.labelling.exceptions import InvalidEventError, LabellingError
from agentgym.processors.labelling.state import TraceState

if TYPE_CHECKING:  # (deletions imports the dataset store; only its set's interface is used here)
    from agentgym.processors.deletions import DeletionSet

__all__ = [
    "REPLAY_MARK",
    "ReplayError",
    "Relabel",
    "PartitionReplay",
    "PartitionCounts",
    "TraceOutcomes",
    "is_replay_id",
    "parse_time",
    "replay_event_id",
]

REPLAY_MARK = ":replay:"
"""What sets a replay revision's event id apart from the live labeller's ``<trace>:outcome:<n>``."""

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*(?:ago)?\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_MIN_EPOCH_MS = 10**11  # 1973-03-03 in ms; a smaller number is almost surely seconds


class ReplayError(LabellingError, ValueError):
    """A replay asked for with bad arguments; the message names the option and the reason."""


def parse_time(value: str, option: str, now_ms: int) -> int:
    """A time given on the command line, as Unix epoch milliseconds.

    Accepted: ISO 8601 (``2026-12-03T08:00:00Z``, ``2026-12-03``; no zone means UTC),
    epoch milliseconds (``1764748800000``), a duration ago (``90s``, ``30m``, ``2h``,
    ``7d``, ``1w``), or ``now``.

    Raises:
        ReplayError: naming ``option`` and why ``value`` is not a time.
    """
    text = (value or "").strip()
    if not text:
        raise ReplayError(f"{option}: is empty; give ISO 8601 (2026-12-03T08:00:00Z), epoch milliseconds or a duration ago (2h)")
    if text.lower() == "now":
        return now_ms
    if re.fullmatch(r"\d+", text):
        ms = int(text)
        if ms < _MIN_EPOCH_MS:
            raise ReplayError(f"{option}: {text} is not epoch milliseconds (before 1973); seconds? give {ms * 1000}")
        return ms
    m = _RELATIVE.match(text)
    if m:
        return now_ms - int(float(m.group(1)) * _UNIT_MS[m.group(2).lower()])
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        raise ReplayError(f"{option}: {text!r} is not a time; give ISO 8601 (2026-12-03T08:00:00Z), epoch milliseconds "
                          "or a duration ago (90s, 30m, 2h, 7d, 1w)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def is_replay_id(event_id: str) -> bool:
    """Whether an Outcome event id is a replay revision's (not the live labeller's)."""
    return REPLAY_MARK in event_id


def replay_event_id(trace_id: str, revision: int, decision: Decision) -> str:
    """``<trace>:outcome:<revision>:replay:<digest>``: deterministic for one decision at one revision."""
    what = json.dumps([decision.label, f"{decision.confidence:.4f}", decision.labeller, decision.corrected_output])
    return f"{trace_id}:outcome:{revision}{REPLAY_MARK}{hashlib.sha256(what.encode()).hexdigest()[:12]}"


@dataclass
class TraceOutcomes:
    """What ``gym-outcomes-v1`` holds for one trace, read in partition order.

    Attributes:
        live_revision: the highest revision the live labeller emitted (-1: none).
        latest: the outcome storage shows: highest revision, the later one among equals.
    """

    live_revision: int = -1
    latest: dict[str, Any] | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        """Takes in one Outcome record (call in partition order)."""
        revision = int(record.get("revision") or 0)
        if not is_replay_id(str(record.get("event_id") or "")):
            self.live_revision = max(self.live_revision, revision)
        if self.latest is None or revision >= int(self.latest.get("revision") or 0):
            self.latest = dict(record)

    @property
    def next_revision(self) -> int:
        """The revision a replay emits now: one above the live labeller's latest."""
        return self.live_revision + 1

    def emitted(self) -> dict[str, Any] | None:
        """The latest outcome in the form :meth:`Decision.same_as` compares."""
        o = self.latest
        if o is None:
            return None
        return {"label": o.get("label"), "confidence": o.get("confidence", -1.0), "labeller": o.get("labeller"),
                "corrected_output": o.get("corrected_output")}


@dataclass(frozen=True)
class Relabel:
    """One trace decided again.

    Attributes:
        outcome: the Outcome record to emit, or None when the decision equals the latest outcome.
        previous: the latest outcome before (None: the trace had none).
    """

    trace_id: str
    tenant_id: str
    agent_id: str
    decision: Decision
    outcome: dict[str, Any] | None
    previous: dict[str, Any] | None


@dataclass
class PartitionCounts:
    """What one partition's replay read and decided."""

    experiences: int = 0
    feedback: int = 0
    outcomes: int = 0
    traces: int = 0
    relabelled: int = 0
    unchanged: int = 0
    skipped_deleted: int = 0
    skipped_invalid: int = 0
    skipped_no_experience: int = 0

    def add(self, other: PartitionCounts) -> PartitionCounts:
        for f in self.__dataclass_fields__:
            setattr(self, f, getattr(self, f) + getattr(other, f))
        return self

    @property
    def records(self) -> int:
        return self.experiences + self.feedback + self.outcomes


@dataclass
class PartitionReplay:
    """One partition's traces, decided again.

    Feed the experiences of the window (:meth:`experience`), then their feedback
    (:meth:`feedback`: only that of traces whose experience was taken), and the
    partition's outcomes (:meth:`outcome`, in partition order); :meth:`relabel` then
    yields every trace's new decision and the revision to emit, if any.

    Args:
        engine: the rules (its rule book) and the labeller's settings.
        learner_for: the agent's learner (the live labeller's checkpoint), or None:
            rules only; called once per agent.
        partition: the partition (its outcomes go to the same one).
        tenant_id, agent_id: only this tenant (and agent); None: every one.
        deletions: deleted users and traces to skip.
    """

    engine: LabellingEngine
    learner_for: Callable[[str, str], AgentLearner | None]
    partition: int
    tenant_id: str | None = None
    agent_id: str | None = None
    deletions: DeletionSet | None = None
    counts: PartitionCounts = field(default_factory=PartitionCounts)
    _states: dict[str, TraceState] = field(default_factory=dict)
    _outcomes: dict[str, TraceOutcomes] = field(default_factory=dict)
    _learners: dict[tuple[str, str], AgentLearner] = field(default_factory=dict)

    def __len__(self) -> int:
        """The traces taken so far (those with an experience in the window)."""
        return len(self._states)

    def _wanted(self, record: Mapping[str, Any]) -> bool:
        return ((self.tenant_id is None or record.get("tenant_id") == self.tenant_id)
                and (self.agent_id is None or record.get("agent_id") == self.agent_id))

    def _deleted(self, name: str, record: Mapping[str, Any]) -> bool:
        if self.deletions is not None and self.deletions.skips(name, record):
            self.counts.skipped_deleted += 1
            return True
        return False

    def experience(self, record: dict[str, Any], key: bytes | None = None) -> bool:
        """Takes one Experience of the window; returns whether it joined a trace."""
        if not self._wanted(record):
            return False
        self.counts.experiences += 1
        if self._deleted("Experience", record):
            return False
        try:
            ts = int(record.get("timestamp_ms") or 0)
            st = self.engine.ingest_experience(self._states.get(record.get("trace_id") or ""), record, self.partition, ts, key)
        except InvalidEventError:
            self.counts.skipped_invalid += 1
            return False
        self._states[st.trace_id] = st
        return True

    def feedback(self, record: dict[str, Any], key: bytes | None = None) -> bool:
        """Takes one Feedback record; only a trace whose experience was taken (same tenant) keeps it."""
        if not self._wanted(record):
            return False
        self.counts.feedback += 1
        if self._deleted("Feedback", record):
            return False
        st = self._states.get(record.get("trace_id") or "")
        if st is None or st.tenant_id != record.get("tenant_id"):
            self.counts.skipped_no_experience += 1
            return False
        try:
            self.engine.ingest_feedback(st, record, self.partition, int(record.get("timestamp_ms") or 0), key)
        except InvalidEventError:
            self.counts.skipped_invalid += 1
            return False
        return True

    def outcome(self, record: Mapping[str, Any]) -> None:
        """Takes one Outcome already in the topic (live or replay), in partition order."""
        st = self._states.get(str(record.get("trace_id") or ""))
        if st is None or st.tenant_id != record.get("tenant_id"):
            return
        self.counts.outcomes += 1
        self._outcomes.setdefault(st.trace_id, TraceOutcomes()).add(record)

    def _learner(self, tenant_id: str, agent_id: str) -> AgentLearner:
        key = (tenant_id, agent_id)
        learner = self._learners.get(key)
        if learner is None:
            # the checkpoint, unless the rules now name another model kind (then a fresh one, as live)
            learner = self._learners[key] = self.engine.fit_learner(self.learner_for(tenant_id, agent_id), tenant_id, agent_id)
        return learner

    def relabel(self, now_ms: int) -> Iterator[Relabel]:
        """Every trace decided again (in order of trace id), with the revision to emit where it changed."""
        engine = self.engine
        for trace_id in sorted(self._states):
            st = self._states[trace_id]
            if self.deletions is not None and self.deletions.skips_trace(st.tenant_id, trace_id):
                self.counts.skipped_deleted += 1
                continue
            self.counts.traces += 1
            learner = self._learner(st.tenant_id, st.agent_id)
            rules = engine.rulebook.rules_for(st.tenant_id, st.agent_id)
            decision = decide(st, rules, engine.rulebook.version, learner.model, learner.base_rate)
            history = self._outcomes.get(trace_id) or TraceOutcomes()
            if decision.same_as(history.emitted()):
                self.counts.unchanged += 1
                yield Relabel(trace_id, st.tenant_id, st.agent_id, decision, None, history.latest)
                continue
            st.revision = history.next_revision
            record = engine.outcome_record(st, decision, now_ms)
            record["event_id"] = replay_event_id(trace_id, st.revision, decision)
            record["reasons"] = [*record["reasons"], f"replay: rules {engine.rulebook.version}"]
            self.counts.relabelled += 1
            yield Relabel(trace_id, st.tenant_id, st.agent_id, decision, record, history.latest)
