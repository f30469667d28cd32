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

Audit labels (Feedback with ``metadata["audit"] = "true"``) take the same join: the
experiences agent also remembers the assignment of each trace whose unit is in an
experiment's audit sample, and the feedback agent sends the gold label as an
observation of that unit (:func:`~agentgym.processors.experiments.engine.audit_observation`).

The ``rating`` metric comes from feedback, which carries no assignment: the experiences
agent remembers, in ``experiments-rating-traces`` (keyed by tenant and trace id), the
assignment of each trace of a running experiment that has a ``rating`` metric; the
feedback agent looks the trace up there (the trace topics are keyed by trace id and
co-partitioned, so both records of a trace are on the same partition number and the same
worker) and sends the rating as an observation of that unit. Feedback that arrives
before its experience is held in memory for ``AGENTGYM_EXPERIMENTS_FEEDBACK_HOLD_S``
(at most ``_HOLD_MAX`` records) and sent when the experience arrives; held feedback is
not counted if the experience does not come in time or the worker restarts meanwhile.

CUPED's covariates: outcome and experience observations pass through a stage keyed by
tenant and unit (``<app id>-experiments-history``, table ``experiments-unit-history``)
that keeps each unit's daily values across experiments and attaches, for the metrics an
experiment adjusts, the unit's mean over the look-back window before its first exposure
(:func:`~agentgym.processors.experiments.engine.through_history`).

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
module decodes, calls them and writes. :func:`register` declares all of it on the one
Faust app (:mod:`agentgym.processors.app`); importing the module declares nothing, and the
internal topics are created when a worker starts.
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

from agentgym.processors.channels import topic
from agentgym.processors.deletions import DeletionFollower
from agentgym.processors.experiments.config import TERMINAL, ExperimentConfig
from agentgym.processors.experiments.engine import (
    ExperimentState,
    UnitObservation,
    analyse,
    applied_config,
    apply_observation,
    audit_observation,
    decision_record,
    feedback_observation,
    history_key,
    merge_partials,
    rating_assignment,
    snapshot_records,
    through_history,
    unit_observations,
)
from agentgym.processors.experiments.metrics import Source, is_audit_label
from agentgym.processors.experiments.settings import ExperimentSettings
from agentgym.processors.settings import ProcessorSettings
from agentgym.producers.admin import create_topics
from agentgym.producers.follower import ExperimentFollower
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["PROCESSOR", "ExperimentsProcessor", "register"]

log = logging.getLogger("agentgym.experiments")

PROCESSOR = "experiments"

_UNIT_PARTITIONS = TOPICS["outcomes"].partitions
_AGG_PARTITIONS = TOPICS["experiment-stats"].partitions
_TRACE_PARTITIONS = TOPICS["experiences"].partitions  # = feedback's (co-partitioned)
_HOLD_MAX = 10_000  # feedback records held at most, waiting for their experience
_TOPIC_TIMEOUT_S = 20.0  # how long a starting worker waits for its internal topics


def register(app: faust.App, settings: ProcessorSettings) -> "ExperimentsProcessor":
    """Declares the experiments processor (tables, topics, agents, timer, hooks) on ``app``.

    Its own settings (:class:`ExperimentSettings`) are read here, not at import.
    """
    processor = ExperimentsProcessor(app, settings.bootstrap_servers, ExperimentSettings())
    processor.attach()
    return processor


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _experiment_of(source: Source, record: dict[str, Any]) -> str | None:
    if source == "outcome":
        return record.get("experiment_id")
    a = record.get("assignment")
    return a.get("experiment_id") if a else None


