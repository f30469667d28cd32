"""The experiments processor: Faust agents that count units, test, snapshot and decide.

Topology (the trace topics are keyed by trace id; units and experiments are not)::

    gym-outcomes-v1    ──▶ experiments-outcomes    ─┐  one UnitObservation per event of a
    gym-experiences-v1 ──▶ experiments-experiences ─┤  running experiment, keyed by unit
          │ (assignment of each trace of an         │
          ▼  experiment with a rating metric)       │
    table experiments-rating-traces                 │
          ▲ joined by trace id (co-partitioned)     │
    gym-feedback-v1    ──▶ experiments-feedback    ─┘  (rating / rating_scale)
                                                        │
                              <app id>-experiments-units (internal, 6 partitions)
                                                        ▼
    experiments-units: table experiments-units    (each unit's first value / running mean)
                       table experiments-partials (this partition's statistics per variant
                                                   and metric: units, not events)
                                                        │ timer, every snapshot interval:
                                                        ▼ each partition's partial, keyed by experiment
                              <app id>-experiments-partials (internal)
                                                        ▼
    experiments-aggregate: table experiments-aggregates (latest partial of every partition,
        the sequential tests' running state, ρ, the SRM state, the decision taken)
        ├──▶ gym-experiment-stats-v1  one StatsSnapshot per metric and look
        ├──▶ gym-decisions-v1         promote_winner / rollback, with the evidence
        └──▶ gym-experiments-v1       the next configuration (all traffic to the winner
                                      or to the control): agents follow it live

The ``rating`` metric comes from feedback, which carries no assignment: the experiences
agent remembers, in ``experiments-rating-traces`` (keyed by tenant and trace id), the
assignment of each trace of a running experiment that has a ``rating`` metric; the
feedback agent looks the trace up there (the trace topics are keyed by trace id and
co-partitioned, so both records of a trace are on the same partition number and the same
worker) and sends the rating as an observation of that unit. Feedback that arrives
before its experience is held in memory for ``AGENTGYM_EXPERIMENTS_FEEDBACK_HOLD_S``
(at most ``_HOLD_MAX`` records) and sent when the experience arrives; held feedback is
not counted if the experience does not come in time or the worker restarts meanwhile.

Why two stages: statistics count units, and a unit's traces land on many partitions
of the trace topics, so observations are re-keyed by unit first (each unit counted
once, on one partition); each partition's statistics are then partial, and since
they are mergeable sufficient statistics the experiment's partition sums them
exactly. A partial is the full state of its partition, so a redelivered one changes
nothing. All four tables are changelog-backed: a restarted or rebalanced worker
restores them before it processes again.

The live configurations come from an :class:`~agentgym.producers.follower.ExperimentFollower`,
the same follower agents use; events are handled only once it has read the topic.
The statistics and decisions are pure (:mod:`agentgym.processors.experiments.engine`); this
module decodes, calls them and writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from typing import Any

import faust
from faust.types import EventT

from agentgym.processors.app import app, topic
from agentgym.processors.app import settings as app_settings
from agentgym.processors.experiments.config import TERMINAL, ExperimentConfig
from agentgym.processors.experiments.engine import (
    ExperimentState,
    UnitObservation,
    analyse,
    applied_config,
    apply_observation,
    decision_record,
    feedback_observation,
    merge_partials,
    rating_assignment,
    snapshot_records,
    unit_observations,
)
from agentgym.processors.experiments.metrics import Source
from agentgym.processors.experiments.settings import ExperimentSettings
from agentgym.producers.follower import ExperimentFollower
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = [
    "PROCESSOR",
    "settings",
    "follower",
    "unit_states",
    "partials",
    "aggregates",
    "units_topic",
    "partials_topic",
    "observe_outcomes",
    "observe_experiences",
    "observe_feedback",
    "rating_traces",
    "count_units",
    "aggregate",
]

log = logging.getLogger("agentgym.experiments")

PROCESSOR = "experiments"
settings = ExperimentSettings()
codec = AvroCodec()

_UNIT_PARTITIONS = TOPICS["outcomes"].partitions
_AGG_PARTITIONS = TOPICS["experiment-stats"].partitions
_INTERVAL_MS = int(settings.experiments_snapshot_interval_s * 1000)
_TRACE_PARTITIONS = TOPICS["experiences"].partitions  # = feedback's (co-partitioned)
_RATING_SOURCES = frozenset(s.strip() for s in settings.experiments_rating_sources.split(",") if s.strip())
_HOLD_MAX = 10_000  # feedback records held at most, waiting for their experience

outcomes_topic = topic("outcomes")
experiences_topic = topic("experiences")
feedback_topic = topic("feedback")
stats_topic = topic("experiment-stats")
decisions_topic = topic("decisions")
experiments_topic = topic("experiments")
units_topic = app.topic(
    f"{app.conf.id}-experiments-units", key_type=bytes, value_type=bytes, partitions=_UNIT_PARTITIONS,
    internal=True, retention=timedelta(days=1), deleting=True,
)
partials_topic = app.topic(
    f"{app.conf.id}-experiments-partials", key_type=bytes, value_type=bytes, partitions=_AGG_PARTITIONS,
    internal=True, retention=timedelta(days=1), deleting=True,
)



def _ensure_internal_topics(timeout_s: float = 20.0) -> None:
    """Creates the internal and changelog topics before the worker's consumer subscribes.

    Faust creates them as well, but concurrently with the consumer group's first
    assignment; when the broker's metadata lags the creation by a few milliseconds the
    assignment leaves the new topic out: an internal topic is then consumed by nobody,
    and a table whose changelog is missing fails every write with PartitionsMismatch,
    until the next rebalance (seen here with Kafka 4.1). Creating them first, and
    waiting until the metadata lists them, closes that race. Failures are logged:
    Faust still tries.
    """
    from agentgym.producers.admin import create_topics

    day_ms = str(24 * 3600 * 1000)
    wanted = {units_topic.get_topic_name(): (_UNIT_PARTITIONS, {"cleanup.policy": "delete", "retention.ms": day_ms}),
              partials_topic.get_topic_name(): (_AGG_PARTITIONS, {"cleanup.policy": "delete", "retention.ms": day_ms})}
    for table in (unit_states, partials, aggregates, rating_traces):
        wanted[table.changelog_topic.get_topic_name()] = (table.partitions or _UNIT_PARTITIONS, {"cleanup.policy": "compact"})
    try:
        create_topics(app_settings.bootstrap_servers, wanted, timeout_s)
    except Exception:
        log.exception("experiments: could not create the internal topics; Faust will try")


# json [tenant, experiment, unit] -> the unit's state (see engine.apply_observation)
unit_states = app.Table(
    "experiments-units", default=None, partitions=_UNIT_PARTITIONS, key_type=str, value_type=None,
    help="each unit's variant and its first (proportion) or running-mean value per metric",
)
# json [tenant, experiment, partition] -> {"arms": {variant: {metric: statistic}}}
partials = app.Table(
    "experiments-partials", default=None, partitions=_UNIT_PARTITIONS, key_type=str, value_type=None,
    help="one partition's sufficient statistics per experiment, variant and metric",
)
# json [tenant, experiment] -> {"parts": {partition: partial}, "state": ExperimentState, "last_ms": int}
aggregates = app.Table(
    "experiments-aggregates", default=None, partitions=_AGG_PARTITIONS, key_type=str, value_type=None,
    help="every partition's latest partial and the sequential tests' running state, per experiment",
)

# json [tenant, trace] -> {"t", "e", "v", "u"}: the assignment of a trace whose experiment has a rating metric
rating_traces = app.Table(
    "experiments-rating-traces", default=None, partitions=_TRACE_PARTITIONS, key_type=str, value_type=None,
    help="the assignment of each trace of a running experiment with a rating metric, for joining its feedback",
)

_ensure_internal_topics()

_follower: ExperimentFollower | None = None
_parsed: dict[str, ExperimentConfig] = {}  # config event id -> model (configs are immutable per version)
_dirty: set[str] = set()  # partial keys changed since they were last sent
# json [tenant, trace] -> [(monotonic arrival, Feedback record)]: feedback waiting for its experience
_held: dict[str, list[tuple[float, dict[str, Any]]]] = {}


def follower() -> ExperimentFollower:
    """The worker's follower of the experiments topic (started on first use)."""
    global _follower
    if _follower is None:
        _follower = ExperimentFollower(app_settings.bootstrap_servers).start()
    return _follower


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _config(experiment_id: str) -> ExperimentConfig | None:
    record = follower().get(experiment_id)
    if record is None:
        return None
    cfg = _parsed.get(record["event_id"])
    if cfg is None:
        if len(_parsed) > 10_000:
            _parsed.clear()
        cfg = _parsed[record["event_id"]] = ExperimentConfig.from_record(record)
    return cfg


