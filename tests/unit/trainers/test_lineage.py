"""The lineage chain (pure): parents down to the base, the decisions that touched each version, odd registries."""

from __future__ import annotations

from typing import Any

from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.trainers.lineage import lineage, render_lineage
from agentgym.trainers.registry import ModelVersion, base_version_for

BASE = base_version_for("bot", "tiny:llama")


def mv(version: str, status: str, parent: str | None = None, adapter: bool = True, **hyper: str) -> ModelVersion:
    return ModelVersion(tenant_id="t", model_version=version, agent_id="bot", base_model="tiny:llama", status=status,  # type: ignore[arg-type]
                        adapter_uri=f"/models/{version}" if adapter else None, parent_version=parent,
                        dataset_id=f"ds-{version}" if adapter else None, hyperparameters=hyper)


def exp(control: str, treatment: str, status: str) -> ExperimentConfig:
    return ExperimentConfig(experiment_id=f"exp-{treatment}", tenant_id="t", agent_id="bot", name="x",
                            variants=(VariantSpec("control", control, 0.9, is_control=True), VariantSpec("treatment", treatment, 0.1)),
                            primary_metric=MetricSpec.of("success_rate"), status=status)  # type: ignore[arg-type]


def decision(experiment_id: str, action: str, ts: int) -> dict[str, Any]:
    return {"experiment_id": experiment_id, "action": action, "winner": "treatment" if action == "promote_winner" else None,
            "reason": f"{action} reason", "timestamp_ms": ts}


def test_three_generations_with_their_decisions() -> None:
    versions = {v.model_version: v for v in (
        mv(BASE, "retired", adapter=False), mv("v1", "champion", None, job_id="job-1", init_from="base"),
        mv("v2", "retired", "v1", job_id="job-2", init_from="champion", init_adapter="/models/v1"),
        mv("v3", "candidate", "v1", init_from="champion"))}
    experiments = {e.experiment_id: e for e in (exp(BASE, "v1", "concluded"), exp("v1", "v2", "rolled_back"),
                                                exp("v1", "v3", "running"))}
    decisions = [decision("exp-v1", "promote_winner", 10), decision("exp-v2", "continue", 15), decision("exp-v2", "rollback", 20)]
    chain = lineage("v2", versions, {}, experiments, decisions)
    assert [(g.model_version, g.init_from, g.job_id) for g in chain] == [("v2", "champion", "job-2"), ("v1", "base", "job-1"),
                                                                         (BASE, "", "")]
    assert [[(e.experiment_id, e.effect) for e in g.events] for g in chain] == [
        [("exp-v2", "rolled_back")],  # continue is not an event; a rollback keeps v1 (the control): nothing for it
        [("exp-v1", "promoted")], [("exp-v1", "retired")]]
    assert chain[2].events[0].winner_version == "v1"
    # a candidate still in its experiment says so
    [running] = lineage("v3", versions, {}, experiments, decisions)[0].events
    assert (running.experiment_id, running.effect) == ("exp-v3", "running")
    text = "\n".join(render_lineage(chain))
    assert "v2 [retired] from its parent's adapter (v1)" in text and "rolled back by exp-v2" in text
    assert "retired by exp-v1 at 1970-01-01 00:00:00 (v1 won): promote_winner reason" in text


def test_a_fine_tuned_root_rests_on_its_base_and_odd_registries_end_the_chain() -> None:
    # no base version registered: the base model is named
    chain = lineage("v1", {"v1": mv("v1", "champion", None, init_from="base")})
    assert [(g.model_version, g.status, g.base_model) for g in chain] == [("v1", "champion", "tiny:llama"), ("", "base", "tiny:llama")]
    assert render_lineage(chain)[-1].endswith("base model tiny:llama (not in the registry)")
    # a parent the registry lost is named and ends the chain; a cycle ends too
    gone = lineage("v2", {"v2": mv("v2", "candidate", "v1")})
    assert [(g.model_version, g.status) for g in gone] == [("v2", "candidate"), ("v1", "unknown")]
    cycle = lineage("a", {"a": mv("a", "candidate", "b"), "b": mv("b", "champion", "a")})
    assert [g.model_version for g in cycle][:2] == ["a", "b"] and len(cycle) == 3  # a, b, then the base model
    # without decisions, the registry's own note says why
    noted = lineage("v1", {"v1": mv("v1", "retired", None, **{"status.reason": "rolled back: worse", "status.experiment_id": "exp-v1"})})
    assert "retired by exp-v1: rolled back: worse" in "\n".join(render_lineage(noted))
