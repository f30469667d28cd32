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
calls them and writes.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from dataclasses import asdict
from datetime import timedelta
from typing import Any, cast

import faust
from faust.types import TP, EventT

from agentgym.processors.app import app, topic
from agentgym.processors.app import settings as app_settings
from agentgym.processors.labelling.engine import AgentLearner, DueQueue, LabellingEngine, Observation, TrainingExample, drift_alert_record
from agentgym.processors.labelling.exceptions import InvalidEventError
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.labelling.state import TraceState
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = [
    "PROCESSOR",
    "settings",
    "engine",
    "traces",
    "learners",
    "commands",
    "join_experiences",
    "join_feedback",
    "run_commands",
    "dead_letter_record",
    "home_partition",
    "ensure_internal_topics",
]

log = logging.getLogger("agentgym.labeller")

PROCESSOR = "labeller"
settings = LabellerSettings()
engine = LabellingEngine(settings=settings)
codec = AvroCodec()

_PARTITIONS = TOPICS["experiences"].partitions
_EXPERIENCES = TOPICS["experiences"].name
experiences_topic = topic("experiences")
feedback_topic = topic("feedback")
outcomes_topic = topic("outcomes")
drift_topic = topic("drift")
deadletter_topic = topic("deadletter")

# trace id -> TraceState.to_dict() (JSON in the changelog)
traces = app.Table(
    "labeller-traces", default=None, partitions=_PARTITIONS, key_type=str, value_type=None,
    help="join state of each trace: run summary, feedback, emitted revision",
)
# json [tenant, agent, partition] -> AgentLearner checkpoint (raw bytes); the entry on the
# agent's home partition is the master, the others are replicas for prediction
learners = app.Table(
    "labeller-learners", default=None, partitions=_PARTITIONS, key_type=str, value_type=bytes,
    help="online model, base rate and drift detectors of each agent",
)
_COMMANDS_RETENTION_MS = 24 * 3600 * 1000  # commands are consumed within seconds
commands = app.topic(
    f"{app.conf.id}-labeller-commands", key_type=bytes, value_type=bytes, partitions=_PARTITIONS,
    internal=True, retention=timedelta(milliseconds=_COMMANDS_RETENTION_MS), deleting=True,  # see ensure_internal_topics
)


def ensure_internal_topics(bootstrap_servers: str, timeout_s: float = 30.0) -> list[str]:
    """Creates the labeller's internal topics (changelogs, commands) and waits until the
    broker's metadata shows them. Returns the names created.

    Faust declares them itself too, but on a first start its partition assignment can
    run before a just-created topic is in the metadata ("Ignoring missing topic"), which
    leaves the commands topic unassigned until the next rebalance; creating them before
    the worker joins its group removes that race.
    """
    from agentgym.producers.admin import create_topics

    wanted = {
        traces.changelog_topic.get_topic_name(): (_PARTITIONS, {"cleanup.policy": "compact"}),
        learners.changelog_topic.get_topic_name(): (_PARTITIONS, {"cleanup.policy": "compact"}),
        commands.get_topic_name(): (_PARTITIONS, {"cleanup.policy": "delete", "retention.ms": str(_COMMANDS_RETENTION_MS)}),
    }
    return create_topics(bootstrap_servers, wanted, timeout_s, replication_factor=int(app.conf.topic_replication_factor or 1))


@app.on_worker_init.connect  # type: ignore[arg-type]  # a plain receiver: (sender, signal=...)
def _on_worker_init(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
    # `faust worker` only, before the app starts (so before its consumer joins the group)
    created = ensure_internal_topics(app_settings.bootstrap_servers)
    if created:
        log.info("labeller: created topics %s", created)


# worker-local; rebuilt from the tables after every recovery
_due = DueQueue()
_masters: dict[str, AgentLearner] = {}  # agent key -> live learner, for home partitions owned here
_replicas: dict[tuple[str, int], tuple[bytes, AgentLearner]] = {}  # (agent key, partition) -> (checkpoint, learner)
_dirty: set[str] = set()  # agent keys whose master changed since its last checkpoint
_last_sweep = 0.0


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


def _active_partitions() -> set[int]:
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == _EXPERIENCES}


def _ready() -> bool:
    recovery = cast(Any, app.tables).recovery  # the TableManager's recovery service
    return not app.rebalancing and not app.in_recovery and recovery.completed.is_set()


def _command(op: str, partition: int, key: str, blob: bytes = b"", **fields: Any) -> None:
    # value: one JSON header line, then an optional binary blob (a checkpoint);
    # send_soon buffers without awaiting (see _run)
    header = json.dumps({"op": op, **fields}).encode()
    commands.send_soon(key=key.encode(), value=header + b"\n" + blob, partition=partition)