async def _wait_for_configs() -> None:
    """Blocks the calling agent until the follower has read the experiments topic once."""
    f = follower()
    while not f.ready:
        await asyncio.sleep(0.1)


def _ready() -> bool:
    recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]  # the concrete TableManager has it
    return not app.rebalancing and not app.in_recovery and recovered and follower().ready


# -- stage 1: events -> unit observations ------------------------------------------------

def _experiment_of(source: Source, record: dict[str, Any]) -> str | None:
    if source == "outcome":
        return record.get("experiment_id")
    a = record.get("assignment")
    return a.get("experiment_id") if a else None


async def _observe(event: EventT, source: Source, record_name: str) -> None:
    msg = event.message
    try:
        record = codec.decode(msg.value, expected=record_name).record
    except DecodeError:
        return  # the ClickHouse sink dead-letters undecodable messages of every topic
    experiment_id = _experiment_of(source, record)
    if not experiment_id:
        return
    config = _config(experiment_id)
    obs = unit_observations(source, record, config)
    if obs is not None:
        await units_topic.send(key=obs.key.encode(), value=obs.to_json())
    if source == "experience":
        assignment = rating_assignment(record, config)
        if assignment is not None:
            key = json.dumps([record.get("tenant_id"), record.get("trace_id")])
            rating_traces[key] = assignment
            await _release_held(key, assignment)


