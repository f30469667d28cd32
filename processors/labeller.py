"""The outcome labeller: a Faust agent that labels every trace success or failure.

Topology (the trace topics are co-partitioned by trace id)::

    gym-experiences-v1 ──▶ join_experiences ─┐                   bad input ──▶ gym-deadletter-v1
    gym-feedback-v1    ──▶ join_feedback    ─┴─▶ table labeller-traces (changelog-backed)
                                                        │
    timer (every tick_s): quiet traces, checkpoints, expiry ──▶ <app id>-labeller-commands
                                                        │      (internal topic; each command
                                                        ▼       goes to the partition it is about)
    run_commands ── finalise ──▶ gym-outcomes-v1 (key trace id, the trace's partition)
                 │             └▶ learn / observe commands ─▶ the agent's home partition
                 ├─ learn, observe (at home) ──▶ the agent's learner; drift ──▶ gym-drift-v1
                 ├─ checkpoint (at home) ──▶ table labeller-learners, + a replica command per partition
                 ├─ replica ──▶ table labeller-learners (a read-only copy on every partition)
                 └─ expire ──▶ tombstone in labeller-traces

Why commands: Faust writes a table's changelog to the partition of the event being
processed, so every table write happens in an agent, on the partition the key belongs
to; the timer only reads and sends commands. A restart or rebalance then restores
each partition's traces and learners from the changelogs before processing resumes.

One learner per agent (model, base rate, drift detectors), trained on its *home*
partition (a hash of tenant and agent) from the examples every partition sends there,
and copied to every partition after each checkpoint, where finalisation reads it. So
the model learns from all of an agent's labels, and each worker predicts with a copy
at most a tick or two old.

The decisions themselves are pure (:mod:`agentgym.processors.labelling`); this module decodes,
calls them and writes. :func:`register` declares all of it on the one Faust app
(:mod:`agentgym.processors.app`); importing the module declares nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from dataclasses import asdict
from datetime import timedelta
from typing import Any, cast

import faust
from faust.types import TP, EventT

from agentgym.processors.channels import topic
from agentgym.processors.deletions import DeletionFollower
from agentgym.processors.labelling.engine import AgentLearner, DueQueue, LabellingEngine, Observation, TrainingExample, drift_alert_record
from agentgym.processors.labelling.exceptions import InvalidEventError
from agentgym.processors.labelling.masters import MasterLearners
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.labelling.state import TraceState
from agentgym.processors.settings import ProcessorSettings
from agentgym.producers.admin import create_topics
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["PROCESSOR", "Labeller", "register", "dead_letter_record", "home_partition"]

log = logging.getLogger("agentgym.labeller")

PROCESSOR = "labeller"

_PARTITIONS = TOPICS["experiences"].partitions
_EXPERIENCES = TOPICS["experiences"].name
_COMMANDS_RETENTION_MS = 24 * 3600 * 1000  # commands are consumed within seconds


def register(app: faust.App, settings: ProcessorSettings) -> "Labeller":
    """Declares the labeller (its tables, topics, agents, timer and hooks) on ``app``.

    Its own settings (:class:`LabellerSettings`) are read here, not at import.
    """
    labeller = Labeller(app, settings.bootstrap_servers, LabellerSettings())
    labeller.attach()
    return labeller


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _agent_key(tenant_id: str, agent_id: str) -> str:
    return json.dumps([tenant_id, agent_id])


def home_partition(agent_key: str, partitions: int = _PARTITIONS) -> int:
    """The partition whose commands train an agent's learner (stable: CRC-32 of the key)."""
    return zlib.crc32(agent_key.encode()) % partitions


def _table_key(agent_key: str, partition: int) -> str:
    tenant, agent = json.loads(agent_key)
    return json.dumps([tenant, agent, partition])


