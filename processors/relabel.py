"""Relabelling history from the log: the Kafka side of ``agentgym labeller replay``.

The decisions and the revision scheme are pure (:mod:`agentgym.processors.labelling.replay`,
whose docstring explains why a replay revision never shadows a later live one). This
module reads the topics and writes the revisions, one partition of the trace topics at a
time (experiences, feedback and outcomes are co-partitioned by trace id, so partition
``p`` of each holds whole traces):

1. **experiences** of ``p`` from the first offset at or after ``--since``
   (``offsets_for_times``) to the first after ``--until``, kept when their Kafka
   timestamp is inside the window;
2. **feedback** of ``p`` from five minutes before ``--since`` (:data:`CLOCK_MARGIN_MS`: other
   processes' clocks) to the end offset the topic had when the replay started (a late
   correction of a trace of the window counts);
3. **outcomes** of ``p`` from five minutes before ``--since`` to its current end: what was
   emitted so far, live and replay;
4. every trace decided again; the changed ones are produced to partition ``p`` of
   ``gym-outcomes-v1`` (where the live labeller writes them), and the producer waits for
   Kafka's acknowledgement of all of them;
5. the partition is recorded as done in the checkpoint.

**Resumable.** The checkpoint, ``<AGENTGYM_HOME>/replay/<key>.json``, is keyed by the
arguments as given (``--since``/``--until`` text, the rules' content, tenant, agent,
model source, Kafka): a replay started again with the same arguments finds it, keeps the
window and end offsets resolved by the first start (``2h`` means the same instant), and
skips the partitions already done. A partition interrupted midway is read again: what it
had emitted and Kafka acknowledged is in the outcomes topic, so it is not emitted twice,
and a revision re-sent after a lost acknowledgement carries the same event id (the
store keeps one). A replay that completes removes its checkpoint, so the same command
later is a new replay (which emits only what changed since).

**The model.** By default the live labeller's learner as last checkpointed: the
compacted changelog ``<app id>-labeller-learners-changelog`` (the Faust table
``labeller-learners``), the copy of each agent that has learnt the most examples. It is
used as it is (a replay never trains it: the same replay twice gives the same labels).
An agent without a checkpoint, or whose rules now name another model kind, is labelled
without a model (rules, then the fallback), as a fresh live labeller would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentgym.processors.deletions import DeletionLog, DeletionSet
from agentgym.processors.labelling.engine import AgentLearner, LabellingEngine
from agentgym.processors.labelling.replay import PartitionCounts, PartitionReplay, Relabel, ReplayError
from agentgym.producers.exceptions import DeliveryError, TopicUnavailableError
from agentgym.producers.kafka_security import client_security
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["CLOCK_MARGIN_MS", "ReplayRequest", "ReplayProgress", "ReplayResult", "LogReplay", "load_learners", "learners_topic"]

log = logging.getLogger("agentgym.relabel")

_EXPERIENCES = TOPICS["experiences"].name
_FEEDBACK = TOPICS["feedback"].name
_OUTCOMES = TOPICS["outcomes"].name
_PARTITIONS = TOPICS["experiences"].partitions
_CHECKPOINT_VERSION = 1
CLOCK_MARGIN_MS = 300_000
"""Feedback and outcomes are read from this long (five minutes) before ``--since``: they come
after their experience, but from other processes, whose clocks may be behind the agent's."""


