"""The registry promoter on the real broker: decisions on ``gym-decisions-v1`` -> ``gym-models-v1``.

Each test plays the experiments processor's part: the experiment is created the way the
trainer creates it (:func:`agentgym.trainers.experiments.start_experiment`), and a decision is
written as the processor writes it, a ``Decision`` record and the configuration that
applies it. The promoter's group starts at the decisions topic's end, so it sees only
what its test writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.schemas.topics import TOPICS
from agentgym.trainers.experiments import start_experiment
from agentgym.producers.records import RecordProducer, read_topic, watermarks
from agentgym.trainers.promoter import Promotion, RegistryPromoter
from agentgym.trainers.registry import STATUS_EXPERIMENT, STATUS_REASON, ModelRegistry, ModelVersion
from agentgym.trainers.service import TrainerService
from agentgym.trainers.settings import GateSettings, TrainerServiceSettings

pytestmark = pytest.mark.integration

AGENT = "bot"
DECISIONS = TOPICS["decisions"].name


def _skip_to_end(bootstrap: str, group: str) -> None:
    """Commits the group's offsets at the decisions topic's end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = c.list_topics(DECISIONS, timeout=10).topics[DECISIONS].partitions
        c.commit(offsets=[TopicPartition(DECISIONS, p, watermarks(c, DECISIONS, p)[1]) for p in parts], asynchronous=False)
    finally:
        c.close()


@pytest.fixture
def promoter(bootstrap: str, unique: str) -> Iterator[RegistryPromoter]:
    group = f"promoter-{unique}"
    _skip_to_end(bootstrap, group)
    with RegistryPromoter(bootstrap, group, config_wait_s=10.0) as p:
        yield p


def _register(registry: ModelRegistry, tenant: str, version: str, status: str) -> ModelVersion:
    return registry.register(ModelVersion(tenant_id=tenant, model_version=version, agent_id=AGENT, base_model="tiny:llama",
                                          status=status, adapter_uri=f"/models/{version}"))  # type: ignore[arg-type]


def _decision(tenant: str, experiment_id: str, action: str, winner: str | None = None) -> dict[str, Any]:
    # as processors.experiments.engine.decision_record writes it
    return {"event_id": f"{experiment_id}:v1:{action}", "tenant_id": tenant, "experiment_id": experiment_id,
            "timestamp_ms": int(time.time() * 1000), "action": action, "winner": winner,
            "reason": f"test {action}", "evidence_json": "{}", "decided_by": "auto"}


def _decide(bootstrap: str, decision: dict[str, Any], apply: Callable[[ExperimentConfig], ExperimentConfig] | None) -> None:
    """The processor's two writes: the decision, then the configuration that applies it (None: auto-decide off)."""
    with RecordProducer(bootstrap) as producer:
        producer.send("decisions", decision)
    if apply is not None:
        with ExperimentAdmin(bootstrap) as admin:
            admin.change(decision["experiment_id"], apply)


def _poll_for(promoter: RegistryPromoter, experiment_id: str, n: int = 1, timeout_s: float = 60.0) -> list[Promotion]:
    """Polls until ``n`` results for ``experiment_id`` came back; returns every result seen."""
    seen: list[Promotion] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen += promoter.poll_once(1.0)
        if sum(p.experiment_id == experiment_id for p in seen) >= n:
            return seen
    raise AssertionError(f"no promotion result for {experiment_id} within {timeout_s}s: {seen}")


def _states(registry: ModelRegistry, tenant: str) -> dict[str, str]:
    return {v.model_version: v.status for v in registry.versions(tenant, AGENT)}


def _records(bootstrap: str, tenant: str) -> int:
    return len(read_topic(bootstrap, "models", match=lambda r: r["tenant_id"] == tenant))


def _experiment(bootstrap: str, registry: ModelRegistry, tenant: str, unique: str) -> tuple[str, str, str]:
    champion = _register(registry, tenant, f"{unique}-v1", "champion").model_version
    candidate = _register(registry, tenant, f"{unique}-v2", "candidate").model_version
    exp = start_experiment(bootstrap, tenant, AGENT, champion, candidate, GateSettings())
    return exp.experiment_id, champion, candidate


