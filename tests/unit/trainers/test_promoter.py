"""The promoter's rules (:func:`agentgym.trainers.promoter.plan`): a decision and the registry's state in, the writes out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.trainers.experiments import candidate_experiment
from agentgym.trainers.promoter import plan
from agentgym.trainers.registry import ModelVersion
from agentgym.trainers.settings import GateSettings

T, A = "acme", "bot"
DECIDED = 1_700_000_100_000  # the decision's timestamp_ms
BEFORE, AFTER = DECIDED - 50_000, DECIDED + 50_000


def mv(version: str, status: str, updated_ms: int = BEFORE, tenant: str = T, agent: str = A, **metrics: float) -> ModelVersion:
    return ModelVersion(tenant_id=tenant, model_version=version, agent_id=agent, base_model="tiny:llama", status=status,  # type: ignore[arg-type]
                        metrics=metrics, created_ms=BEFORE - 100_000, updated_ms=updated_ms)


def running() -> ExperimentConfig:
    return candidate_experiment(T, A, "v1", "v2", GateSettings())


def concluded(winner: str = "treatment") -> ExperimentConfig:
    return running().promote(winner, "agentgym-experiments")


def rolled_back() -> ExperimentConfig:
    return running().rollback("agentgym-experiments")


def three_armed() -> ExperimentConfig:
    return ExperimentConfig(
        experiment_id="exp-3", tenant_id=T, agent_id=A,
        variants=(VariantSpec("control", "v1", 0.8, is_control=True), VariantSpec("a", "v2", 0.1), VariantSpec("b", "v3", 0.1)),
        primary_metric=MetricSpec.of("success_rate"), status="running",
    ).validate().promote("b", "agentgym-experiments")


def decision(action: str, winner: str | None = None, experiment_id: str = "exp-v2", tenant: str = T) -> dict[str, Any]:
    return {"event_id": f"{experiment_id}:v1:{action}", "tenant_id": tenant, "experiment_id": experiment_id,
            "timestamp_ms": DECIDED, "action": action, "winner": winner, "reason": "r", "evidence_json": "{}",
            "decided_by": "auto"}


CASES = [
    # id, decision, config, registry, (outcome, champion, retired, words in the reason)
    ("promote", decision("promote_winner", "treatment"), concluded(), [mv("v1", "champion"), mv("v2", "candidate")],
     ("applied", "v2", ("v1",), "v2 wins")),
    ("replayed promotion", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "retired", AFTER), mv("v2", "champion", AFTER, decision_ms=DECIDED)], ("unchanged", None, (), "champion already")),
    ("half-applied promotion is finished", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "champion"), mv("v2", "champion", AFTER, decision_ms=DECIDED)], ("applied", None, ("v1",), "v2 wins")),
    ("first champion", decision("promote_winner", "treatment"), concluded(), [mv("v2", "candidate")],
     ("applied", "v2", (), "v2 wins")),
    ("control wins", decision("promote_winner", "control"), concluded("control"), [mv("v1", "champion"), mv("v2", "candidate")],
     ("applied", None, ("v2",), "v1 wins")),
    ("three arms: the losing candidate retires", decision("promote_winner", "b", "exp-3"), three_armed(),
     [mv("v1", "champion"), mv("v2", "candidate"), mv("v3", "candidate")], ("applied", "v3", ("v1", "v2"), "v3 wins")),
    ("rollback", decision("rollback"), rolled_back(), [mv("v1", "champion"), mv("v2", "candidate")],
     ("applied", None, ("v2",), "rolled back")),
    ("replayed rollback", decision("rollback"), rolled_back(), [mv("v1", "champion"), mv("v2", "retired", AFTER)],
     ("unchanged", None, (), "no candidate left")),
    ("rollback never retires a champion", decision("rollback"), rolled_back(), [mv("v2", "champion", AFTER)],
     ("unchanged", None, (), "v2 champion")),
    ("stop", decision("stop"), None, [], ("ignored", None, (), "nothing for the registry")),
    ("continue", decision("continue"), running(), [mv("v1", "champion")], ("ignored", None, (), "nothing")),
    ("unknown experiment", decision("promote_winner", "treatment"), None, [], ("skipped", None, (), "not on the experiments topic")),
    ("unknown winner version", decision("promote_winner", "treatment"), concluded(), [mv("v1", "champion")],
     ("skipped", None, (), "v2 is not in the registry")),
    ("unknown rollback versions", decision("rollback"), rolled_back(), [], ("skipped", None, (), "is in the registry")),
    ("another agent's version", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "champion"), mv("v2", "candidate", agent="other")], ("skipped", None, (), "belongs to acme/other")),
    ("another tenant's decision", decision("promote_winner", "treatment", tenant="evil"), concluded(),
     [mv("v1", "champion"), mv("v2", "candidate")], ("skipped", None, (), "tenant evil")),
    ("not a variant", decision("promote_winner", "nope"), concluded(), [mv("v1", "champion"), mv("v2", "candidate")],
     ("skipped", None, (), "not a variant")),
    ("decision not applied to the traffic", decision("promote_winner", "treatment"), running(),
     [mv("v1", "champion"), mv("v2", "candidate")], ("skipped", None, (), "AUTO_DECIDE")),
    ("rejected winner", decision("promote_winner", "treatment"), concluded(), [mv("v1", "champion"), mv("v2", "rejected")],
     ("skipped", None, (), "rejected by the gate")),
    ("stale: a later decision's champion", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "retired", AFTER), mv("v2", "candidate"), mv("v9", "champion", AFTER + 1, decision_ms=AFTER)],
     ("skipped", None, (), "v9 became champion after")),
    ("stale: promoted by hand after the decision", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "retired", AFTER), mv("v2", "candidate"), mv("v9", "champion", AFTER)], ("skipped", None, (), "stale")),
    ("champion by an earlier decision, seen late", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "candidate"), mv("v2", "candidate"), mv("v0", "champion", AFTER, decision_ms=BEFORE)],
     ("applied", "v2", ("v0", "v1"), "v2 wins")),
    ("stale: winner retired after the decision", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "champion"), mv("v2", "retired", AFTER, decision_ms=BEFORE)], ("skipped", None, (), "retired after")),
    ("a winner retired before the decision comes back", decision("promote_winner", "treatment"), concluded(),
     [mv("v1", "champion"), mv("v2", "retired", BEFORE)], ("applied", "v2", ("v1",), "v2 wins")),
]


@pytest.mark.parametrize(("dec", "config", "registry", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(dec: dict[str, Any], config: ExperimentConfig | None, registry: list[ModelVersion],
              expected: tuple[str, str | None, tuple[str, ...], str]) -> None:
    outcome, champion, retired, words = expected
    p = plan(dec, config, {m.model_version: m for m in registry})
    assert (p.outcome, p.champion, p.retired) == (outcome, champion, retired), p.reason
    assert words in p.reason
    assert p.changes == (outcome == "applied")
    assert (p.experiment_id, p.action, p.decision_event_id) == (dec["experiment_id"], dec["action"], dec["event_id"])


def test_plan_reads_the_variants_model_versions_from_the_configuration() -> None:
    # the same decision on a configuration whose treatment serves another version promotes that version
    config = concluded()
    config = replace(config, variants=tuple(replace(v, model_version="v7") if v.name == "treatment" else v for v in config.variants))
    p = plan(decision("promote_winner", "treatment"), config, {m.model_version: m for m in [mv("v1", "champion"), mv("v7", "candidate")]})
    assert (p.outcome, p.champion, p.retired) == ("applied", "v7", ("v1",))


def test_applying_a_plan_then_planning_again_changes_nothing() -> None:
    """Idempotence as a property: the state after the writes plans to ``unchanged``."""
    for _id, dec, config, registry, _expected in CASES:
        versions = {m.model_version: m for m in registry}
        p = plan(dec, config, versions)
        if p.outcome != "applied":
            continue
        if p.champion is not None:
            versions[p.champion] = replace(versions[p.champion], status="champion", updated_ms=AFTER + 10,
                                           metrics={"decision_ms": float(DECIDED)})
        for r in p.retired:
            versions[r] = replace(versions[r], status="retired", updated_ms=AFTER + 10)
        again = plan(dec, config, versions)
        assert again.outcome == "unchanged" and not again.changes, (_id, again)