def _held_count() -> int:
    return sum(len(v) for v in _held.values())


def _hold(key: str, record: dict[str, Any]) -> None:
    """Keeps feedback whose trace's assignment is not known yet (bounded: expired first, then oldest)."""
    now = time.monotonic()
    cutoff = now - settings.experiments_feedback_hold_s
    for k in [k for k, items in _held.items() if items[-1][0] < cutoff]:
        del _held[k]
    while _held and _held_count() >= _HOLD_MAX:
        del _held[next(iter(_held))]
    _held.setdefault(key, []).append((now, record))


async def _release_held(key: str, assignment: dict[str, str]) -> None:
    """Sends the held feedback of a trace whose assignment just became known."""
    items = _held.pop(key, None)
    if not items:
        return
    cutoff = time.monotonic() - settings.experiments_feedback_hold_s
    config = _config(assignment["e"])
    for at, record in items:
        if at >= cutoff:
            await _send_feedback(record, assignment, config)


async def _send_feedback(record: dict[str, Any], assignment: dict[str, str], config: ExperimentConfig | None) -> None:
    obs = feedback_observation(record, assignment, config, _RATING_SOURCES)
    if obs is not None:
        await units_topic.send(key=obs.key.encode(), value=obs.to_json())


async def _observe_feedback(event: EventT) -> None:
    try:
        record = codec.decode(event.message.value, expected="Feedback").record
    except DecodeError:
        return
    if record.get("rating") is None or record.get("source", "human") not in _RATING_SOURCES:
        return
    key = json.dumps([record.get("tenant_id"), record.get("trace_id")])
    assignment = rating_traces.get(key)
    if assignment is None:
        if settings.experiments_feedback_hold_s > 0:
            _hold(key, record)
        return
    await _send_feedback(record, assignment, _config(assignment["e"]))


@app.agent(outcomes_topic, name="experiments-outcomes")
async def observe_outcomes(stream: faust.StreamT) -> None:
    """Outcomes of traces in a running experiment become unit observations (success_rate)."""
    await _wait_for_configs()
    async for event in stream.events():
        try:
            await _observe(event, "outcome", "Outcome")
        except Exception:  # one bad event must not stop the experiment's statistics
            log.exception("experiments: outcome %s[%s]@%s failed", event.message.topic, event.message.partition, event.message.offset)


@app.agent(experiences_topic, name="experiments-experiences")
async def observe_experiences(stream: faust.StreamT) -> None:
    """Experiences with an assignment become unit observations (latency, cost, tokens, errors);
    the assignments of traces of experiments with a rating metric are remembered for their feedback."""
    await _wait_for_configs()
    async for event in stream.events():
        try:
            await _observe(event, "experience", "Experience")
        except Exception:
            log.exception("experiments: experience %s[%s]@%s failed", event.message.topic, event.message.partition, event.message.offset)


@app.agent(feedback_topic, name="experiments-feedback")
async def observe_feedback(stream: faust.StreamT) -> None:
    """Ratings on a trace of a running experiment with a rating metric become unit observations (rating)."""
    await _wait_for_configs()
    async for event in stream.events():
        try:
            await _observe_feedback(event)
        except Exception:
            log.exception("experiments: feedback %s[%s]@%s failed", event.message.topic, event.message.partition, event.message.offset)


# -- stage 2: units -> partial statistics --------------------------------------------------