def test_a_winner_becomes_champion_and_a_replay_writes_nothing(bootstrap: str, unique: str, registry: ModelRegistry,
                                                                 promoter: RegistryPromoter) -> None:
    tenant = f"t-{unique}"
    exp_id, champion, candidate = _experiment(bootstrap, registry, tenant, unique)
    decision = _decision(tenant, exp_id, "promote_winner", "treatment")

    _decide(bootstrap, decision, lambda c: c.promote("treatment", "agentgym-experiments"))
    [done] = [p for p in _poll_for(promoter, exp_id) if p.experiment_id == exp_id]
    assert (done.outcome, done.champion, done.retired) == ("applied", candidate, (champion,)), done.reason
    assert _states(registry, tenant) == {candidate: "champion", champion: "retired"}
    promoted = registry.get(candidate)
    assert promoted.metrics["decision_ms"] == decision["timestamp_ms"] and promoted.metrics["promoted_ms"] >= decision["timestamp_ms"]
    assert promoted.adapter_uri == f"/models/{candidate}"  # the rest of the entry is kept
    assert registry.get(champion).metrics["retired_ms"] == promoted.metrics["promoted_ms"]
    # why each has its status, and which experiment decided it
    assert promoted.hyperparameters[STATUS_REASON].startswith(f"won experiment {exp_id}: ")
    assert registry.get(champion).hyperparameters[STATUS_REASON] == f"replaced by {candidate} (experiment {exp_id})"
    assert registry.get(champion).hyperparameters[STATUS_EXPERIMENT] == exp_id

    # the same decision again (a replay, a second promoter): nothing new in the registry
    before = _records(bootstrap, tenant)
    with RecordProducer(bootstrap) as producer:
        producer.send("decisions", decision)
    [again] = [p for p in _poll_for(promoter, exp_id) if p.experiment_id == exp_id]
    assert (again.outcome, again.changes) == ("unchanged", False), again.reason
    assert _records(bootstrap, tenant) == before
    assert _states(registry, tenant) == {candidate: "champion", champion: "retired"}


def test_a_decision_waits_for_the_configuration_that_applies_it(bootstrap: str, unique: str, registry: ModelRegistry,
                                                                 promoter: RegistryPromoter) -> None:
    """The processor writes the decision, then the configuration: the promoter may see the decision first."""
    tenant = f"t-{unique}"
    exp_id, champion, candidate = _experiment(bootstrap, registry, tenant, unique)

    def apply_it() -> None:
        with ExperimentAdmin(bootstrap) as admin:
            admin.change(exp_id, lambda c: c.rollback("agentgym-experiments"))

    later = threading.Timer(2.0, apply_it)
    started = time.monotonic()
    later.start()
    try:
        done = promoter.apply(_decision(tenant, exp_id, "rollback"))
    finally:
        later.join()
    assert (done.outcome, done.retired) == ("applied", (candidate,)), done.reason
    assert time.monotonic() - started >= 2.0
    assert _states(registry, tenant) == {champion: "champion", candidate: "retired"}


def test_a_rollback_retires_the_candidate_and_keeps_the_champion(bootstrap: str, unique: str, registry: ModelRegistry,
                                                                  promoter: RegistryPromoter) -> None:
    tenant = f"t-{unique}"
    exp_id, champion, candidate = _experiment(bootstrap, registry, tenant, unique)
    _decide(bootstrap, _decision(tenant, exp_id, "rollback"), lambda c: c.rollback("agentgym-experiments"))
    [done] = [p for p in _poll_for(promoter, exp_id) if p.experiment_id == exp_id]
    assert (done.outcome, done.champion, done.retired) == ("applied", None, (candidate,)), done.reason
    assert _states(registry, tenant) == {champion: "champion", candidate: "retired"}  # retired, not rejected
    retired = registry.get(candidate)
    assert retired.hyperparameters[STATUS_REASON].startswith(f"rolled back by experiment {exp_id}: ")
    assert retired.hyperparameters[STATUS_EXPERIMENT] == exp_id
    assert registry.champion(tenant, AGENT).model_version == champion  # type: ignore[union-attr]