def dead_letter_record(message: Any, exc: BaseException, tenant_id: str = "") -> dict[str, Any]:
    """The DeadLetter record of a message the labeller cannot use.

    The event id is the message's coordinates, so a redelivery (or the sink
    dead-lettering the same message) is deduplicated downstream.
    """
    # an invalid event's message names record and field; a decode error's reason says what is wrong
    reason = str(getattr(exc, "reason", "") or exc) if isinstance(exc, DecodeError) else str(exc)
    return {
        "event_id": f"{message.topic}:{message.partition}:{message.offset}",
        "tenant_id": tenant_id,
        "timestamp_ms": _now_ms(),
        "source_topic": message.topic,
        "source_partition": int(message.partition),
        "source_offset": int(message.offset),
        "key": message.key,
        "payload": message.value or b"",
        "error_type": type(exc).__name__,
        "reason": reason or type(exc).__name__,
        "processor": PROCESSOR,
    }


def _load(data: bytes | None, what: str) -> AgentLearner | None:
    if not data:
        return None
    try:
        return AgentLearner.from_bytes(data)
    except Exception:  # an unreadable checkpoint (e.g. after a river upgrade): start over, loudly
        log.exception("labeller: cannot restore learner %s; starting a new one", what)
        return None


class Labeller:
    """The labeller's Faust objects on one app, and its worker-local state.

    Args:
        app: the Faust app the tables and topics are declared on.
        bootstrap_servers: Kafka, for creating the internal topics at worker start.
        settings: timing, state and drift settings.
    """

    def __init__(self, app: faust.App, bootstrap_servers: str, settings: LabellerSettings) -> None:
        self.app = app
        self.bootstrap_servers = bootstrap_servers
        self.settings = settings
        self.engine = LabellingEngine(settings=settings)
        self.codec = AvroCodec()
        self.experiences_topic = topic(app, "experiences")
        self.feedback_topic = topic(app, "feedback")
        self.outcomes_topic = topic(app, "outcomes")
        self.drift_topic = topic(app, "drift")
        self.deadletter_topic = topic(app, "deadletter")
        # trace id -> TraceState.to_dict() (JSON in the changelog)
        self.traces = app.Table(
            "labeller-traces", default=None, partitions=_PARTITIONS, key_type=str, value_type=None,
            help="join state of each trace: run summary, feedback, emitted revision",
        )
        # json [tenant, agent, partition] -> AgentLearner checkpoint (raw bytes); the entry on the
        # agent's home partition is the master, the others are replicas for prediction
        self.learners = app.Table(
            "labeller-learners", default=None, partitions=_PARTITIONS, key_type=str, value_type=bytes,
            help="online model, base rate and drift detectors of each agent",
        )
        self.commands = app.topic(
            f"{app.conf.id}-labeller-commands", key_type=bytes, value_type=bytes, partitions=_PARTITIONS,
            internal=True, retention=timedelta(milliseconds=_COMMANDS_RETENTION_MS), deleting=True,  # see ensure_internal_topics
        )
        # worker-local; rebuilt from the tables after every recovery
        self._due = DueQueue()
        self._masters = MasterLearners()  # agent key -> live learner, for home partitions owned here (kept across rebalances)
        self._replicas: dict[tuple[str, int], tuple[bytes, AgentLearner]] = {}  # (agent key, partition) -> (checkpoint, learner)
        self._last_sweep = 0.0
        # deleted users and traces (gym-deletions-v1, followed in a thread): never labelled nor learnt from
        self._deletions: DeletionFollower | None = None
        self.skipped_deleted = 0

    def deletions(self) -> DeletionFollower:
        """The worker's follower of the deletions topic (started on first use)."""
        if self._deletions is None:
            self._deletions = DeletionFollower.shared(self.bootstrap_servers)
        return self._deletions

    async def _wait_for_deletions(self) -> None:
        """Blocks the calling agent until the deletions topic has been read to its end once."""
        f = self.deletions()
        while not f.ready:
            await asyncio.sleep(0.1)

    def attach(self) -> None:
        """Declares the agents, the timer and the hooks on the app."""
        app = self.app

        @app.agent(self.experiences_topic, name="labeller-join-experiences")
        async def join_experiences(stream: faust.StreamT) -> None:
            """Joins experiences into the trace table; undecodable or invalid ones go to dead letters."""
            await self._wait_for_deletions()
            async for event in stream.events():
                await self._join(event, "Experience")

        @app.agent(self.feedback_topic, name="labeller-join-feedback")
        async def join_feedback(stream: faust.StreamT) -> None:
            """Joins feedback into the trace table; undecodable or invalid feedback goes to dead letters."""
            await self._wait_for_deletions()
            async for event in stream.events():
                await self._join(event, "Feedback")

        @app.agent(self.commands, name="labeller-commands")
        async def run_commands(stream: faust.StreamT) -> None:
            """Finalises quiet traces, trains learners, checkpoints and copies them, expires old traces."""
            async for event in stream.events():
                try:
                    self._run(event)
                except Exception:  # never let one trace or learner stop the labeller
                    log.exception("labeller: command %r failed", (event.message.value or b"")[:200])

        @app.timer(self.settings.tick_s, name="labeller-tick")
        async def tick() -> None:
            """Sends the commands that are due: outcomes of quiet traces, checkpoints, expiry."""
            self._tick()

        self.traces.on_recover(self._rearm)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # Faust sends (sender, revoked, signal=...)
        app.on_worker_init.connect(self._on_worker_init)  # type: ignore[arg-type]  # a plain receiver: (sender, signal=...)

    # -- topics ----------------------------------------------------------------------------

    def ensure_internal_topics(self, timeout_s: float = 30.0) -> list[str]:
        """Creates the labeller's internal topics (changelogs, commands) and waits until the
        broker's metadata shows them. Returns the names created.

        Faust declares them itself too, but on a first start its partition assignment can
        run before a just-created topic is in the metadata ("Ignoring missing topic"), which
        leaves the commands topic unassigned until the next rebalance; creating them before
        the worker joins its group removes that race.
        """
        wanted = {
            self.traces.changelog_topic.get_topic_name(): (_PARTITIONS, {"cleanup.policy": "compact"}),
            self.learners.changelog_topic.get_topic_name(): (_PARTITIONS, {"cleanup.policy": "compact"}),
            self.commands.get_topic_name(): (_PARTITIONS, {"cleanup.policy": "delete", "retention.ms": str(_COMMANDS_RETENTION_MS)}),
        }
        return create_topics(self.bootstrap_servers, wanted, timeout_s)  # replication from the cluster's size

    def _on_worker_init(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # `faust worker` only, before the app starts (so before its consumer joins the group)
        created = self.ensure_internal_topics()
        if created:
            log.info("labeller: created topics %s", created)

    # -- helpers ---------------------------------------------------------------------------

    def _active_partitions(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == _EXPERIENCES}

    def _ready(self) -> bool:
        app = self.app
        recovery = cast(Any, app.tables).recovery  # the TableManager's recovery service
        return not app.rebalancing and not app.in_recovery and recovery.completed.is_set()

    def _command(self, op: str, partition: int, key: str, blob: bytes = b"", **fields: Any) -> None:
        # value: one JSON header line, then an optional binary blob (a checkpoint);
        # send_soon buffers without awaiting (see _run)
        header = json.dumps({"op": op, **fields}).encode()
        self.commands.send_soon(key=key.encode(), value=header + b"\n" + blob, partition=partition)

    async def _dead_letter(self, event: EventT, exc: BaseException, tenant_id: str = "") -> None:
        msg = event.message
        log.warning("labeller: dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
        await self.deadletter_topic.send(key=msg.key, value=self.codec.encode("DeadLetter", dead_letter_record(msg, exc, tenant_id)))

    # -- joining ---------------------------------------------------------------------------

    def _state(self, trace_id: str) -> TraceState | None:
        raw = self.traces.get(trace_id)
        return TraceState.from_dict(raw) if raw else None

    async def _join(self, event: EventT, record_name: str) -> None:
        """Decodes one message of a trace topic and joins it into its trace's state."""
        msg = event.message
        tenant = ""
        engine = self.engine
        try:
            record = self.codec.decode(msg.value, expected=record_name).record
            tenant = record.get("tenant_id") or ""
            if self.deletions().skips(record_name, record):  # a deleted user's or trace's event: not labelled
                self.skipped_deleted += 1
                return
            st = self._state(record["trace_id"])
            now = _now_ms()
            if record_name == "Experience":
                st, changed = engine.ingest_experience(st, record, msg.partition, now, key=msg.key), True
            else:
                st, changed = engine.ingest_feedback(st, record, msg.partition, now, key=msg.key)
        except (DecodeError, InvalidEventError) as exc:
            await self._dead_letter(event, exc, tenant)
        except Exception as exc:  # a bug must not stop the join: keep the message, say why
            log.exception("labeller: unexpected error joining %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            await self._dead_letter(event, exc, tenant)
        else:
            if changed:
                self.traces[st.trace_id] = st.to_dict()
                self._due.push(st.trace_id, engine.due_at(st))

    # -- learners --------------------------------------------------------------------------

    def _master(self, agent_key: str) -> AgentLearner:
        """The live learner of an agent whose home partition this worker owns."""
        tk = _table_key(agent_key, home_partition(agent_key))
        tenant, agent = json.loads(agent_key)
        learner = self._masters.get(agent_key, self.learners.get(tk),
                                    lambda data: self.engine.fit_learner(_load(data, tk), tenant, agent))
        return self.engine.fit_learner(learner, tenant, agent)  # the same object (a new model if the rules changed)

    def _learner_for_prediction(self, st: TraceState) -> AgentLearner | None:
        """The master when this worker owns the agent's home partition, else the replica on the trace's partition."""
        agent_key = _agent_key(st.tenant_id, st.agent_id)
        if home_partition(agent_key) in self._active_partitions():
            return self._master(agent_key)
        data = self.learners.get(_table_key(agent_key, st.partition))
        if not data:
            return None
        cached = self._replicas.get((agent_key, st.partition))
        if cached is not None and cached[0] == data:
            return cached[1]
        learner = _load(data, agent_key)
        if learner is not None:
            self._replicas[(agent_key, st.partition)] = (data, learner)
        return learner

    # -- commands --------------------------------------------------------------------------

    def _finalise(self, st: TraceState, now: int) -> None:
        if self.deletions().skips_trace(st.tenant_id, st.trace_id):  # joined before its deletion: no outcome, no example
            self._due.discard(st.trace_id)
            if st.trace_id in self.traces:
                del self.traces[st.trace_id]
            return
        done = self.engine.finalise(st, self._learner_for_prediction(st), now)
        if done.outcome is not None:
            self.outcomes_topic.send_soon(key=st.trace_id.encode(), value=self.codec.encode("Outcome", done.outcome), partition=st.partition)
        agent_key = _agent_key(st.tenant_id, st.agent_id)
        home = home_partition(agent_key)
        if done.example is not None:
            self._command("learn", home, agent_key, **asdict(done.example))
        if done.observation is not None:
            self._command("observe", home, agent_key, **asdict(done.observation))
        # written after the outcome was queued (the producer sends in order), so a crash in
        # between re-emits the same revision rather than losing it
        self.traces[st.trace_id] = st.to_dict()

    def _run(self, event: EventT) -> None:
        """Executes one command. Nothing here awaits: a command reads, decides and writes a
        trace's state in one step, so no join can interleave and be overwritten."""
        key = (event.message.key or b"").decode()
        header, _, blob = (event.message.value or b"").partition(b"\n")
        cmd = json.loads(header)
        op, now = cmd.pop("op"), _now_ms()
        partition = event.message.partition
        engine = self.engine
        if op == "finalise":
            st = self._state(key)
            if st is not None and engine.is_due(st, now):
                self._finalise(st, now)
        elif op == "expire":
            st = self._state(key)
            if st is not None and engine.is_expired(st, now):
                if st.dirty:
                    self._finalise(st, now)
                if key in self.traces:  # (_finalise drops a deleted trace's state itself)
                    del self.traces[key]
                self._due.discard(key)
        elif op == "learn":
            self._master(key).learn(TrainingExample(**cmd))
            self._masters.dirty.add(key)
        elif op == "observe":
            drift = self._master(key).observe(Observation(**cmd))
            self._masters.dirty.add(key)
            if drift is not None:
                tenant, agent = json.loads(key)
                alert = drift_alert_record(drift, tenant, agent, now)
                log.warning("labeller: drift of %s/%s %s: success rate %.2f -> %.2f after %d outcomes",
                            tenant, agent, drift.model_version, drift.estimate_before, drift.estimate_after, drift.n)
                self.drift_topic.send_soon(key=drift.model_version.encode(), value=self.codec.encode("DriftAlert", alert))
        elif op == "checkpoint":
            learner = self._masters.peek(key)
            if learner is not None:
                data = learner.to_bytes()
                self.learners[_table_key(key, partition)] = data
                self._masters.checkpointed(key, data)
                for p in range(_PARTITIONS):  # copies for finalisation on every partition
                    if p != partition:
                        self._command("replica", p, key, data)
        elif op == "replica":
            self.learners[_table_key(key, partition)] = blob
        else:
            log.error("labeller: unknown command %r for %r", op, key)

    # -- recovery, rebalancing, the timer ----------------------------------------------------

    async def _rearm(self) -> None:
        """After a (re)start or rebalance: re-arm every dirty trace this worker now owns."""
        self._due.clear()
        pending = 0
        for key, raw in self.traces.items():
            if raw and raw.get("dirty"):
                self._due.push(key, self.engine.due_at(TraceState.from_dict(raw)))
                pending += 1
        log.info("labeller: %d traces in state, %d awaiting an outcome", len(self.traces), pending)

    async def _on_revoked(self, sender: Any, revoked: set[TP], signal: Any = None, **kwargs: Any) -> None:
        # Faust revokes every partition at every rebalance, also those this worker gets back: the
        # masters stay (each is reloaded at its next use if it was checkpointed elsewhere meanwhile,
        # and dropped at the next tick if its home partition is gone; see labelling/masters.py)
        gone = {tp.partition for tp in revoked if tp.topic == _EXPERIENCES}
        for rk in [rk for rk in self._replicas if rk[1] in gone]:
            self._replicas.pop(rk, None)

    def _tick(self) -> None:
        if not self._ready():
            return
        try:
            now = _now_ms()
            active = self._active_partitions()
            for key in list(self._due.pop_due(now)):
                st = self._state(key)
                if st is None or not st.dirty or st.partition not in active:
                    continue
                if not self.engine.is_due(st, now):  # an event re-armed it since it was queued
                    self._due.push(key, self.engine.due_at(st))
                    continue
                self._command("finalise", st.partition, key)
            self._masters.forget_unless(active, home_partition)  # homes that moved to another worker
            for agent_key in list(self._masters.dirty):
                self._masters.dirty.discard(agent_key)
                self._command("checkpoint", home_partition(agent_key), agent_key)
            if time.monotonic() - self._last_sweep >= self.settings.expiry_sweep_s:
                self._last_sweep = time.monotonic()
                self._sweep(now, active)
        except Exception:
            log.exception("labeller: tick failed")

    def _sweep(self, now: int, active: set[int]) -> None:
        """Expires old traces, and re-arms dirty ones the queue lost (e.g. a failed send)."""
        for key, raw in list(self.traces.items()):
            if not raw or raw.get("partition") not in active:
                continue
            if now - raw["last_event_ms"] >= self.engine.ttl_ms:
                self._command("expire", raw["partition"], key)
            elif raw.get("dirty") and key not in self._due:
                self._due.push(key, self.engine.due_at(TraceState.from_dict(raw)))