@app.agent(units_topic, name="experiments-units")
async def count_units(stream: faust.StreamT) -> None:
    """Counts each unit once per metric and keeps this partition's statistics per variant."""
    await _wait_for_configs()
    async for event in stream.events():
        try:
            obs = UnitObservation.from_json(event.message.value)
            config = _config(obs.experiment_id)
            if config is None:
                continue
            pkey = json.dumps([obs.tenant_id, obs.experiment_id, event.message.partition])
            unit, part, changed = apply_observation(unit_states.get(obs.key), partials.get(pkey), obs, config)
            unit_states[obs.key] = unit
            if changed:
                partials[pkey] = part
                _dirty.add(pkey)
        except Exception:
            log.exception("experiments: unit observation %r failed", (event.message.value or b"")[:200])


def _active(topic_name: str) -> set[int]:
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic_name}


@app.timer(settings.experiments_snapshot_interval_s, name="experiments-flush")
async def _flush() -> None:
    """Sends each active partition's partial of every live experiment to the experiment's partition."""
    if not _ready():
        return
    try:
        active = _active(units_topic.get_topic_name())
        for pkey, part in list(partials.items()):
            tenant, experiment_id, p = json.loads(pkey)
            if p not in active or not part:
                continue
            config = _config(experiment_id)
            live = config is not None and config.status not in TERMINAL
            if not live and pkey not in _dirty:
                continue
            _dirty.discard(pkey)
            await partials_topic.send(key=json.dumps([tenant, experiment_id]).encode(),
                                      value=json.dumps({"p": p, "arms": part.get("arms", {})}).encode())
    except Exception:
        log.exception("experiments: flush failed")


# -- stage 3: partials -> tests, snapshots, decisions ------------------------------------------

async def _look(key: str, agg: dict[str, Any], config: ExperimentConfig, now: int) -> None:
    """One look at an experiment: snapshots, and a decision applied to the live configuration."""
    state = ExperimentState.from_dict(agg.get("state"))
    totals = merge_partials(agg["parts"].values(), config)
    analysis, state = analyse(
        config, totals, state, mixing_horizon=settings.experiments_mixing_horizon, correction=settings.experiments_correction,
        srm_alpha=settings.experiments_srm_alpha, srm_concentration=settings.experiments_srm_concentration,
    )
    eid = config.experiment_id.encode()
    for rec in snapshot_records(analysis, now):
        await stats_topic.send(key=eid, value=codec.encode("StatsSnapshot", rec))
    decided = state.decided or {}
    if (config.status == "running" and analysis.decision.action != "continue"
            and int(decided.get("config_version", 0)) < config.config_version):
        d = analysis.decision
        log.warning("experiments: %s %s%s: %s", config.experiment_id, d.action, f" {d.winner}" if d.winner else "", d.reason)
        await decisions_topic.send(key=eid, value=codec.encode("Decision", decision_record(analysis, now)))
        state.decided = {"action": d.action, "winner": d.winner, "config_version": config.config_version, "at_ms": now}
        nxt = applied_config(config, d) if settings.experiments_auto_decide else None
        if nxt is not None:
            await experiments_topic.send(key=eid, value=codec.encode("ExperimentConfig", nxt.to_record()))
    agg["state"] = state.to_dict()
    agg["last_ms"] = now


@app.agent(partials_topic, name="experiments-aggregate")
async def aggregate(stream: faust.StreamT) -> None:
    """Sums an experiment's partials, tests, snapshots and decides, at most once per interval."""
    await _wait_for_configs()
    async for event in stream.events():
        try:
            key = (event.message.key or b"").decode()
            _tenant, experiment_id = json.loads(key)
            body = json.loads(event.message.value)
            agg = aggregates.get(key) or {"parts": {}, "state": {}, "last_ms": 0}
            agg["parts"][str(body["p"])] = {"arms": body["arms"]}
            config = _config(experiment_id)
            now = _now_ms()
            if config is not None and config.status in ("running", "paused") and now - int(agg.get("last_ms", 0)) >= _INTERVAL_MS // 2:
                await _look(key, agg, config, now)
            aggregates[key] = agg
        except Exception:
            log.exception("experiments: aggregation of %r failed", (event.message.key or b"")[:200])


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode's signal typing; Faust passes revoked=...
async def _on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
    # another worker owns these partials now; it sends them from its restored table
    gone = {tp.partition for tp in revoked if tp.topic == units_topic.get_topic_name()}
    for pkey in [k for k in _dirty if json.loads(k)[2] in gone]:
        _dirty.discard(pkey)
