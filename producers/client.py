"""The thin producer SDK: what an agent imports to send experience and feedback.

    from agentgym import AgentGym

    gym = AgentGym(tenant_id="acme", agent_id="support-bot")   # or AGENTGYM_* env
    with gym.run(input="Where is my order?", model_name="llama-3.2-1b", model_version="v3") as run:
        with run.step("lookup_order", kind="tool", input={"id": 42}) as step:
            step.output = {"status": "shipped"}
        run.output = "It shipped yesterday."
    gym.record_feedback(run.trace_id, thumbs_up=True)
    gym.close()

Guarantees: ``record_*`` never blocks on Kafka and never raises because of it or of
the disk (asynchronous, idempotent produce with ``acks=all``, compression and
batching). Events Kafka cannot take go to a local durable spool and are replayed, in
order, when the broker is back: at once while the broker is known to be unreachable
(librdkafka reports all brokers down: the queue is moved to the spool), else after
``delivery_timeout_s``. With ``durability="spool"`` every event is written to the spool
before it is sent (nothing is only in memory, at some latency). Events that cannot be
kept (the spool's disk is full or read-only) are counted in ``gym.stats["dropped"]``
and logged at a bounded rate; events that can never be delivered are quarantined
(``gym.stats["quarantined"]``). Misuse raises :class:`InvalidEventError` naming the
field, an event over the size limit included.

Personal data and secrets are masked before an event is encoded, so they never leave the
process, the spool included (:mod:`agentgym.producers.masking`; ``AGENTGYM_MASK_*``,
``mask_hook=``; on by default; docs/privacy.md).
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from agentgym.producers.assignment import Assignment
from agentgym.producers.exceptions import ConfigError, InvalidEventError
from agentgym.producers.kafka_security import librdkafka_security
from agentgym.producers.follower import ExperimentFollower
from agentgym.producers.masking import Masker, MaskingConfigError, MaskingPolicy
from agentgym.producers.ratelog import RateLimitedLog, RateLimitFilter
from agentgym.producers.run import Run
from agentgym.producers.settings import ProducerSettings
from agentgym.producers.spool import Spool, read_segment
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.confluent import SchemaRegistryClient
from agentgym.schemas.exceptions import SchemaValidationError
from agentgym.schemas.topics import TOPICS

__all__ = ["AgentGym", "SDK_VERSION"]

SDK_VERSION = "agentgym-py/0.1.0"
log = logging.getLogger("agentgym")

_EXPERIENCES = TOPICS["experiences"].name
_FEEDBACK = TOPICS["feedback"].name
_RUN_STATUSES = frozenset({"ok", "error", "timeout", "cancelled"})
# encode_experience's keyword arguments, all and required (filled in below the class, from its signature)
_EXPERIENCE_ARGS: frozenset[str] = frozenset()
_EXPERIENCE_REQUIRED: frozenset[str] = frozenset()
_FEEDBACK_SOURCES = frozenset({"human", "ai", "system"})
# Settings the SDK's guarantees rest on: a pass-through config may not contradict them.
_PINNED = {"enable.idempotence": True, "acks": "all"}
_ACKS_ALL = {"all", "-1", -1}
# Bytes librdkafka adds to key + value when it checks message.max.bytes (a record's
# v2 framing, varints at their widest): the SDK's own check leaves that room.
_RECORD_OVERHEAD = 64
# events held in memory behind a pending move of librdkafka's queue to the spool (at most, and for at most)
_BEHIND_MOVE_MAX = 10_000
_BEHIND_MOVE_S = 1.0
# Errors after which a record can never be delivered: quarantined, never retried.
_PERMANENT = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.RECORD_LIST_TOO_LARGE,
                        KafkaError.INVALID_MSG_SIZE})


class _RandomHex:
    """Random ids from ``os.urandom``, read 4 KiB at a time: one ``getrandom`` call per 128 events.

    ``os.urandom`` releases the GIL around its system call, and in a process with other threads
    each release lets one of them in (the gateway's batches: +3% events/s once the call was made
    once per 128 events instead of once per event). The pool is emptied in a forked child, which
    must not hand out its parent's next ids; ``deque`` keeps the takes of several threads apart.
    """

    def __init__(self) -> None:
        self._pool: deque[str] = deque()
        os.register_at_fork(after_in_child=self._pool.clear)

    def hex64(self) -> str:
        """64 random hex digits (32 bytes)."""
        try:
            return self._pool.popleft()
        except IndexError:
            raw = os.urandom(4096).hex()
            self._pool.extend([raw[i:i + 64] for i in range(64, len(raw), 64)])
            return raw[:64]


_RANDOM = _RandomHex()


def _new_id() -> str:
    return _RANDOM.hex64()[:32]


def _messages(value: Any, field: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, Sequence):
        raise InvalidEventError("Experience", field, f"expected a string or a list of messages, got {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or "content" not in m:
            raise InvalidEventError("Experience", f"{field}[{i}]", "a message needs 'role' and 'content'")
        if type(m) is dict and m.keys() <= {"role", "content", "name", "tool_call_id"}:
            out.append(m)  # already in wire shape: no copy on the hot path
        else:
            out.append({"role": str(m.get("role", "user")), "content": m["content"],
                        "name": m.get("name"), "tool_call_id": m.get("tool_call_id")})
    return out


def _str_map(value: Mapping[str, Any] | None, field: str, record: str) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEventError(record, field, f"expected a mapping, got {type(value).__name__}")
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


class AgentGym:
    """A client that records experiences and feedback to Kafka.

    Args:
        bootstrap_servers: Kafka bootstrap servers (env ``AGENTGYM_BOOTSTRAP_SERVERS``).
        tenant_id: tenant of every event (env ``AGENTGYM_TENANT_ID``).
        agent_id: this agent's id (env ``AGENTGYM_AGENT_ID``).
        settings: a full :class:`ProducerSettings`; explicit arguments override it.
        mask_hook: a callable ``str -> str`` run on every scanned text after the built-in
            detectors (``AGENTGYM_MASK_*``), before the event leaves the process; with
            ``mask_enabled=False`` nothing runs, the hook included.
        masking: a whole :class:`~agentgym.producers.masking.MaskingPolicy` instead of the
            ``mask_*`` settings (the HTTP gateway passes an inactive one and masks per tenant and agent itself).
        background_polling: True (the default): the client's background thread serves Kafka's
            delivery reports. False: the caller does, with :meth:`poll`, often (at least every
            few hundred milliseconds), from the thread that records. confluent-kafka takes the
            GIL once per delivered event to serve its report, successes included; from a
            background thread that is one GIL hand-off per event with the recording thread.
            The HTTP gateway polls from its event loop (its batches: +20% events/s).
        **overrides: any other :class:`ProducerSettings` field (``spool_dir``,
            ``delivery_timeout_s``, ``kafka_config``, ...).

    Raises:
        ConfigError: a setting is invalid or a pass-through Kafka setting contradicts
            idempotence / ``acks=all``.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        tenant_id: str | None = None,
        agent_id: str | None = None,
        *,
        settings: ProducerSettings | None = None,
        mask_hook: Callable[[str], str] | None = None,
        masking: MaskingPolicy | None = None,
        background_polling: bool = True,
        **overrides: Any,
    ) -> None:
        explicit = {k: v for k, v in (("bootstrap_servers", bootstrap_servers), ("tenant_id", tenant_id), ("agent_id", agent_id)) if v is not None}
        explicit.update(overrides)
        try:
            if settings is None:
                settings = ProducerSettings(**explicit)
            elif explicit:
                settings = settings.model_copy(update=ProducerSettings(**{**settings.model_dump(), **explicit}).model_dump())
        except Exception as exc:  # pydantic's ValidationError names the field
            raise ConfigError(f"invalid AgentGym settings: {exc}") from exc
        self.settings = settings
        self.tenant_id = settings.tenant_id
        try:
            self.masking = masking if masking is not None else self._masking_policy(settings, mask_hook)
        except MaskingConfigError as exc:
            raise ConfigError(f"invalid AgentGym masking: {exc}") from exc
        self._mask_experience = self.masking.mask_experience if self.masking.active else None
        self._mask_feedback = self.masking.mask_feedback if self.masking.active else None
        self.agent_id = settings.agent_id
        registry = None
        if settings.schema_registry_url:
            registry = SchemaRegistryClient(settings.schema_registry_url)
            # see README "Schema Registry mode": the worker cannot read these events yet
            log.warning("AGENTGYM_SCHEMA_REGISTRY_URL is set: events use the Confluent wire format, which Agent Gym's "
                        "stream processors do not decode yet (they dead-letter them); this mode is untested")
        self._codec = AvroCodec(registry=registry)
        self._encode = self._codec.encode
        self._spool = Spool(settings.spool_dir)
        self._ratelog = RateLimitedLog(log)
        self._broker_down = False  # librdkafka said all brokers are down: spool at once
        self._move_queue = False  # the background thread moves the queue to the spool
        # events recorded while that move is pending: spooled right after the moved ones (in recording order)
        self._behind_move: list[tuple[str, bytes, bytes]] = []
        self._move_since = 0.0
        self._order_lock = threading.Lock()
        self._background_polling = background_polling
        # held by whoever serves the delivery reports outside the background loop's poll (a move to the spool,
        # a replay): a caller's poll() then skips its turn, so one thread serves them, in order
        self._poll_lock = threading.RLock()
        self._spool_first = settings.durability == "spool"
        self._replayed_segments: set[tuple[int, int]] = set()  # (dev, inode) of segments that could not be removed
        extra_max = settings.kafka_config.get("message.max.bytes")
        self.max_event_bytes = int(extra_max) if extra_max is not None else settings.max_event_bytes
        try:
            self._producer = Producer(self._kafka_config(settings))
        except KafkaException as exc:  # librdkafka rejects unknown keys and bad values
            self._spool.close()
            raise ConfigError(f"invalid Kafka producer setting: {exc.args[0].str()}") from exc
        self._produce = self._producer.produce
        self._closed = False
        self._stop = threading.Event()
        self.stats = {"spooled": 0, "replayed": 0, "delivery_errors": 0, "dropped": 0, "quarantined": 0}
        """Counters: ``spooled`` (written to the spool), ``replayed`` (sent again from it),
        ``delivery_errors``, ``dropped`` (could not be kept: the spool's disk failed),
        ``quarantined`` (can never be delivered; kept under ``<spool_dir>/quarantine``)."""
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._background, name="agentgym-producer", daemon=True)
        self._thread.start()
        self._follower: ExperimentFollower | None = None
        self._follower_lock = threading.Lock()
        if settings.follow_experiments:
            self.follow_experiments(wait_s=None)
        # flush on interpreter exit even if the agent forgets close()
        atexit.register(self.close)

    # -- configuration --------------------------------------------------------
    @staticmethod
    def _masking_policy(s: ProducerSettings, hook: Callable[[str], str] | None) -> MaskingPolicy:
        if not s.mask_enabled:
            return MaskingPolicy(None, (), None)
        key = s.mask_hash_key.get_secret_value()
        detectors = [d for d in s.mask_detectors.split(",") if d.strip()]
        masker = Masker(detectors, s.mask_patterns, key or None) if detectors or s.mask_patterns else None
        return MaskingPolicy(masker, s.mask_fields.split(","), hook)

    def _kafka_config(self, s: ProducerSettings) -> dict[str, Any]:
        extra = dict(s.kafka_config)
        for key, want in _PINNED.items():
            if key in extra:
                got = extra[key]
                ok = (str(got).lower() in {"true", "1"} or got is True) if key == "enable.idempotence" else got in _ACKS_ALL
                if not ok:
                    raise ConfigError(f"kafka_config[{key!r}]={got!r} contradicts the SDK's guarantee ({key}={want}): remove it")
        if "bootstrap.servers" in extra and extra["bootstrap.servers"] != s.bootstrap_servers:
            raise ConfigError("kafka_config['bootstrap.servers'] contradicts bootstrap_servers: give it once")
        security = librdkafka_security(s)
        for key, want in security.items():
            if key in extra and extra[key] != want:
                raise ConfigError(f"kafka_config[{key!r}] contradicts the AGENTGYM_KAFKA_* security settings: give it once")
        for key in ("on_delivery", "delivery.report.only.error", "message.timeout.ms", "delivery.timeout.ms"):
            if key in extra:
                raise ConfigError(f"kafka_config[{key!r}] is managed by the SDK (use delivery_timeout_s)")
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            **security,
            "client.id": f"agentgym-{s.tenant_id}-{s.agent_id}",
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": s.compression,
            "linger.ms": s.linger_ms,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "message.timeout.ms": int(s.delivery_timeout_s * 1000),
            "message.max.bytes": s.max_event_bytes,
            "delivery.report.only.error": True,  # successes cost nothing on the callback path
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "logger": logging.getLogger("agentgym.kafka"),  # librdkafka logs via Python logging
        }
        conf.update(extra)
        kafka_log = logging.getLogger("agentgym.kafka")
        if not any(isinstance(f, RateLimitFilter) for f in kafka_log.filters):
            kafka_log.addFilter(RateLimitFilter())  # an outage repeats the same librdkafka line many times a second
        return conf

    # -- the hot path ---------------------------------------------------------
    def _keep(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Spools one event; an event the disk cannot take is counted, never raised."""
        if self._spool.append(topic, key, value):
            self.stats["spooled"] += 1
        else:
            self.stats["dropped"] += 1

    def _send(self, record: str, topic: str, key: str, value: bytes) -> None:
        size = len(value) + len(key) + _RECORD_OVERHEAD
        if size > self.max_event_bytes:
            raise InvalidEventError(record, "", f"the encoded event is {size} bytes (with key and record overhead), "
                                    f"over the limit of {self.max_event_bytes} bytes (max_event_bytes / message.max.bytes)")
        if self._spool_first and not self._closed:
            if self._spool.append(topic, key.encode(), value):
                self.stats["spooled"] += 1
                return
            # the spool cannot take it: Kafka's queue is the better place than nowhere
        elif self._broker_down:
            with self._order_lock:
                if self._move_queue and len(self._behind_move) < _BEHIND_MOVE_MAX and (
                        time.monotonic() - self._move_since < _BEHIND_MOVE_S):
                    # the events from before the outage are still in librdkafka's queue, on their way to the spool
                    # (the background thread's purge, within ~0.1 s): this one waits in memory behind them, so that
                    # the spool, and its replay, keep the order of recording; appended now, it would precede them.
                    # (Bounded: a background thread busy elsewhere, e.g. replaying, is not waited for.)
                    self._behind_move.append((topic, key.encode(), value))
                    return
            if self._spool.append(topic, key.encode(), value):
                self.stats["spooled"] += 1
                return
        try:
            self._produce(topic, value, key)
        except BufferError:
            # local queue full (broker away for long): spool instead of blocking the agent
            self._keep(topic, key.encode(), value)
        except (KafkaException, RuntimeError) as exc:
            # a fatal producer error or a closed producer must not crash the agent
            self._last_error = str(exc)
            self._keep(topic, key.encode(), value)

    def send_encoded(self, record: str, topic: str, key: str, value: bytes) -> None:
        """Sends what :meth:`encode_experience` / :meth:`encode_feedback` returned, with the
        guarantees of ``record_*`` (never blocks, spools when Kafka is away)."""
        self._send(record, topic, key, value)

    def record_experience(
        self,
        *,
        input: str | Sequence[Mapping[str, Any]],
        output: str | None,
        model_name: str,
        model_version: str,
        latency_ms: float,
        trace_id: str | None = None,
        steps: Iterable[Mapping[str, Any]] | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        status: str = "ok",
        error: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        assignment: Assignment | Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp_ms: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """Records one agent run. Returns its trace id.

        Args:
            input: the user's message, or the list of chat messages (``role``, ``content``).
            output: the agent's final answer (``None`` if it produced none).
            model_name / model_version: which model served the run.
            latency_ms: wall time of the run, milliseconds.
            trace_id: the run's id (generated when omitted); feedback refers to it.
            steps: llm/tool/retrieval calls, dicts with ``name``, ``kind`` and optionally
                ``input``, ``output`` (JSON text or objects), ``error``, ``latency_ms``,
                ``prompt_tokens``, ``completion_tokens``.
            prompt_tokens / completion_tokens / cost_usd: usage of the whole run.
            status: ``ok``, ``error``, ``timeout`` or ``cancelled``.
            assignment: the experiment variant: what :meth:`assign` returned, or a
                mapping with ``experiment_id``, ``variant``, ``unit_type``, ``unit_id``.
            metadata: free string key/values.

        Raises:
            InvalidEventError: naming the field, for a missing or mistyped argument.
        """
        trace_id, value = self.encode_experience(
            input=input, output=output, model_name=model_name, model_version=model_version, latency_ms=latency_ms,
            trace_id=trace_id, steps=steps, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            cost_usd=cost_usd, status=status, error=error, session_id=session_id, user_id=user_id,
            assignment=assignment, metadata=metadata, timestamp_ms=timestamp_ms, event_id=event_id)
        self._send("Experience", _EXPERIENCES, trace_id, value)
        return trace_id

    def encode_experience(
        self,
        *,
        tenant_id: str | None = None,
        agent_id: str | None = None,
        input: str | Sequence[Mapping[str, Any]],
        output: str | None,
        model_name: str,
        model_version: str,
        latency_ms: float,
        trace_id: str | None = None,
        steps: Iterable[Mapping[str, Any]] | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        status: str = "ok",
        error: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        assignment: Assignment | Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp_ms: int | None = None,
        event_id: str | None = None,
    ) -> tuple[str, bytes]:
        """Validates and encodes one agent run without sending it: ``(trace_id, value)``.

        Takes :meth:`record_experience`'s arguments, plus ``tenant_id`` / ``agent_id``
        (default: the client's), so a caller that serves many tenants (the HTTP gateway)
        can validate a whole batch before producing any of it.

        Args:
            input: the user's message, or the list of chat messages (``role``, ``content``).
            output: the agent's final answer (``None`` if it produced none).
            model_name / model_version: which model served the run.
            latency_ms: wall time of the run, milliseconds.
            trace_id: the run's id (generated when omitted); feedback refers to it.
            steps: llm/tool/retrieval calls, dicts with ``name``, ``kind`` and optionally
                ``input``, ``output`` (JSON text or objects), ``error``, ``latency_ms``,
                ``prompt_tokens``, ``completion_tokens``.
            prompt_tokens / completion_tokens / cost_usd: usage of the whole run.
            status: ``ok``, ``error``, ``timeout`` or ``cancelled``.
            assignment: the experiment variant: what :meth:`assign` returned, or a
                mapping with ``experiment_id``, ``variant``, ``unit_type``, ``unit_id``.
            metadata: free string key/values.

        Raises:
            InvalidEventError: naming the field, for a missing or mistyped argument.
        """
        if status not in _RUN_STATUSES:
            raise InvalidEventError("Experience", "status", f"{status!r} is not one of {sorted(_RUN_STATUSES)}")
        if assignment.__class__ is Assignment:
            assignment = assignment.as_record()  # type: ignore[union-attr]
        ids = _RANDOM.hex64()
        trace_id = trace_id or ids[:32]
        record: dict[str, Any]
        # Fast path: arguments go to the encoder as given (it checks every type and
        # fills defaults); only when that fails are they normalised — strings to
        # messages, objects to JSON text, metadata values to str — and, if still
        # wrong, reported with the field's name. See ops/bench/producer.py.
        record = {
            "event_id": event_id or ids[32:],
            "tenant_id": tenant_id or self.tenant_id,
            "agent_id": agent_id or self.agent_id,
            "trace_id": trace_id,
            "timestamp_ms": timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000,
            "session_id": session_id,
            "user_id": user_id,
            "input": [{"role": "user", "content": input}] if type(input) is str else input,
            "steps": steps if type(steps) is list else [],
            "output": output,
            "model_name": model_name,
            "model_version": model_version,
            "assignment": assignment,
            "latency_ms": latency_ms,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost_usd,
            "status": status,
            "error": error,
            "metadata": metadata or {},
            "sdk_version": SDK_VERSION,
        }
        if steps and type(steps) is not list:
            record["steps"] = list(steps)
        if self._mask_experience is not None:  # before encoding: the raw values never leave the process
            self._mask_experience(record)
        try:
            value = self._encode("Experience", record)
        except SchemaValidationError:
            # normalised from the record, which holds the masked values
            record["input"] = _messages(record["input"], "input")
            record["steps"] = [Run.step_record(s, i) for i, s in enumerate(record["steps"])]
            record["metadata"] = _str_map(record["metadata"], "metadata", "Experience")
            if assignment is not None and not isinstance(assignment, Mapping):
                raise InvalidEventError("Experience", "assignment", f"expected a mapping, got {type(assignment).__name__}") from None
            record["assignment"] = dict(assignment) if assignment else None
            value = self._encode_checked("Experience", record)
        return trace_id, value

    def encode_experience_fields(self, fields: Mapping[str, Any], *, tenant_id: str | None = None,
                                 agent_id: str | None = None) -> tuple[str, bytes]:
        """:meth:`encode_experience` with its keyword arguments as a mapping: ``encode_experience(**fields)``,
        the same result and the same errors, faster for a mapping whose keys are not the interpreter's own
        strings (parsed JSON: binding those to 20 keyword parameters compares strings one by one, ~2 us).

        The HTTP gateway's path. Only plain values take the fast way (a ``str`` or ``list`` input, a ``list`` of
        steps, a known status, no :class:`Assignment` object); anything else, a missing or an unknown key
        included, goes through :meth:`encode_experience` itself.
        """
        get = fields.get
        status = get("status", "ok")
        input = get("input")
        steps = get("steps")
        if (not fields.keys() <= _EXPERIENCE_ARGS or not fields.keys() >= _EXPERIENCE_REQUIRED or status not in _RUN_STATUSES
                or (type(input) is not str and type(input) is not list) or (steps is not None and type(steps) is not list)
                or get("assignment").__class__ is Assignment):
            return self.encode_experience(tenant_id=tenant_id, agent_id=agent_id, **fields)
        ids = _RANDOM.hex64()
        trace_id = get("trace_id") or ids[:32]
        timestamp_ms = get("timestamp_ms")
        record = {  # as encode_experience builds it (tests/unit/producers/test_encode_fields.py compares the two)
            "event_id": get("event_id") or ids[32:],
            "tenant_id": tenant_id or self.tenant_id,
            "agent_id": agent_id or self.agent_id,
            "trace_id": trace_id,
            "timestamp_ms": timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000,
            "session_id": get("session_id"),
            "user_id": get("user_id"),
            "input": [{"role": "user", "content": input}] if type(input) is str else input,
            "steps": steps if steps is not None else [],
            "output": fields["output"],
            "model_name": fields["model_name"],
            "model_version": fields["model_version"],
            "assignment": get("assignment"),
            "latency_ms": fields["latency_ms"],
            "prompt_tokens": get("prompt_tokens", 0),
            "completion_tokens": get("completion_tokens", 0),
            "cost_usd": get("cost_usd", 0.0),
            "status": status,
            "error": get("error"),
            "metadata": get("metadata") or {},
            "sdk_version": SDK_VERSION,
        }
        if self._mask_experience is not None:
            self._mask_experience(record)
        try:
            return trace_id, self._encode("Experience", record)
        except SchemaValidationError:  # values to normalise, or to name: encode_experience does both
            return self.encode_experience(tenant_id=tenant_id, agent_id=agent_id, **fields)

    def _encode_checked(self, name: str, record: dict[str, Any]) -> bytes:
        try:
            return self._encode(name, record)
        except InvalidEventError:
            raise
        except SchemaValidationError as exc:
            raise InvalidEventError(exc.record, exc.field, exc.reason) from None

    def record_feedback(
        self,
        trace_id: str,
        *,
        rating: float | None = None,
        rating_scale: float = 5.0,
        thumbs_up: bool | None = None,
        comment: str | None = None,
        correction: str | None = None,
        signal: str | None = None,
        value: float | None = None,
        source: str = "human",
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp_ms: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """Records feedback on the run ``trace_id``. Returns the feedback's event id.

        Give one of ``rating`` (0..``rating_scale``), ``thumbs_up``, ``comment``,
        ``correction`` (the output the agent should have given) or ``signal`` (an
        implicit signal: ``retry``, ``abandon``, ``escalate``, ``copy``, ``task_completed``).
        ``source`` is ``human``, ``ai`` (a judge model) or ``system``.
        """
        event_id, encoded = self.encode_feedback(
            trace_id, rating=rating, rating_scale=rating_scale, thumbs_up=thumbs_up, comment=comment,
            correction=correction, signal=signal, value=value, source=source, user_id=user_id, metadata=metadata,
            timestamp_ms=timestamp_ms, event_id=event_id)
        self._send("Feedback", _FEEDBACK, trace_id, encoded)
        return event_id

    def encode_feedback(
        self,
        trace_id: str,
        *,
        tenant_id: str | None = None,
        agent_id: str | None = None,
        rating: float | None = None,
        rating_scale: float = 5.0,
        thumbs_up: bool | None = None,
        comment: str | None = None,
        correction: str | None = None,
        signal: str | None = None,
        value: float | None = None,
        source: str = "human",
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp_ms: int | None = None,
        event_id: str | None = None,
    ) -> tuple[str, bytes]:
        """Validates and encodes feedback without sending it: ``(event_id, value)``.

        Takes :meth:`record_feedback`'s arguments, plus ``tenant_id`` / ``agent_id``
        (default: the client's); see :meth:`encode_experience`.
        """
        if not isinstance(trace_id, str) or not trace_id:
            raise InvalidEventError("Feedback", "trace_id", "must be a non-empty string (the run's trace id)")
        if source not in _FEEDBACK_SOURCES:
            raise InvalidEventError("Feedback", "source", f"{source!r} is not one of {sorted(_FEEDBACK_SOURCES)}")
        if rating is not None:
            if isinstance(rating, bool) or not isinstance(rating, (int, float)):
                raise InvalidEventError("Feedback", "rating", f"expected a number, got {type(rating).__name__}")
            if not 0 <= rating <= rating_scale:
                raise InvalidEventError("Feedback", "rating", f"{rating} is outside [0, {rating_scale}]")
        if correction is not None:
            kind = "correction"
        elif rating is not None:
            kind = "rating"
        elif thumbs_up is not None:
            kind = "thumbs"
        elif signal is not None:
            kind = "implicit"
        elif comment is not None:
            kind = "comment"
        else:
            raise InvalidEventError("Feedback", "rating", "no feedback given: pass rating, thumbs_up, comment, correction or signal")
        event_id = event_id or _new_id()
        record = {
            "event_id": event_id,
            "tenant_id": tenant_id or self.tenant_id,
            "agent_id": agent_id or self.agent_id,
            "trace_id": trace_id,
            "timestamp_ms": timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000,
            "kind": kind,
            "source": source,
            "rating": None if rating is None else float(rating),
            "rating_scale": float(rating_scale),
            "thumbs_up": thumbs_up,
            "comment": comment,
            "correction": correction,
            "signal": signal,
            "value": value,
            "user_id": user_id,
            "metadata": _str_map(metadata, "metadata", "Feedback"),
        }
        if self._mask_feedback is not None:
            self._mask_feedback(record)
        return event_id, self._encode_checked("Feedback", record)

    def run(
        self,
        input: str | Sequence[Mapping[str, Any]],
        *,
        model_name: str,
        model_version: str,
        trace_id: str | None = None,
        **fields: Any,
    ) -> Run:
        """A context manager that times a run and records it on exit (errors included).

        Inside, call ``run.step(...)`` for each llm/tool/retrieval call and set
        ``run.output``; an exception marks the run ``error`` and is re-raised.
        """
        return Run(self, input=input, model_name=model_name, model_version=model_version, trace_id=trace_id or _new_id(), fields=fields)

    # -- experiments -------------------------------------------------------------
    def follow_experiments(self, wait_s: float | None = 10.0) -> ExperimentFollower:
        """Starts following the live experiment configurations (once); returns the follower.

        A background consumer reads the compacted experiments topic from the beginning
        and keeps every experiment's latest configuration, so a weight change or a
        rollback reaches this process within a second of being written. Clients that
        never call this (or :meth:`assign`) start no consumer.

        Args:
            wait_s: wait up to this long for the topic to be read to its end (None: do
                not wait; :meth:`assign` returns None until the configuration arrives).
        """
        with self._follower_lock:
            if self._follower is None:
                self._follower = ExperimentFollower(self.settings.bootstrap_servers, tenant_id=self.tenant_id,
                                                    security=librdkafka_security(self.settings)).start()
            follower = self._follower
        if wait_s:
            follower.wait_ready(wait_s)
        return follower

    def assign(self, experiment_id: str, unit_id: str) -> Assignment | None:
        """The variant (and model version) that serves ``unit_id`` in ``experiment_id``.

        Deterministic and sticky (a hash of the experiment's salt and the unit id
        against the live weights; see :mod:`agentgym.producers.assignment`), never blocking:
        a dictionary lookup and one BLAKE2b hash. Returns None when the experiment is
        unknown (or not yet loaded), a draft or stopped: serve the default model then.
        After a rollback it returns the control, after a promotion the winner. Pass the
        result to ``record_experience(assignment=...)``.
        """
        if not isinstance(unit_id, str) or not unit_id:
            raise InvalidEventError("Experience", "assignment.unit_id", "must be a non-empty string")
        follower = self._follower or self.follow_experiments(wait_s=None)
        return follower.assign(experiment_id, unit_id)

    # -- delivery failures, spool and replay -----------------------------------
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            return
        self.stats["delivery_errors"] += 1
        self._last_error = err.str()
        if err.code() in _PERMANENT:
            self._quarantine(msg.topic(), msg.key(), msg.value(), err.str())
        else:
            self._keep(msg.topic(), msg.key(), msg.value())

    def _quarantine(self, topic: str, key: bytes | None, value: bytes, reason: str) -> None:
        self.stats["quarantined"] += 1
        if not self._spool.quarantine(topic, key, value, reason):
            self.stats["dropped"] += 1

    def _on_error(self, err: KafkaError) -> None:
        self._last_error = err.str()
        if err.fatal():
            log.error("agentgym: fatal Kafka producer error: %s; events go to the spool", err.str())
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            if not self._broker_down:
                self._move_since = time.monotonic()
                self._move_queue = True  # first: a _send that sees the outage must also see the move pending
                self._broker_down = True
                self._ratelog.log(logging.WARNING, "down",
                                  "agentgym: Kafka at %s is unreachable; events go to the spool in %s and are sent "
                                  "when it is back", self.settings.bootstrap_servers, self._spool.root)
        elif err.code() == KafkaError._SSL:  # e.g. a broker certificate no CA of AGENTGYM_KAFKA_SSL_CA signed
            self._ratelog.log(logging.ERROR, "tls",
                              "agentgym: TLS with Kafka at %s failed: %s (AGENTGYM_KAFKA_SSL_CA must name the CA that "
                              "signed the broker's certificate); events go to the spool", self.settings.bootstrap_servers,
                              err.str())
        else:
            log.debug("agentgym: Kafka: %s", err.str())

    def _broker_reachable(self) -> bool:
        try:
            return bool(self._producer.list_topics(timeout=2).brokers)
        except Exception:
            return False

    def replay_spool(self, timeout_s: float | None = None) -> int:
        """Re-sends spooled events, oldest first. Returns how many were handed to Kafka.

        Called by the background thread every ``spool_replay_interval_s`` while the
        spool is not empty (at once with ``durability="spool"``); callable directly.
        A segment is removed once every record in it is acknowledged, spooled again or
        quarantined (a record that can never be delivered, e.g. over the broker's size
        limit), so no record is sent twice by the replay itself.
        """
        if not self._spool.pending() or not self._broker_reachable():
            return 0
        self._broker_back()
        timeout_s = timeout_s if timeout_s is not None else self.settings.delivery_timeout_s + 5
        sent = 0
        for seg in self._spool.take_segments():
            try:
                st = seg.stat()
                if (st.st_dev, st.st_ino) in self._replayed_segments:
                    continue
                records = list(read_segment(seg))
            except OSError as exc:
                self._ratelog.log(logging.ERROR, "replay-read", "agentgym: cannot read spool segment %s: %s", seg, exc)
                continue
            for topic, key, value in records:
                while True:
                    try:
                        self._producer.produce(topic, value, key)
                        sent += 1
                        break
                    except BufferError:
                        self._producer.poll(0.1)
                    except KafkaException as exc:
                        err = exc.args[0]
                        if err.code() in _PERMANENT:
                            self._quarantine(topic, key, value, err.str())
                        else:
                            self._keep(topic, key, value)
                        break
            unacknowledged = self._producer.flush(timeout_s)
            # Every record of the segment is now acknowledged, quarantined, or owned by
            # librdkafka (whose delivery report spools it again on failure): removing
            # the segment now is what keeps the replay from resending it.
            try:
                seg.unlink()
            except OSError:
                self._replayed_segments.add((st.st_dev, st.st_ino))
            if seg.parent != self._spool.dir:
                try:
                    (seg.parent / "lock").unlink(missing_ok=True)
                    seg.parent.rmdir()
                except OSError:
                    pass
            if unacknowledged > 0:
                log.warning("agentgym: spool replay of %s not acknowledged in %.0fs; the rest waits", seg, timeout_s)
                break
        self.stats["replayed"] += sent
        if sent and not self._spool_first:
            log.info("agentgym: replayed %d spooled events", sent)
        return sent

    def _broker_back(self) -> None:
        if self._broker_down:
            self._broker_down = False
            self._ratelog.reset("down")
            log.warning("agentgym: Kafka at %s is reachable again; replaying the spool", self.settings.bootstrap_servers)

    def _move_to_spool(self, purge: bool = True) -> None:
        """All brokers down: what waits in librdkafka's queue goes to disk now, not after ``delivery_timeout_s``
        (each purged event's delivery report spools it), then the events recorded meanwhile, behind them."""
        if purge:
            self._producer.purge(in_queue=True, in_flight=False, blocking=True)
            self._producer.poll(0)  # the purged events' reports: spooled, in their order
        with self._order_lock:
            self._move_queue = False
            behind, self._behind_move = self._behind_move, []
            for topic, key, value in behind:
                self._keep(topic, key, value)

    def _background(self) -> None:
        interval = self.settings.spool_replay_interval_s
        next_replay = time.monotonic()  # replay leftovers of earlier processes at start
        while not self._stop.is_set():
            try:
                if self._background_polling:
                    self._producer.poll(0.1)
                else:
                    self._stop.wait(0.1)  # the caller serves the delivery reports (poll())
                if self._move_queue:
                    with self._poll_lock:
                        self._move_to_spool()
                self._spool.sync()
                if self._spool_first or time.monotonic() >= next_replay:
                    if self._broker_down and not self._spool.pending() and self._broker_reachable():
                        self._broker_back()
                    with self._poll_lock:
                        self.replay_spool()
                    next_replay = time.monotonic() + interval
            except Exception:  # the agent's process must never die of our thread
                self._ratelog.log(logging.ERROR, "loop", "agentgym: background producer loop error", exc_info=True)
                time.sleep(0.5)

    def poll(self) -> int:
        """Serves the delivery reports that have arrived (a failed event goes to the spool); for a client
        made with ``background_polling=False``, whose owner calls this often. Never blocks: while the
        background thread serves them itself (moving the queue to the spool, replaying it), this returns 0.

        Returns:
            How many reports (and other client events) were served.
        """
        if not self._poll_lock.acquire(blocking=False):
            return 0
        try:
            return int(self._producer.poll(0))
        finally:
            self._poll_lock.release()

    # -- lifecycle -----------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> int:
        """Waits up to ``timeout_s`` for in-flight events; returns how many are still pending."""
        return self._producer.flush(timeout_s)

    @property
    def spool_dir(self) -> Path:
        return self._spool.dir

    @property
    def queue_length(self) -> int:
        """Events handed to librdkafka and not yet acknowledged (or failed)."""
        return len(self._producer)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flushes (up to ``timeout_s``), spools whatever Kafka did not take, and stops.

        Idempotent; also runs at interpreter exit. Never raises: what the disk cannot
        take is counted in ``stats["dropped"]``.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        steps = (
            lambda: self._follower is not None and self._follower.close(),
            lambda: self._thread.join(timeout=timeout_s + 5),
            lambda: self._flush_or_purge(timeout_s),
            lambda: self._move_to_spool(purge=False),  # events recorded behind a move the thread did not finish
            self._spool.close,
        )
        for step in steps:
            try:
                step()
            except Exception:  # one failed step must not skip the others
                log.exception("agentgym: error while closing the client")
        atexit.unregister(self.close)
        if self.stats["dropped"] or self.stats["quarantined"]:
            log.error("agentgym: closed with %d events dropped (spool unusable: %s) and %d quarantined",
                      self.stats["dropped"], self._spool.last_error, self.stats["quarantined"])

    def _flush_or_purge(self, timeout_s: float) -> None:
        if self._spool_first:
            self.replay_spool(timeout_s)  # what the spool holds goes out now if Kafka is there
        remaining = self._producer.flush(timeout_s)
        if remaining:
            # purge what is still queued or in flight: each purged message gets a
            # delivery report with an error, which spools it — nothing is lost.
            self._producer.purge(in_queue=True, in_flight=True, blocking=True)
            self._producer.flush(1.0)

    def __enter__(self) -> "AgentGym":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_experience_params = [p for p in inspect.signature(AgentGym.encode_experience).parameters.values()
                      if p.name not in ("self", "tenant_id", "agent_id")]
_EXPERIENCE_ARGS = frozenset(p.name for p in _experience_params)
_EXPERIENCE_REQUIRED = frozenset(p.name for p in _experience_params if p.default is inspect.Parameter.empty)
del _experience_params
