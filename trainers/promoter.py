"""Experiment decisions into the model registry: the winner becomes champion, a rolled-back candidate retires.

The experiments processor writes each ``Decision`` (``promote_winner`` or ``rollback``)
to ``gym-decisions-v1`` and the configuration that applies it (all traffic to the
winner, or back to the control) to ``gym-experiments-v1``. A :class:`RegistryPromoter`
consumes the decisions (its own consumer group, ``AGENTGYM_TRAINER_PROMOTER_GROUP``)
and brings ``gym-models-v1`` in line:

* ``promote_winner``: the winning variant's model version becomes its agent's
  ``champion`` (metrics ``promoted_ms`` and ``decision_ms``); the previous champion and
  the experiment's losing candidates become ``retired`` (metric ``retired_ms``);
* ``rollback``: the treatments' candidates become ``retired`` (not ``rejected``: that
  means "failed the gate"); the champion stays;
* ``stop`` and ``continue``: nothing.

A variant's model version is read from the experiment's configuration, never assumed.
The registry is changed only once the configuration applies the decision (status
``concluded`` or ``rolled_back``): with ``AGENTGYM_EXPERIMENTS_AUTO_DECIDE=false`` the
agents keep their traffic split, so the registry keeps its champion too.

Replays change nothing: a winner that is champion already, candidates retired
already, and a stale decision (the winner was retired, or another version became
champion, after it was decided) write no record. A decision that cannot be applied
(an unknown experiment, model versions the registry does not hold, another tenant's
or agent's versions, a rejected winner) is logged and skipped; an undecodable record
is skipped (the ClickHouse sink dead-letters it). The offset of a decision is
committed after its registry writes; when Kafka fails in between, the decision is
read again and the replay finishes what is left.

The decision rules are the pure :func:`plan`; :class:`RegistryPromoter` does the I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentgym.processors.experiments import TERMINAL, ExperimentNotFoundError, PublishError
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.producers.kafka_security import client_security
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS
from agentgym.trainers.exceptions import RegistryError
from agentgym.trainers.registry import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from agentgym.processors.experiments import ExperimentConfig

__all__ = ["Outcome", "Promotion", "plan", "RegistryPromoter"]

log = logging.getLogger("agentgym.trainer.promoter")

Outcome = Literal["applied", "unchanged", "ignored", "skipped"]

_RETRY_S = 5.0  # pause of run() after Kafka failed under a decision

# the configuration status that applies each action (the processor writes it right after the decision)
_APPLIED_STATUS = {"promote_winner": "concluded", "rollback": "rolled_back"}


@dataclass(frozen=True)
class Promotion:
    """What a decision does (or did) to the registry.

    Attributes:
        experiment_id: the decided experiment ('' for an undecodable record).
        action: the decision's action.
        outcome: ``applied`` (the writes below), ``unchanged`` (the registry reflects the
            decision already), ``ignored`` (``stop``/``continue``), ``skipped`` (cannot be
            applied; ``reason`` says why).
        reason: a sentence for the log.
        champion: the model version made champion (None: none).
        retired: the model versions retired.
        decision_event_id: the decision's ``event_id``.
    """

    experiment_id: str
    action: str
    outcome: Outcome
    reason: str
    champion: str | None = None
    retired: tuple[str, ...] = ()
    decision_event_id: str = ""

    @property
    def changes(self) -> bool:
        """Whether registry records are (to be) written."""
        return self.champion is not None or bool(self.retired)


def _champion_since(mv: ModelVersion) -> float:
    # a champion promoted by a decision counts from the decision's time, so two decisions
    # compare on one clock; one promoted by hand (or registered as champion) from its record
    return float(mv.metrics.get("decision_ms", mv.updated_ms))


def plan(decision: Mapping[str, Any], config: "ExperimentConfig | None",
         versions: Mapping[str, ModelVersion]) -> Promotion:
    """What ``decision`` does to the registry. Pure: reads nothing, writes nothing.

    Args:
        decision: a decoded ``Decision`` record.
        config: the decided experiment's latest configuration (None: not on the topic).
        versions: the registry's latest state, by model version.

    Returns:
        A :class:`Promotion`; only an ``applied`` one lists writes.
    """
    eid, action = str(decision.get("experiment_id") or ""), str(decision.get("action") or "")
    decided_ms = int(decision.get("timestamp_ms") or 0)

    def result(outcome: Outcome, reason: str, champion: str | None = None, retired: Iterable[str] = ()) -> Promotion:
        return Promotion(eid, action, outcome, reason, champion, tuple(retired), str(decision.get("event_id") or ""))

    if action not in _APPLIED_STATUS:
        return result("ignored", f"{action or 'no'} action: nothing for the registry")
    if config is None:
        return result("skipped", f"experiment {eid} is not on the experiments topic")
    if config.tenant_id != decision.get("tenant_id"):
        return result("skipped", f"the decision's tenant {decision.get('tenant_id')} is not the experiment's ({config.tenant_id})")
    if config.status != _APPLIED_STATUS[action]:
        return result("skipped", f"the experiment's configuration is {config.status}, not {_APPLIED_STATUS[action]}: "
                                 "the decision was not applied to the live traffic (AGENTGYM_EXPERIMENTS_AUTO_DECIDE=false?)")

    def of_agent(mv: ModelVersion | None) -> bool:
        return mv is not None and (mv.tenant_id, mv.agent_id) == (config.tenant_id, config.agent_id)

    if action == "rollback":
        known = [versions[v.model_version] for v in config.treatments if of_agent(versions.get(v.model_version))]
        if not known:
            return result("skipped", f"no treatment model version of {eid} "
                                     f"({', '.join(v.model_version for v in config.treatments)}) is in the registry "
                                     f"for {config.tenant_id}/{config.agent_id}")
        retire = [mv.model_version for mv in known if mv.status == "candidate"]
        if not retire:
            return result("unchanged", f"no candidate left to retire ({', '.join(f'{m.model_version} {m.status}' for m in known)})")
        return result("applied", f"rolled back: {decision.get('reason', '')}", retired=retire)

    # promote_winner
    names = [v.name for v in config.variants]
    if decision.get("winner") not in names:
        return result("skipped", f"winner {decision.get('winner')!r} is not a variant of {eid} ({', '.join(names)})")
    version = config.variant(str(decision["winner"])).model_version
    winner = versions.get(version)
    if winner is None:
        return result("skipped", f"the winner's model version {version} is not in the registry")
    if not of_agent(winner):
        return result("skipped", f"the winner's model version {version} belongs to {winner.tenant_id}/{winner.agent_id}, "
                                 f"the experiment to {config.tenant_id}/{config.agent_id}")
    if winner.status == "rejected":
        return result("skipped", f"{version} was rejected by the gate; it is not promoted")
    champions = [mv for mv in versions.values() if of_agent(mv) and mv.status == "champion" and mv.model_version != version]
    newer = [mv.model_version for mv in champions if _champion_since(mv) > decided_ms]
    if newer:
        return result("skipped", f"stale: {', '.join(newer)} became champion after this decision")
    if winner.status == "retired" and winner.updated_ms > decided_ms:
        return result("skipped", f"stale: {version} was retired after this decision")
    losers = [versions[v.model_version] for v in config.variants
              if v.model_version != version and of_agent(versions.get(v.model_version))]
    # the previous champion(s) and the losing candidates; a lost control that is champion is among the former
    retire = [mv.model_version for mv in champions] + [mv.model_version for mv in losers if mv.status == "candidate"]
    promote = None if winner.status == "champion" else version
    if promote is None and not retire:
        return result("unchanged", f"{version} is champion already")
    return result("applied", f"{version} wins: {decision.get('reason', '')}", promote, retire)


class RegistryPromoter:
    """Consumes ``gym-decisions-v1`` and applies each decision to the model registry.

    Args:
        bootstrap_servers: Kafka.
        group: the consumer group (offsets committed after the registry writes).
        config_wait_s: how long a decision waits for the configuration that applies it
            (the processor writes it just after the decision), seconds.
        clock: milliseconds since the epoch (``promoted_ms``, ``retired_ms``).
    """

    def __init__(self, bootstrap_servers: str, group: str = "agentgym-promoter", *, config_wait_s: float = 10.0,
                 clock: Callable[[], int] | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group = group
        self.config_wait_s = config_wait_s
        self.registry = ModelRegistry(bootstrap_servers)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._admin: ExperimentAdmin | None = None
        self._consumer: Any = None
        self._retry_at = 0.0

    # -- one decision ------------------------------------------------------------------
    def _config(self, experiment_id: str, action: str) -> "ExperimentConfig | None":
        if self._admin is None:
            self._admin = ExperimentAdmin(self.bootstrap_servers)
        wanted = _APPLIED_STATUS[action]
        deadline = time.monotonic() + self.config_wait_s
        while True:
            try:
                config = self._admin.get(experiment_id)
            except ExperimentNotFoundError:
                return None
            # the applying configuration follows the decision by moments; a final status is final
            if config.status == wanted or config.status in TERMINAL or time.monotonic() > deadline:
                return config
            time.sleep(0.2)

    def apply(self, decision: Mapping[str, Any]) -> Promotion:
        """Applies one decoded ``Decision`` record to the registry; returns what it did.

        Raises:
            RegistryError: the registry could not be read or written (Kafka away): the
                decision should be applied again later.
            PublishError: the experiments topic could not be read (likewise).
        """
        action = str(decision.get("action") or "")
        if action not in _APPLIED_STATUS:
            return plan(decision, None, {})
        config = self._config(str(decision["experiment_id"]), action)
        versions = {mv.model_version: mv for mv in self.registry.versions()}
        p = plan(decision, config, versions)
        if p.outcome != "applied":
            log.log(logging.WARNING if p.outcome == "skipped" else logging.INFO,
                    "promoter: %s %s %s: %s", p.experiment_id, p.action, p.outcome, p.reason)
            return p
        now = float(self._clock())
        # a record the broker does not acknowledge raises RegistryError ("cannot write the model registry")
        why = str(decision.get("reason") or "")
        if p.champion is not None:
            self.registry.set_status(p.champion, "champion", {
                "promoted_ms": now, "decision_ms": float(decision.get("timestamp_ms") or now)},
                reason=f"won experiment {p.experiment_id}: {why}", experiment_id=p.experiment_id)
        for version in p.retired:
            if p.action == "rollback":
                reason = f"rolled back by experiment {p.experiment_id}: {why}"
            elif getattr(versions.get(version), "status", "") == "champion":
                reason = f"replaced by {p.champion} (experiment {p.experiment_id})"
            else:
                reason = f"lost experiment {p.experiment_id} to {p.champion}"
            self.registry.set_status(version, "retired", {"retired_ms": now}, reason=reason, experiment_id=p.experiment_id)
        log.info("promoter: experiment %s %s: champion %s, retired %s (decision %s; %s)", p.experiment_id, p.action,
                 p.champion or "unchanged", ", ".join(p.retired) or "none", p.decision_event_id, decision.get("reason", ""))
        return p

    # -- consuming ---------------------------------------------------------------------
    def _consumer_for(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = Consumer({
                "bootstrap.servers": self.bootstrap_servers, "group.id": self.group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "logger": logging.getLogger("agentgym.kafka"), **client_security(None),  # AGENTGYM_KAFKA_*
            })
            self._consumer.subscribe([TOPICS["decisions"].name])
        return self._consumer

    def poll_once(self, timeout_s: float = 1.0) -> list[Promotion]:
        """Applies the decisions that arrived within ``timeout_s``; returns what each did.

        When the registry or the experiments topic cannot be reached, the decision and
        the ones after it are left uncommitted and read again at the next poll.
        """
        from confluent_kafka import TopicPartition

        consumer = self._consumer_for()
        codec = AvroCodec()
        out: list[Promotion] = []
        messages = [m for m in consumer.consume(100, timeout_s) if m.error() is None]
        for i, m in enumerate(messages):
            try:
                decision = codec.decode(m.value(), "Decision").record
            except DecodeError as exc:  # the sink dead-letters it; the promoter moves on
                log.warning("promoter: skipping an undecodable Decision at %d@%d: %s", m.partition(), m.offset(), exc)
                out.append(Promotion("", "", "skipped", f"undecodable Decision at {m.partition()}@{m.offset()}: {exc}"))
            else:
                try:
                    out.append(self.apply(decision))
                except (RegistryError, PublishError) as exc:
                    log.warning("promoter: %s: will retry in %.0fs: %s", decision.get("experiment_id"), _RETRY_S, exc)
                    self._retry_at = time.monotonic() + _RETRY_S
                    first: dict[int, int] = {}
                    for rest in messages[i:]:
                        first.setdefault(rest.partition(), rest.offset())
                    for partition, offset in first.items():
                        consumer.seek(TopicPartition(m.topic(), partition, offset))
                    return out
                except Exception as exc:  # a bug or a record no rule foresaw: never a crashed service
                    log.exception("promoter: decision %s could not be applied", decision.get("event_id"))
                    out.append(Promotion(str(decision.get("experiment_id") or ""), str(decision.get("action") or ""),
                                         "skipped", f"{type(exc).__name__}: {exc}",
                                         decision_event_id=str(decision.get("event_id") or "")))
            consumer.commit(message=m, asynchronous=False)
        return out

    def run(self, stop: threading.Event | None = None, poll_s: float = 1.0) -> None:
        """Serves until ``stop`` is set (or forever); errors are logged, and polling goes on."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.poll_once(poll_s)
            except Exception:
                log.exception("promoter: poll failed")
                self._retry_at = time.monotonic() + _RETRY_S
            stop.wait(max(0.0, self._retry_at - time.monotonic()))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self.registry.close()

    def __enter__(self) -> "RegistryPromoter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
