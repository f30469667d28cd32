"""The processor's pure logic: units not events, mergeable partials, looks, decisions, records."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.engine import (
    ExperimentState,
    UnitObservation,
    analyse,
    applied_config,
    apply_observation,
    decision_record,
    merge_partials,
    snapshot_records,
    unit_observations,
)
from agentgym.processors.experiments.metrics import EXPOSURE
from agentgym.processors.stats import ProportionStatistic, SampleMeanStatistic
from agentgym.producers.assignment import assign
from agentgym.schemas.codec import AvroCodec

CODEC = AvroCodec()


def config(**changes: Any) -> ExperimentConfig:
    c = ExperimentConfig(
        experiment_id="exp1", tenant_id="acme", agent_id="bot",
        variants=(VariantSpec("control", "v3", 1.0, True), VariantSpec("treatment", "v4", 1.0)),
        primary_metric=MetricSpec.of("success_rate"),
        guardrails=(MetricSpec.of("latency_ms", limit=0.2, cap=5000.0),),
        status="running", min_samples_per_arm=50,
    )
    return replace(c, **changes).validate()


def outcome(unit: str, variant: str, label: str, trace: str) -> dict[str, Any]:
    return {"tenant_id": "acme", "trace_id": trace, "label": label, "experiment_id": "exp1", "variant": variant, "unit_id": unit}


def experience(unit: str, variant: str, latency: float, trace: str, status: str = "ok") -> dict[str, Any]:
    return {"tenant_id": "acme", "trace_id": trace, "status": status, "latency_ms": latency, "cost_usd": 0.0,
            "assignment": {"experiment_id": "exp1", "variant": variant, "unit_type": "user", "unit_id": unit}}


def fold(events: list[tuple[str, dict[str, Any]]], cfg: ExperimentConfig, partitions: int = 1) -> dict[str, Any]:
    units: dict[str, Any] = {}
    parts: dict[int, Any] = {}
    for source, rec in events:
        obs = unit_observations(source, rec, cfg)  # type: ignore[arg-type]
        assert obs is not None
        p = sum(obs.key.encode()) % partitions
        units[obs.key], parts[p], _ = apply_observation(units.get(obs.key), parts.get(p), obs, cfg)
    return {"units": units, "partials": parts}


def test_units_not_events() -> None:
    cfg = config()
    events = [
        ("outcome", outcome("u1", "control", "failure", "t1")),
        ("outcome", outcome("u1", "control", "success", "t2")),  # not the unit's first outcome: ignored
        ("outcome", outcome("u1", "control", "success", "t1")),  # a revision of the first: replaces it
        ("outcome", outcome("u2", "control", "unknown", "t3")),  # unknown: no value, but an exposed unit
        ("experience", experience("u1", "control", 100.0, "t1")),
        ("experience", experience("u1", "control", 300.0, "t2")),
        ("experience", experience("u1", "control", 99999.0, "t4")),  # capped at 5000
        ("experience", experience("u3", "control", 50.0, "t5")),
        ("experience", experience("u3", "treatment", 50.0, "t6")),  # u3 is a control unit: crossover ignored
        ("experience", experience("u1", "control", 300.0, "t2")),  # redelivered after a crash: not counted twice
    ]
    totals = merge_partials(fold(events, cfg)["partials"].values(), cfg)
    c = totals["control"]
    assert c[EXPOSURE] == ProportionStatistic(3, 3)
    assert c["success_rate"] == ProportionStatistic(1, 1)
    u1_mean = (100.0 + 300.0 + 5000.0) / 3
    assert c["latency_ms"] == SampleMeanStatistic.from_values([u1_mean, 50.0])
    assert totals["treatment"][EXPOSURE].n == 0


@pytest.mark.parametrize("partitions", [2, 6])
def test_partials_of_many_partitions_merge_to_the_single_partition_result(partitions: int) -> None:
    cfg = config()
    rng = random.Random(partitions)
    events = []
    for i in range(600):
        u = f"u{rng.randrange(200)}"
        a = assign(cfg.to_record(), u)
        assert a is not None
        events.append(("outcome", outcome(u, a.variant, rng.choice(["success", "failure"]), f"t{i}")))
        events.append(("experience", experience(u, a.variant, rng.lognormvariate(5, 1), f"t{i}")))
    one = merge_partials(fold(events, cfg, 1)["partials"].values(), cfg)
    many = merge_partials(fold(events, cfg, partitions)["partials"].values(), cfg)
    for v in ("control", "treatment"):
        assert one[v][EXPOSURE] == many[v][EXPOSURE]
        assert one[v]["success_rate"] == many[v]["success_rate"]
        assert many[v]["latency_ms"].n == one[v]["latency_ms"].n
        assert many[v]["latency_ms"].sum == pytest.approx(one[v]["latency_ms"].sum)


@pytest.mark.parametrize(
    ("status", "record", "observed"),
    [
        ("running", outcome("u", "control", "success", "t"), True),
        ("paused", outcome("u", "control", "success", "t"), False),
        ("running", outcome("u", "nobody", "success", "t"), False),
        ("running", {**outcome("u", "control", "success", "t"), "tenant_id": "other"}, False),
        ("running", {**outcome("u", "control", "success", "t"), "experiment_id": None}, False),
    ],
)
def test_which_events_are_observed(status: str, record: dict[str, Any], observed: bool) -> None:
    cfg = replace(config(), status=status)
    assert (unit_observations("outcome", record, cfg) is not None) is observed


def test_observation_round_trips_as_json() -> None:
    o = UnitObservation("acme", "exp1", "u1", "control", "outcome", "t1", {"success_rate": 1.0})
    assert UnitObservation.from_json(o.to_json()) == o


def _simulate(cfg: ExperimentConfig, p: dict[str, float], latency: dict[str, float], units: int, seed: int = 0,
              drop_control: float = 0.0) -> dict[str, Any]:
    rng = random.Random(seed)
    events = []
    for i in range(units):
        u = f"user-{i}"
        a = assign(cfg.to_record(), u)
        assert a is not None
        if a.variant == "control" and rng.random() < drop_control:
            continue  # a logging bug loses some control units: a sample-ratio mismatch
        events.append(("experience", experience(u, a.variant, rng.gauss(latency[a.variant], 50), f"t{i}")))
        events.append(("outcome", outcome(u, a.variant, "success" if rng.random() < p[a.variant] else "failure", f"t{i}")))
    return merge_partials(fold(events, cfg, 3)["partials"].values(), cfg)


def test_a_better_treatment_is_promoted_with_evidence_and_the_records_encode() -> None:
    cfg = config()
    totals = _simulate(cfg, {"control": 0.5, "treatment": 0.7}, {"control": 1000, "treatment": 1000}, 1200)
    analysis, state = analyse(cfg, totals, ExperimentState())
    assert analysis.decision.action == "promote_winner" and analysis.decision.winner == "treatment"
    assert state.rho is not None and state.looks == 1 and state.sequential["success_rate"]["treatment"]["p_value"] <= 0.05
    snaps = snapshot_records(analysis, 1_700_000_000_000)
    assert [s["role"] for s in snaps] == ["primary", "guardrail"]
    for s in snaps:
        assert CODEC.decode(CODEC.encode("StatsSnapshot", s)).record["metric"] == s["metric"]
    assert snaps[0]["arms"][0]["n"] == totals["control"]["success_rate"].n
    rec = decision_record(analysis, 1_700_000_000_000)
    CODEC.encode("Decision", rec)
    evidence = json.loads(rec["evidence_json"])
    comp = evidence["metrics"]["success_rate"]["comparisons"][0]
    assert comp["state"]["p_value"] <= 0.05 and evidence["metrics"]["success_rate"]["arms"]["control"]["n"] > 0
    nxt = applied_config(cfg, analysis.decision)
    assert nxt is not None and nxt.status == "concluded" and nxt.event_id == "exp1:v2:promote_winner"


def test_rho_stays_fixed_across_looks() -> None:
    cfg = config()
    totals = _simulate(cfg, {"control": 0.5, "treatment": 0.5}, {"control": 1000, "treatment": 1000}, 400)
    _, state = analyse(cfg, totals, ExperimentState())
    _, later = analyse(replace(cfg, min_samples_per_arm=500), totals, ExperimentState.from_dict(json.loads(json.dumps(state.to_dict()))))
    assert later.rho == state.rho and later.looks == 2


def test_a_guardrail_breach_rolls_back() -> None:
    cfg = config()
    totals = _simulate(cfg, {"control": 0.5, "treatment": 0.7}, {"control": 1000, "treatment": 1500}, 1200)
    analysis, _ = analyse(cfg, totals, ExperimentState())
    assert analysis.decision.action == "rollback" and "latency_ms" in analysis.decision.reason
    nxt = applied_config(cfg, analysis.decision)
    assert nxt is not None and nxt.status == "rolled_back" and nxt.control.weight == 1.0


def test_a_sample_ratio_mismatch_rolls_back() -> None:
    cfg = config()
    totals = _simulate(cfg, {"control": 0.5, "treatment": 0.5}, {"control": 1000, "treatment": 1000}, 4000, drop_control=0.2)
    analysis, _ = analyse(cfg, totals, ExperimentState())
    assert analysis.decision.action == "rollback" and "sample ratio mismatch" in analysis.decision.reason


def test_too_few_units_continue() -> None:
    cfg = config(min_samples_per_arm=1000)
    totals = _simulate(cfg, {"control": 0.1, "treatment": 0.9}, {"control": 1000, "treatment": 1000}, 300)
    analysis, _ = analyse(cfg, totals, ExperimentState())
    assert analysis.decision.action == "continue" and "insufficient_sample" in analysis.decision.reason
    assert snapshot_records(analysis, 1)[0]["status"] == "insufficient_data"


def test_a_worse_treatment_rolls_back() -> None:
    cfg = config(guardrails=())
    totals = _simulate(cfg, {"control": 0.7, "treatment": 0.4}, {"control": 1000, "treatment": 1000}, 1200)
    analysis, _ = analyse(cfg, totals, ExperimentState())
    assert analysis.decision.action == "rollback" and "worse" in analysis.decision.reason


def test_three_arms_pick_the_best_winner() -> None:
    cfg = config(variants=(VariantSpec("control", "v3", 1.0, True), VariantSpec("a", "v4", 1.0), VariantSpec("b", "v5", 1.0)),
                 guardrails=())
    rng = random.Random(4)
    events = []
    p = {"control": 0.4, "a": 0.55, "b": 0.7}
    for i in range(3000):
        u = f"user-{i}"
        a = assign(cfg.to_record(), u)
        assert a is not None
        events.append(("outcome", outcome(u, a.variant, "success" if rng.random() < p[a.variant] else "failure", f"t{i}")))
    totals = merge_partials(fold(events, cfg, 2)["partials"].values(), cfg)
    analysis, _ = analyse(cfg, totals, ExperimentState())
    assert analysis.decision.winner == "b"
    assert all(c.adjusted_p_value >= c.state.p_value for c in analysis.primary.comparisons)