class ExperimentsProcessor:
    """The experiments processor's Faust objects on one app, and its worker-local state.

    Args:
        app: the Faust app the tables and topics are declared on.
        bootstrap_servers: Kafka, for the internal topics and the experiments follower.
        settings: snapshot interval, tuning and decision settings.
    """

    def __init__(self, app: faust.App, bootstrap_servers: str, settings: ExperimentSettings) -> None:
        self.app = app
        self.bootstrap_servers = bootstrap_servers
        self.settings = settings
        self.codec = AvroCodec()
        self._interval_ms = int(settings.experiments_snapshot_interval_s * 1000)
        self._rating_sources = frozenset(s.strip() for s in settings.experiments_rating_sources.split(",") if s.strip())
        self.outcomes_topic = topic(app, "outcomes")
        self.experiences_topic = topic(app, "experiences")
        self.feedback_topic = topic(app, "feedback")
        self.stats_topic = topic(app, "experiment-stats")
        self.decisions_topic = topic(app, "decisions")
        self.experiments_topic = topic(app, "experiments")
        self.units_topic = app.topic(
            f"{app.conf.id}-experiments-units", key_type=bytes, value_type=bytes, partitions=_UNIT_PARTITIONS,
            internal=True, retention=timedelta(days=1), deleting=True,
        )
        # json [tenant, unit] -> observations of outcomes and experiences, through the unit's history
        self.history_topic = app.topic(
            f"{app.conf.id}-experiments-history", key_type=bytes, value_type=bytes, partitions=_UNIT_PARTITIONS,
            internal=True, retention=timedelta(days=1), deleting=True,
        )
        self.partials_topic = app.topic(
            f"{app.conf.id}-experiments-partials", key_type=bytes, value_type=bytes, partitions=_AGG_PARTITIONS,
            internal=True, retention=timedelta(days=1), deleting=True,
        )
        # json [tenant, experiment, unit] -> the unit's state (see engine.apply_observation)
        self.unit_states = app.Table(
            "experiments-units", default=None, partitions=_UNIT_PARTITIONS, key_type=str, value_type=None,
            help="each unit's variant and its first (proportion) or running-mean value per metric",
        )
        # json [tenant, experiment, partition] -> {"arms": {variant: {metric: statistic}}}
        self.partials = app.Table(
            "experiments-partials", default=None, partitions=_UNIT_PARTITIONS, key_type=str, value_type=None,
            help="one partition's sufficient statistics per experiment, variant and metric",
        )
        # json [tenant, experiment] -> {"parts": {partition: partial}, "state": ExperimentState, "last_ms": int}
        self.aggregates = app.Table(
            "experiments-aggregates", default=None, partitions=_AGG_PARTITIONS, key_type=str, value_type=None,
            help="every partition's latest partial and the sequential tests' running state, per experiment",
        )
        # json [tenant, trace] -> {"t", "e", "v", "u"}: the assignment of a trace whose experiment has a rating metric
        self.rating_traces = app.Table(
            "experiments-rating-traces", default=None, partitions=_TRACE_PARTITIONS, key_type=str, value_type=None,
            help="the assignment of each trace of a running experiment with a rating metric, for joining its feedback",
        )
        # json [tenant, unit] -> the unit's daily values across experiments (engine.through_history): CUPED's covariates
        self.histories = app.Table(
            "experiments-unit-history", default=None, partitions=_UNIT_PARTITIONS, key_type=str, value_type=None,
            help="each unit's daily metric values across experiments, for CUPED's pre-experiment covariates",
        )
        self._follower: ExperimentFollower | None = None
        self._parsed: dict[str, ExperimentConfig] = {}  # config event id -> model (configs are immutable per version)
        self._dirty: set[str] = set()  # partial keys changed since they were last sent
        # json [tenant, trace] -> [(monotonic arrival, Feedback record)]: feedback waiting for its experience
        self._held: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        # deleted users and traces (gym-deletions-v1, followed in a thread): their events are not counted
        self._deletions: DeletionFollower | None = None
        self.skipped_deleted = 0

    def attach(self) -> None:
        """Declares the agents, the timer and the hooks on the app."""
        app = self.app

        @app.agent(self.outcomes_topic, name="experiments-outcomes")
        async def observe_outcomes(stream: faust.StreamT) -> None:
            """Outcomes of traces in a running experiment become unit observations (success_rate)."""
            await self._wait_for_configs()
            async for event in stream.events():
                try:
                    await self._observe(event, "outcome", "Outcome")
                except Exception:  # one bad event must not stop the experiment's statistics
                    log.exception("experiments: outcome %s[%s]@%s failed", event.message.topic, event.message.partition, event.message.offset)

        @app.agent(self.experiences_topic, name="experiments-experiences")
        async def observe_experiences(stream: faust.StreamT) -> None:
            """Experiences with an assignment become unit observations (latency, cost, tokens, errors);
            the assignments of traces of experiments with a rating metric are remembered for their feedback."""
            await self._wait_for_configs()
            async for event in stream.events():
                try:
                    await self._observe(event, "experience", "Experience")
                except Exception:
                    log.exception("experiments: experience %s[%s]@%s failed", event.message.topic, event.message.partition, event.message.offset)

        @app.agent(self.feedback_topic, name="experiments-feedback")
        async def observe_feedback(stream: faust.StreamT) -> None:
            """Ratings on a trace of a running experiment with a rating metric become unit observations (rating)."""
            await self._wait_for_configs()
            async for event in stream.events():
                try:
                    await self._observe_feedback(event)
                except Exception:
                    log.exception("experiments: feedback %s[%s]@%s failed", event.message.topic, event.message.partition, event.message.offset)

        @app.agent(self.history_topic, name="experiments-history")
        async def through_unit_history(stream: faust.StreamT) -> None:
            """Records each observation in its unit's history, attaches CUPED covariates, forwards it to the units stage."""
            await self._wait_for_configs()
            async for event in stream.events():
                try:
                    await self._through_history(event)
                except Exception:
                    log.exception("experiments: history of %r failed", (event.message.value or b"")[:200])

        @app.agent(self.units_topic, name="experiments-units")
        async def count_units(stream: faust.StreamT) -> None:
            """Counts each unit once per metric and keeps this partition's statistics per variant."""
            await self._wait_for_configs()
            async for event in stream.events():
                try:
                    self._count(event)
                except Exception:
                    log.exception("experiments: unit observation %r failed", (event.message.value or b"")[:200])

        @app.timer(self.settings.experiments_snapshot_interval_s, name="experiments-flush")
        async def flush() -> None:
            """Sends each active partition's partial of every live experiment to the experiment's partition."""
            await self._flush()

        @app.agent(self.partials_topic, name="experiments-aggregate")
        async def aggregate(stream: faust.StreamT) -> None:
            """Sums an experiment's partials, tests, snapshots and decides, at most once per interval."""
            await self._wait_for_configs()
            async for event in stream.events():
                try:
                    await self._aggregate(event)
                except Exception:
                    log.exception("experiments: aggregation of %r failed", (event.message.key or b"")[:200])

        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # mode's signal typing; Faust passes revoked=...
        app.on_worker_init.connect(self._on_worker_init)  # type: ignore[arg-type]  # a plain receiver: (sender, signal=...)

    # -- topics and configurations ---------------------------------------------------------

    def ensure_internal_topics(self, timeout_s: float = _TOPIC_TIMEOUT_S) -> None:
        """Creates the internal and changelog topics before the worker's consumer subscribes.

        Faust creates them as well, but concurrently with the consumer group's first
        assignment; when the broker's metadata lags the creation by a few milliseconds the
        assignment leaves the new topic out: an internal topic is then consumed by nobody,
        and a table whose changelog is missing fails every write with PartitionsMismatch,
        until the next rebalance (seen here with Kafka 4.1). Creating them first, and
        waiting until the metadata lists them, closes that race. Failures are logged:
        Faust still tries.
        """
        day_ms = str(24 * 3600 * 1000)
        wanted = {self.units_topic.get_topic_name(): (_UNIT_PARTITIONS, {"cleanup.policy": "delete", "retention.ms": day_ms}),
                  self.partials_topic.get_topic_name(): (_AGG_PARTITIONS, {"cleanup.policy": "delete", "retention.ms": day_ms}),
                  self.history_topic.get_topic_name(): (_UNIT_PARTITIONS, {"cleanup.policy": "delete", "retention.ms": day_ms})}
        for table in (self.unit_states, self.partials, self.aggregates, self.rating_traces, self.histories):
            wanted[table.changelog_topic.get_topic_name()] = (table.partitions or _UNIT_PARTITIONS, {"cleanup.policy": "compact"})
        try:
            create_topics(self.bootstrap_servers, wanted, timeout_s)
        except Exception:
            log.exception("experiments: could not create the internal topics; Faust will try")

    def _on_worker_init(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # `faust worker` only, before the app starts (so before its consumer joins the group)
        self.ensure_internal_topics()

    def follower(self) -> ExperimentFollower:
        """The worker's follower of the experiments topic (started on first use)."""
        if self._follower is None:
            self._follower = ExperimentFollower(self.bootstrap_servers).start()
        return self._follower

    def deletions(self) -> DeletionFollower:
        """The worker's follower of the deletions topic (started on first use)."""
        if self._deletions is None:
            self._deletions = DeletionFollower.shared(self.bootstrap_servers)
        return self._deletions

    def _deleted(self, record_name: str, record: dict[str, Any]) -> bool:
        if self.deletions().skips(record_name, record):
            self.skipped_deleted += 1
            return True
        return False

    def _config(self, experiment_id: str) -> ExperimentConfig | None:
        record = self.follower().get(experiment_id)
        if record is None:
            return None
        cfg = self._parsed.get(record["event_id"])
        if cfg is None:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            cfg = self._parsed[record["event_id"]] = ExperimentConfig.from_record(record)
        return cfg

    async def _wait_for_configs(self) -> None:
        """Blocks the calling agent until the follower has read the experiments topic once."""
        f, d = self.follower(), self.deletions()
        while not (f.ready and d.ready):
            await asyncio.sleep(0.1)

    def _ready(self) -> bool:
        app = self.app
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]  # the concrete TableManager has it
        return not app.rebalancing and not app.in_recovery and recovered and self.follower().ready and self.deletions().ready

    # -- stage 1: events -> unit observations ------------------------------------------------

    async def _observe(self, event: EventT, source: Source, record_name: str) -> None:
        msg = event.message
        try:
            record = self.codec.decode(msg.value, expected=record_name).record
        except DecodeError:
            return  # the ClickHouse sink dead-letters undecodable messages of every topic
        if self._deleted(record_name, record):
            return
        experiment_id = _experiment_of(source, record)
        if not experiment_id:
            return
        config = self._config(experiment_id)
        obs = unit_observations(source, record, config)
        if obs is not None:  # through the unit's history (keyed by tenant and unit) to the units stage
            await self.history_topic.send(key=history_key(obs).encode(), value=obs.to_json())
        if source == "experience":
            assignment = rating_assignment(record, config)
            if assignment is not None:
                key = json.dumps([record.get("tenant_id"), record.get("trace_id")])
                self.rating_traces[key] = assignment
                await self._release_held(key, assignment)

    def _held_count(self) -> int:
        return sum(len(v) for v in self._held.values())

    def _hold(self, key: str, record: dict[str, Any]) -> None:
        """Keeps feedback whose trace's assignment is not known yet (bounded: expired first, then oldest)."""
        held = self._held
        now = time.monotonic()
        cutoff = now - self.settings.experiments_feedback_hold_s
        for k in [k for k, items in held.items() if items[-1][0] < cutoff]:
            del held[k]
        while held and self._held_count() >= _HOLD_MAX:
            del held[next(iter(held))]
        held.setdefault(key, []).append((now, record))

    async def _release_held(self, key: str, assignment: dict[str, str]) -> None:
        """Sends the held feedback of a trace whose assignment just became known."""
        items = self._held.pop(key, None)
        if not items:
            return
        cutoff = time.monotonic() - self.settings.experiments_feedback_hold_s
        config = self._config(assignment["e"])
        for at, record in items:
            if at >= cutoff:
                await self._send_feedback(record, assignment, config)

    async def _send_feedback(self, record: dict[str, Any], assignment: dict[str, str], config: ExperimentConfig | None) -> None:
        obs = feedback_observation(record, assignment, config, self._rating_sources)
        if obs is not None:
            await self.units_topic.send(key=obs.key.encode(), value=obs.to_json())
        gold = audit_observation(record, assignment, config)  # a reviewer's label of a unit of the audit sample
        if gold is not None:
            await self.units_topic.send(key=gold.key.encode(), value=gold.to_json())

    async def _observe_feedback(self, event: EventT) -> None:
        try:
            record = self.codec.decode(event.message.value, expected="Feedback").record
        except DecodeError:
            return
        if self._deleted("Feedback", record):
            return
        rated = record.get("rating") is not None and record.get("source", "human") in self._rating_sources
        if not rated and not is_audit_label(record):
            return
        key = json.dumps([record.get("tenant_id"), record.get("trace_id")])
        assignment = self.rating_traces.get(key)
        if assignment is None:
            if self.settings.experiments_feedback_hold_s > 0:
                self._hold(key, record)
            return
        await self._send_feedback(record, assignment, self._config(assignment["e"]))

    async def _through_history(self, event: EventT) -> None:
        obs = UnitObservation.from_json(event.message.value)
        key = history_key(obs)
        history, obs = through_history(self.histories.get(key), obs, self._config(obs.experiment_id))
        self.histories[key] = history
        await self.units_topic.send(key=obs.key.encode(), value=obs.to_json())

    # -- stage 2: units -> partial statistics --------------------------------------------------

    def _count(self, event: EventT) -> None:
        obs = UnitObservation.from_json(event.message.value)
        config = self._config(obs.experiment_id)
        if config is None:
            return
        pkey = json.dumps([obs.tenant_id, obs.experiment_id, event.message.partition])
        unit, part, changed = apply_observation(self.unit_states.get(obs.key), self.partials.get(pkey), obs, config)
        self.unit_states[obs.key] = unit
        if changed:
            self.partials[pkey] = part
            self._dirty.add(pkey)

    def _active(self, topic_name: str) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic_name}

    async def _flush(self) -> None:
        if not self._ready():
            return
        try:
            active = self._active(self.units_topic.get_topic_name())
            for pkey, part in list(self.partials.items()):
                tenant, experiment_id, p = json.loads(pkey)
                if p not in active or not part:
                    continue
                config = self._config(experiment_id)
                live = config is not None and config.status not in TERMINAL
                if not live and pkey not in self._dirty:
                    continue
                self._dirty.discard(pkey)
                await self.partials_topic.send(key=json.dumps([tenant, experiment_id]).encode(),
                                               value=json.dumps({"p": p, "arms": part.get("arms", {})}).encode())
        except Exception:
            log.exception("experiments: flush failed")

    # -- stage 3: partials -> tests, snapshots, decisions ------------------------------------------

    async def _look(self, key: str, agg: dict[str, Any], config: ExperimentConfig, now: int) -> None:
        """One look at an experiment: snapshots, and a decision applied to the live configuration."""
        settings = self.settings
        state = ExperimentState.from_dict(agg.get("state"))
        totals = merge_partials(agg["parts"].values(), config)
        analysis, state = analyse(
            config, totals, state, mixing_horizon=settings.experiments_mixing_horizon, correction=settings.experiments_correction,
            srm_alpha=settings.experiments_srm_alpha, srm_concentration=settings.experiments_srm_concentration,
        )
        eid = config.experiment_id.encode()
        for rec in snapshot_records(analysis, now):
            await self.stats_topic.send(key=eid, value=self.codec.encode("StatsSnapshot", rec))
        decided = state.decided or {}
        if (config.status == "running" and analysis.decision.action != "continue"
                and int(decided.get("config_version", 0)) < config.config_version):
            d = analysis.decision
            log.warning("experiments: %s %s%s: %s", config.experiment_id, d.action, f" {d.winner}" if d.winner else "", d.reason)
            await self.decisions_topic.send(key=eid, value=self.codec.encode("Decision", decision_record(analysis, now)))
            state.decided = {"action": d.action, "winner": d.winner, "config_version": config.config_version, "at_ms": now}
            nxt = applied_config(config, d) if settings.experiments_auto_decide else None
            if nxt is not None:
                await self.experiments_topic.send(key=eid, value=self.codec.encode("ExperimentConfig", nxt.to_record()))
        agg["state"] = state.to_dict()
        agg["last_ms"] = now

    async def _aggregate(self, event: EventT) -> None:
        key = (event.message.key or b"").decode()
        _tenant, experiment_id = json.loads(key)
        body = json.loads(event.message.value or b"")
        agg = self.aggregates.get(key) or {"parts": {}, "state": {}, "last_ms": 0}
        agg["parts"][str(body["p"])] = {"arms": body["arms"]}
        config = self._config(experiment_id)
        now = _now_ms()
        if config is not None and config.status in ("running", "paused") and now - int(agg.get("last_ms", 0)) >= self._interval_ms // 2:
            await self._look(key, agg, config, now)
        self.aggregates[key] = agg

    async def _on_revoked(self, sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        # another worker owns these partials now; it sends them from its restored table
        gone = {tp.partition for tp in revoked if tp.topic == self.units_topic.get_topic_name()}
        for pkey in [k for k in self._dirty if json.loads(k)[2] in gone]:
            self._dirty.discard(pkey)