# -- dead letters ----------------------------------------------------------------------

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


async def _dead_letter(event: EventT, exc: BaseException, tenant_id: str = "") -> None:
    msg = event.message
    log.warning("labeller: dead-lettering %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
    await deadletter_topic.send(key=msg.key, value=codec.encode("DeadLetter", dead_letter_record(msg, exc, tenant_id)))


# -- joining ---------------------------------------------------------------------------

def _state(trace_id: str) -> TraceState | None:
    raw = traces.get(trace_id)
    return TraceState.from_dict(raw) if raw else None


async def _join(event: EventT, record_name: str) -> None:
    """Decodes one message of a trace topic and joins it into its trace's state."""
    msg = event.message
    tenant = ""
    try:
        record = codec.decode(msg.value, expected=record_name).record
        tenant = record.get("tenant_id") or ""
        st = _state(record["trace_id"])
        now = _now_ms()
        if record_name == "Experience":
            st, changed = engine.ingest_experience(st, record, msg.partition, now, key=msg.key), True
        else:
            st, changed = engine.ingest_feedback(st, record, msg.partition, now, key=msg.key)
    except (DecodeError, InvalidEventError) as exc:
        await _dead_letter(event, exc, tenant)
    except Exception as exc:  # a bug must not stop the join: keep the message, say why
        log.exception("labeller: unexpected error joining %s[%s]@%s", msg.topic, msg.partition, msg.offset)
        await _dead_letter(event, exc, tenant)
    else:
        if changed:
            traces[st.trace_id] = st.to_dict()
            _due.push(st.trace_id, engine.due_at(st))


@app.agent(experiences_topic, name="labeller-join-experiences")
async def join_experiences(stream: faust.StreamT) -> None:
    """Joins experiences into the trace table; undecodable or invalid ones go to dead letters."""
    async for event in stream.events():
        await _join(event, "Experience")


@app.agent(feedback_topic, name="labeller-join-feedback")
async def join_feedback(stream: faust.StreamT) -> None:
    """Joins feedback into the trace table; undecodable or invalid feedback goes to dead letters."""
    async for event in stream.events():
        await _join(event, "Feedback")


# -- learners --------------------------------------------------------------------------

def _load(data: bytes | None, what: str) -> AgentLearner | None:
    if not data:
        return None
    try:
        return AgentLearner.from_bytes(data)
    except Exception:  # an unreadable checkpoint (e.g. after a river upgrade): start over, loudly
        log.exception("labeller: cannot restore learner %s; starting a new one", what)
        return None


def _master(agent_key: str) -> AgentLearner:
    """The live learner of an agent whose home partition this worker owns."""
    learner = _masters.get(agent_key)
    if learner is None:
        tk = _table_key(agent_key, home_partition(agent_key))
        learner = _load(learners.get(tk), tk)
    tenant, agent = json.loads(agent_key)
    learner = _masters[agent_key] = engine.fit_learner(learner, tenant, agent)
    return learner


def _learner_for_prediction(st: TraceState) -> AgentLearner | None:
    """The master when this worker owns the agent's home partition, else the replica on the trace's partition."""
    agent_key = _agent_key(st.tenant_id, st.agent_id)
    if home_partition(agent_key) in _active_partitions():
        return _master(agent_key)
    data = learners.get(_table_key(agent_key, st.partition))
    if not data:
        return None
    cached = _replicas.get((agent_key, st.partition))
    if cached is not None and cached[0] == data:
        return cached[1]
    learner = _load(data, agent_key)
    if learner is not None:
        _replicas[(agent_key, st.partition)] = (data, learner)
    return learner


# -- commands --------------------------------------------------------------------------

def _finalise(st: TraceState, now: int) -> None:
    done = engine.finalise(st, _learner_for_prediction(st), now)
    if done.outcome is not None:
        outcomes_topic.send_soon(key=st.trace_id.encode(), value=codec.encode("Outcome", done.outcome), partition=st.partition)
    agent_key = _agent_key(st.tenant_id, st.agent_id)
    home = home_partition(agent_key)
    if done.example is not None:
        _command("learn", home, agent_key, **asdict(done.example))
    if done.observation is not None:
        _command("observe", home, agent_key, **asdict(done.observation))
    # written after the outcome was queued (the producer sends in order), so a crash in
    # between re-emits the same revision rather than losing it
    traces[st.trace_id] = st.to_dict()


def _run(event: EventT) -> None:
    """Executes one command. Nothing here awaits: a command reads, decides and writes a
    trace's state in one step, so no join can interleave and be overwritten."""
    key = (event.message.key or b"").decode()
    header, _, blob = (event.message.value or b"").partition(b"\n")
    cmd = json.loads(header)
    op, now = cmd.pop("op"), _now_ms()
    partition = event.message.partition
    if op == "finalise":
        st = _state(key)
        if st is not None and engine.is_due(st, now):
            _finalise(st, now)
    elif op == "expire":
        st = _state(key)
        if st is not None and engine.is_expired(st, now):
            if st.dirty:
                _finalise(st, now)
            del traces[key]
            _due.discard(key)
    elif op == "learn":
        _master(key).learn(TrainingExample(**cmd))
        _dirty.add(key)
    elif op == "observe":
        drift = _master(key).observe(Observation(**cmd))
        _dirty.add(key)
        if drift is not None:
            tenant, agent = json.loads(key)
            alert = drift_alert_record(drift, tenant, agent, now)
            log.warning("labeller: drift of %s/%s %s: success rate %.2f -> %.2f after %d outcomes",
                        tenant, agent, drift.model_version, drift.estimate_before, drift.estimate_after, drift.n)
            drift_topic.send_soon(key=drift.model_version.encode(), value=codec.encode("DriftAlert", alert))
    elif op == "checkpoint":
        learner = _masters.get(key)
        if learner is not None:
            data = learner.to_bytes()
            learners[_table_key(key, partition)] = data
            for p in range(_PARTITIONS):  # copies for finalisation on every partition
                if p != partition:
                    _command("replica", p, key, data)
    elif op == "replica":
        learners[_table_key(key, partition)] = blob
    else:
        log.error("labeller: unknown command %r for %r", op, key)


@app.agent(commands, name="labeller-commands")
async def run_commands(stream: faust.StreamT) -> None:
    """Finalises quiet traces, trains learners, checkpoints and copies them, expires old traces."""
    async for event in stream.events():
        try:
            _run(event)
        except Exception:  # never let one trace or learner stop the labeller
            log.exception("labeller: command %r failed", (event.message.value or b"")[:200])


# -- recovery, rebalancing, the timer ----------------------------------------------------

@traces.on_recover
async def _rearm() -> None:
    """After a (re)start or rebalance: re-arm every dirty trace this worker now owns."""
    _due.clear()
    pending = 0
    for key, raw in traces.items():
        if raw and raw.get("dirty"):
            _due.push(key, engine.due_at(TraceState.from_dict(raw)))
            pending += 1
    log.info("labeller: %d traces in state, %d awaiting an outcome", len(traces), pending)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust sends (sender, revoked, signal=...)
async def _on_revoked(sender: Any, revoked: set[TP], signal: Any = None, **kwargs: Any) -> None:
    # another worker may own these now; its copy, restored from the changelog, is the truth
    gone = {tp.partition for tp in revoked if tp.topic == _EXPERIENCES}
    for agent_key in [k for k in _masters if home_partition(k) in gone]:
        _masters.pop(agent_key, None)
        _dirty.discard(agent_key)
    for rk in [rk for rk in _replicas if rk[1] in gone]:
        _replicas.pop(rk, None)


@app.timer(settings.tick_s, name="labeller-tick")
async def _tick() -> None:
    """Sends the commands that are due: outcomes of quiet traces, checkpoints, expiry."""
    global _last_sweep
    if not _ready():
        return
    try:
        now = _now_ms()
        active = _active_partitions()
        for key in list(_due.pop_due(now)):
            st = _state(key)
            if st is None or not st.dirty or st.partition not in active:
                continue
            if not engine.is_due(st, now):  # an event re-armed it since it was queued
                _due.push(key, engine.due_at(st))
                continue
            _command("finalise", st.partition, key)
        for agent_key in list(_dirty):
            _dirty.discard(agent_key)
            home = home_partition(agent_key)
            if home in active:
                _command("checkpoint", home, agent_key)
        if time.monotonic() - _last_sweep >= settings.expiry_sweep_s:
            _last_sweep = time.monotonic()
            _sweep(now, active)
    except Exception:
        log.exception("labeller: tick failed")


def _sweep(now: int, active: set[int]) -> None:
    """Expires old traces, and re-arms dirty ones the queue lost (e.g. a failed send)."""
    for key, raw in list(traces.items()):
        if not raw or raw.get("partition") not in active:
            continue
        if now - raw["last_event_ms"] >= engine.ttl_ms:
            _command("expire", raw["partition"], key)
        elif raw.get("dirty") and key not in _due:
            _due.push(key, engine.due_at(TraceState.from_dict(raw)))