def learners_topic(app_id: str) -> str:
    """The changelog of the live labeller's ``labeller-learners`` table (Faust: ``<app id>-<table>-changelog``)."""
    return f"{app_id}-labeller-learners-changelog"


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay (the command's arguments, resolved).

    Attributes:
        since_ms, until_ms: the window, Unix epoch ms, inclusive (Kafka timestamps of experiences).
        since_text, until_text: the arguments as given (they key the checkpoint).
        rules_path: the rules file (None: the built-in defaults).
        app_id: the live labeller's app id, whose checkpointed learners are the model (None: no model).
    """

    since_ms: int
    until_ms: int
    since_text: str
    until_text: str
    tenant_id: str | None = None
    agent_id: str | None = None
    rules_path: str | None = None
    app_id: str | None = None

    def key(self, bootstrap_servers: str, rules_version: str) -> str:
        """The checkpoint's key: a hash of the arguments as given, the rules' content and the broker."""
        what = json.dumps([self.since_text, self.until_text, self.tenant_id, self.agent_id, rules_version,
                           self.app_id, bootstrap_servers], sort_keys=True)
        return hashlib.sha256(what.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReplayProgress:
    """A progress report (the command prints it)."""

    partition: int
    partitions_done: int
    partitions: int
    counts: PartitionCounts
    elapsed_s: float
    phase: str
    scanned: int = 0

    @property
    def rate(self) -> float:
        """Records read per second so far (this run; every record read, the window's runs' or not)."""
        return self.scanned / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class ReplayResult:
    """What a replay did (this run; ``resumed`` lists the partitions an earlier run had done).

    Attributes:
        scanned: every record read from the three topics (``counts.records``: those of the window's runs).
    """

    counts: PartitionCounts
    partitions: list[int]
    resumed: list[int]
    since_ms: int
    until_ms: int
    elapsed_s: float
    models: dict[str, str] = field(default_factory=dict)
    checkpoint: str = ""
    dry_run: bool = False
    scanned: int = 0


def _parse_key(raw: bytes | None) -> tuple[str, str] | None:
    """``[tenant, agent, partition]`` from a changelog key (JSON, possibly JSON-quoted by the serializer)."""
    if not raw:
        return None
    try:
        value: Any = json.loads(raw)
        if isinstance(value, str):
            value = json.loads(value)
        tenant, agent = value[0], value[1]
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    return (tenant, agent) if isinstance(tenant, str) and isinstance(agent, str) else None


def load_learners(bootstrap_servers: str, app_id: str, timeout_s: float = 30.0, *,
                  security: Mapping[str, Any] | None = None) -> dict[tuple[str, str], AgentLearner]:
    """The live labeller's checkpointed learner of every agent (the copy that has learnt the most).

    Returns an empty mapping when the changelog topic does not exist (no labeller ran with this app id).

    Raises:
        TopicUnavailableError: nothing arrived for ``timeout_s`` before the end of a partition.
    """
    from confluent_kafka import Consumer, TopicPartition

    topic = learners_topic(app_id)
    c = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"agentgym-replay-{os.urandom(6).hex()}",
                  "enable.auto.commit": False, "logger": logging.getLogger("agentgym.kafka"), **client_security(security)})
    latest: dict[bytes, bytes | None] = {}
    try:
        meta = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return {}
        for p in sorted(meta.partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            _read(c, topic, p, lo, hi, lambda m: latest.__setitem__(m.key() or b"", m.value()), timeout_s)
    finally:
        c.close()
    out: dict[tuple[str, str], AgentLearner] = {}
    for raw_key, value in latest.items():
        agent = _parse_key(raw_key)
        if agent is None or not value:
            continue
        try:
            learner = AgentLearner.from_bytes(value)
        except Exception as exc:  # an unreadable checkpoint (another version): no model for it, say so
            log.warning("replay: cannot read the learner checkpoint of %s/%s: %s", *agent, exc)
            continue
        if agent not in out or learner.model.n_learned > out[agent].model.n_learned:
            out[agent] = learner
    return out


def _read(consumer: Any, topic: str, partition: int, start: int, stop: int, handle: Callable[[Any], None],
          stall_s: float) -> None:
    """Reads ``[start, stop)`` of one partition, calling ``handle`` on each message.

    Raises:
        TopicUnavailableError: nothing arrived for ``stall_s`` before ``stop`` was reached.
    """
    from confluent_kafka import TopicPartition

    if start < 0 or stop <= start:
        return
    tp = TopicPartition(topic, partition, start)
    consumer.assign([tp])
    deadline = time.monotonic() + stall_s
    while True:
        # what is buffered at once; else wait for one message (consume(n, t) would wait t for n of them)
        batch = consumer.consume(500, 0)
        if not batch:
            one = consumer.poll(0.1)
            batch = [one] if one is not None else []
        if batch:
            deadline = time.monotonic() + stall_s
        for m in batch:
            if m.error() is not None or m.topic() != topic or m.partition() != partition:
                continue
            if m.offset() >= stop:
                return
            handle(m)
            if m.offset() >= stop - 1:
                return
        position = consumer.position([TopicPartition(topic, partition)])[0].offset
        if position >= stop:  # (past transaction markers and compacted gaps too)
            return
        if time.monotonic() > deadline:
            raise TopicUnavailableError(f"{topic}[{partition}]: nothing read for {stall_s:.0f}s before offset {stop} "
                                        f"(at {position}); is the broker up?")


class LogReplay:
    """Replays the trace topics through the labelling rules and emits new Outcome revisions.

    Args:
        bootstrap_servers: Kafka.
        engine: the rules and labeller settings to label with.
        request: the window, filters and model source.
        home: ``AGENTGYM_HOME`` (checkpoints go to ``<home>/replay``).
        deletions: the deleted users and traces to skip (None: read ``gym-deletions-v1`` to its end).
        progress: called with a :class:`ReplayProgress` at most every ``progress_s`` and at each partition's end.
        dry_run: decide and count, emit nothing, write no checkpoint.
        on_relabel: called with each trace whose label changed (before its revision is sent; in a dry run too).
        timeout_s: how long one read or the acknowledgements may take.
    """

    def __init__(self, bootstrap_servers: str, engine: LabellingEngine, request: ReplayRequest, home: Path, *,
                 deletions: DeletionSet | None = None, progress: Callable[[ReplayProgress], None] | None = None,
                 progress_s: float = 1.0, dry_run: bool = False, timeout_s: float = 60.0,
                 on_relabel: Callable[[Relabel], None] | None = None, security: Mapping[str, Any] | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.engine = engine
        self.request = request
        self.dry_run = dry_run
        self.timeout_s = timeout_s
        self.security = client_security(security)
        self.progress = progress
        self.progress_s = progress_s
        self.on_relabel = on_relabel
        self.deletions = deletions
        self.codec = AvroCodec()
        self.checkpoint_path = Path(home).expanduser() / "replay" / f"{request.key(bootstrap_servers, engine.rulebook.version)}.json"
        self.learners: dict[tuple[str, str], AgentLearner] = {}
        self._counts = PartitionCounts()
        self._scanned = 0
        self._started = 0.0
        self._last_report = 0.0

    # -- checkpoint ------------------------------------------------------------------------
    def _load_checkpoint(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.checkpoint_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ReplayError(f"checkpoint {self.checkpoint_path}: unreadable ({exc}); remove it to start over") from exc
        if data.get("version") != _CHECKPOINT_VERSION:
            raise ReplayError(f"checkpoint {self.checkpoint_path}: version {data.get('version')!r} is not "
                              f"{_CHECKPOINT_VERSION}; remove it to start over")
        return data

    def _save_checkpoint(self, data: dict[str, Any]) -> None:
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.checkpoint_path)  # atomic: an interruption leaves the old or the new one

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        """Replays every partition not done yet; returns what was read and emitted.

        Raises:
            ReplayError: a checkpoint that cannot be used.
            TopicUnavailableError: a topic missing, or not read in time.
            DeliveryError: Kafka did not acknowledge the revisions.
        """
        from confluent_kafka import Consumer, Producer

        self._started = self._last_report = time.monotonic()  # (the first report after progress_s)
        consumer = Consumer({"bootstrap.servers": self.bootstrap_servers, "group.id": f"agentgym-replay-{os.urandom(6).hex()}",
                             "enable.auto.commit": False, "enable.partition.eof": False, "fetch.wait.max.ms": 10,
                             "logger": logging.getLogger("agentgym.kafka"), **self.security})
        producer = None if self.dry_run else Producer({
            "bootstrap.servers": self.bootstrap_servers, "enable.idempotence": True, "acks": "all", "linger.ms": 20,
            "logger": logging.getLogger("agentgym.kafka"), **self.security})
        try:
            state = None if self.dry_run else self._load_checkpoint()
            resumed = sorted(state["done"]) if state else []
            if state is None:
                state = self._begin(consumer)
                if not self.dry_run:
                    self._save_checkpoint(state)
            self._prepare()
            todo = [p for p in range(_PARTITIONS) if p not in state["done"]]
            offsets = self._offsets(consumer, state, todo)
            for p in todo:
                self._partition(consumer, producer, p, state, offsets[p])
                state["done"] = sorted({*state["done"], p})
                if not self.dry_run:
                    self._save_checkpoint(state)
                self._report(p, state, "done", PartitionCounts(), force=True)
            if not self.dry_run:
                self.checkpoint_path.unlink(missing_ok=True)  # complete: the same command later is a new replay
            return ReplayResult(self._counts, todo, resumed, state["since_ms"], state["until_ms"],
                                time.monotonic() - self._started, self._models(), str(self.checkpoint_path), self.dry_run,
                                self._scanned)
        finally:
            consumer.close()
            if producer is not None:
                producer.flush(5)

    def _begin(self, consumer: Any) -> dict[str, Any]:
        """A new checkpoint: the window, and the end offsets of the experiences and feedback topics now."""
        from confluent_kafka import TopicPartition

        r = self.request
        for topic in (_EXPERIENCES, _FEEDBACK, _OUTCOMES):
            meta = consumer.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise TopicUnavailableError(f"{topic}: not on the broker at {self.bootstrap_servers} (agentgym kafka start creates it)")
        feedback_end = {str(p): consumer.get_watermark_offsets(TopicPartition(_FEEDBACK, p), timeout=self.timeout_s)[1]
                        for p in range(_PARTITIONS)}
        experiences_end = {str(p): consumer.get_watermark_offsets(TopicPartition(_EXPERIENCES, p), timeout=self.timeout_s)[1]
                           for p in range(_PARTITIONS)}
        return {"version": _CHECKPOINT_VERSION, "request": asdict(r), "since_ms": r.since_ms, "until_ms": r.until_ms,
                "feedback_end": feedback_end, "experiences_end": experiences_end, "done": [],
                "rules_version": self.engine.rulebook.version, "started_ms": int(time.time() * 1000)}

    def _prepare(self) -> None:
        if self.deletions is None:
            reader = DeletionLog(self.bootstrap_servers, security=self.security)
            try:
                reader.catch_up(to_end=True, timeout_s=self.timeout_s)
            except TimeoutError as exc:
                raise TopicUnavailableError(str(exc)) from exc
            finally:
                reader.close()
            self.deletions = reader.set
        if self.request.app_id:
            self.learners = load_learners(self.bootstrap_servers, self.request.app_id, self.timeout_s, security=self.security)

    def _models(self) -> dict[str, str]:
        return {f"{t}/{a}": f"{lr.model.name}@{lr.model.n_learned}" for (t, a), lr in sorted(self.learners.items())
                if (self.request.tenant_id is None or t == self.request.tenant_id)
                and (self.request.agent_id is None or a == self.request.agent_id)}

    def _offsets(self, consumer: Any, state: dict[str, Any], partitions: list[int]) -> dict[int, dict[str, tuple[int, int]]]:
        """Per partition, the ``[start, stop)`` offsets to read of each topic (two ``offsets_for_times`` requests
        for all of them, one for the outcomes' ends)."""
        from confluent_kafka import TopicPartition

        if not partitions:
            return {}
        since, until = state["since_ms"], state["until_ms"]
        starts = consumer.offsets_for_times(
            [TopicPartition(t, p, since if t == _EXPERIENCES else since - CLOCK_MARGIN_MS)
             for p in partitions for t in (_EXPERIENCES, _FEEDBACK, _OUTCOMES)], timeout=self.timeout_s)
        after = consumer.offsets_for_times([TopicPartition(_EXPERIENCES, p, until + 1) for p in partitions], timeout=self.timeout_s)
        first = {(tp.topic, tp.partition): tp.offset for tp in starts}
        past_until = {tp.partition: tp.offset for tp in after}
        out: dict[int, dict[str, tuple[int, int]]] = {}
        for p in partitions:
            ends = {_EXPERIENCES: int(state["experiences_end"][str(p)]), _FEEDBACK: int(state["feedback_end"][str(p)]),
                    _OUTCOMES: consumer.get_watermark_offsets(TopicPartition(_OUTCOMES, p), timeout=self.timeout_s)[1]}

            def at(offset: int, end: int) -> int:
                return end if offset < 0 else min(offset, end)  # < 0: no message at or after that time

            out[p] = {t: (at(first[(t, p)], end), end) for t, end in ends.items()}
            start, end = out[p][_EXPERIENCES]
            out[p][_EXPERIENCES] = (start, max(start, at(past_until[p], end)))
        return out

    def _report(self, p: int, state: dict[str, Any], phase: str, counts: PartitionCounts, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self._last_report < self.progress_s):
            return
        self._last_report = now
        total = PartitionCounts().add(self._counts).add(counts)
        self.progress(ReplayProgress(p, len(state["done"]), _PARTITIONS, total, now - self._started, phase, self._scanned))

    def _decode(self, m: Any, name: str) -> dict[str, Any] | None:
        self._scanned += 1
        try:
            return self.codec.decode(m.value(), expected=name).record
        except DecodeError:
            return None  # the sink and the labeller dead-letter it; a replay passes it by

    def _partition(self, consumer: Any, producer: Any, p: int, state: dict[str, Any],
                   offsets: dict[str, tuple[int, int]]) -> None:
        """Phases 1-4 for partition ``p``."""
        r = self.request
        replay = PartitionReplay(self.engine, lambda t, a: self.learners.get((t, a)), p, r.tenant_id, r.agent_id,
                                 self.deletions)

        def experience(m: Any) -> None:
            ts = m.timestamp()[1]
            if state["since_ms"] <= ts <= state["until_ms"]:
                record = self._decode(m, "Experience")
                if record is not None:
                    replay.experience(record, m.key())
            else:
                self._scanned += 1
            self._report(p, state, "experiences", replay.counts)

        _read(consumer, _EXPERIENCES, p, *offsets[_EXPERIENCES], experience, self.timeout_s)
        if len(replay):

            def feedback(m: Any) -> None:
                record = self._decode(m, "Feedback")
                if record is not None:
                    replay.feedback(record, m.key())
                self._report(p, state, "feedback", replay.counts)

            _read(consumer, _FEEDBACK, p, *offsets[_FEEDBACK], feedback, self.timeout_s)

            def outcome(m: Any) -> None:
                record = self._decode(m, "Outcome")
                if record is not None:
                    replay.outcome(record)
                self._report(p, state, "outcomes", replay.counts)

            _read(consumer, _OUTCOMES, p, *offsets[_OUTCOMES], outcome, self.timeout_s)
        self._emit(producer, p, replay)
        self._counts.add(replay.counts)

    def _emit(self, producer: Any, p: int, replay: PartitionReplay) -> None:
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        sent = 0
        for item in replay.relabel(int(time.time() * 1000)):
            if item.outcome is not None and self.on_relabel is not None:
                self.on_relabel(item)
            if item.outcome is None or producer is None:
                continue
            value = self.codec.encode("Outcome", item.outcome, _OUTCOMES)
            while True:
                try:
                    producer.produce(_OUTCOMES, value, item.trace_id.encode(), partition=p, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
            sent += 1
        if producer is not None and sent:
            if producer.flush(self.timeout_s) > 0:
                raise DeliveryError(f"{_OUTCOMES}[{p}]: Kafka did not acknowledge {sent} revisions within {self.timeout_s}s")
            if errors:
                raise DeliveryError(f"{_OUTCOMES}[{p}]: Kafka refused {len(errors)} revision(s): {errors[0]}")