def test_a_decision_on_model_versions_the_registry_does_not_know_is_skipped(bootstrap: str, unique: str,
                                                                             promoter: RegistryPromoter) -> None:
    """An experiment created by hand on versions never registered: logged and skipped, nothing written."""
    tenant, exp_id = f"t-{unique}", f"hand-{unique}"
    with ExperimentAdmin(bootstrap) as admin:
        admin.create(ExperimentConfig(
            experiment_id=exp_id, tenant_id=tenant, agent_id=AGENT,
            variants=(VariantSpec("control", "model-v1", 0.5, is_control=True), VariantSpec("treatment", "model-v2", 0.5)),
            primary_metric=MetricSpec.of("success_rate"), status="running", updated_by="ops",
        ))
    _decide(bootstrap, _decision(tenant, exp_id, "promote_winner", "treatment"), lambda c: c.promote("treatment", "auto"))
    [done] = [p for p in _poll_for(promoter, exp_id) if p.experiment_id == exp_id]
    assert done.outcome == "skipped" and "model-v2 is not in the registry" in done.reason
    assert _records(bootstrap, tenant) == 0


def test_a_decision_the_live_configuration_does_not_apply_is_skipped(bootstrap: str, unique: str, registry: ModelRegistry) -> None:
    """With AGENTGYM_EXPERIMENTS_AUTO_DECIDE=false the traffic stays split, so the registry keeps its champion."""
    tenant = f"t-{unique}"
    exp_id, champion, candidate = _experiment(bootstrap, registry, tenant, unique)
    group = f"promoter-{unique}"
    _skip_to_end(bootstrap, group)
    _decide(bootstrap, _decision(tenant, exp_id, "promote_winner", "treatment"), None)
    with RegistryPromoter(bootstrap, group, config_wait_s=1.0) as promoter:
        [done] = [p for p in _poll_for(promoter, exp_id) if p.experiment_id == exp_id]
    assert done.outcome == "skipped" and "running, not concluded" in done.reason
    assert _states(registry, tenant) == {champion: "champion", candidate: "candidate"}


def test_a_garbage_record_is_skipped_and_the_next_decision_applied(bootstrap: str, unique: str, registry: ModelRegistry,
                                                                   promoter: RegistryPromoter) -> None:
    tenant = f"t-{unique}"
    exp_id, champion, candidate = _experiment(bootstrap, registry, tenant, unique)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(DECISIONS, b"not an avro record", exp_id.encode())
    assert p.flush(10) == 0
    _decide(bootstrap, _decision(tenant, exp_id, "promote_winner", "treatment"), lambda c: c.promote("treatment", "auto"))
    seen = _poll_for(promoter, exp_id)
    garbage = [r for r in seen if r.experiment_id == ""]
    assert len(garbage) == 1 and garbage[0].outcome == "skipped" and "undecodable" in garbage[0].reason
    assert [r.outcome for r in seen if r.experiment_id == exp_id] == ["applied"]
    assert _states(registry, tenant) == {candidate: "champion", champion: "retired"}

    # both offsets are committed: the group's next consumer finds nothing left
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": promoter.group, "enable.auto.commit": False})
    try:
        parts = c.list_topics(DECISIONS, timeout=10).topics[DECISIONS].partitions
        committed = c.committed([TopicPartition(DECISIONS, q) for q in parts], timeout=10)
        assert all(tp.offset == watermarks(c, DECISIONS, tp.partition)[1] for tp in committed)
    finally:
        c.close()


def test_the_trainer_service_promotes_in_its_own_thread(bootstrap: str, unique: str, registry: ModelRegistry,
                                                        tmp_path: Path) -> None:
    """``agentgym trainer run``: TrainerService.run polls datasets and, beside it, applies decisions."""
    tenant = f"t-{unique}"
    exp_id, champion, candidate = _experiment(bootstrap, registry, tenant, unique)
    settings = TrainerServiceSettings(home=tmp_path, bootstrap_servers=bootstrap, trainer_group=f"trainer-{unique}",
                                      trainer_kinds="", trainer_promoter_group=f"promoter-{unique}")
    off = TrainerService(settings.model_copy(update={"trainer_auto_promote": False}))
    assert off.promoter is None
    off.close()
    _skip_to_end(bootstrap, settings.trainer_promoter_group)
    service = TrainerService(settings)
    stop = threading.Event()
    serving = threading.Thread(target=service.run, args=(stop, 0.5))
    serving.start()
    try:
        _decide(bootstrap, _decision(tenant, exp_id, "promote_winner", "treatment"), lambda c: c.promote("treatment", "auto"))
        deadline = time.monotonic() + 60
        while _states(registry, tenant) != {candidate: "champion", champion: "retired"} and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _states(registry, tenant) == {candidate: "champion", champion: "retired"}
    finally:
        stop.set()
        serving.join(150)
        service.close()
    assert not serving.is_alive()
