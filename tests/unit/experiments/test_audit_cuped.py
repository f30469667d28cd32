"""The engine's audit sample (prediction-powered success rate) and CUPED: pure, no Kafka."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.config import ExperimentConfigError
from agentgym.processors.experiments.engine import (
    AUDIT,
    ExperimentState,
    UnitObservation,
    analyse,
    apply_observation,
    audit_observation,
    in_audit_sample,
    merge_partials,
    rating_assignment,
    snapshot_records,
    through_history,
    unit_observations,
)
from agentgym.processors.experiments.metrics import gold_label, is_audit_label
from agentgym.processors.stats import PredictionPoweredStatistic
from agentgym.schemas.codec import AvroCodec

CODEC = AvroCodec()


def config(**changes: Any) -> ExperimentConfig:
    c = ExperimentConfig(
        experiment_id="exp-audit", tenant_id="acme", agent_id="bot",
        variants=(VariantSpec("control", "v3", 1.0, True), VariantSpec("treatment", "v4", 1.0)),
        primary_metric=MetricSpec.of("success_rate"),
        guardrails=(MetricSpec.of("latency_ms", limit=0.5),),
        status="running", min_samples_per_arm=100, audit_rate=0.2,
    )
    return replace(c, **changes).validate()


def outcome(cfg: ExperimentConfig, unit: str, variant: str, label: str, trace: str) -> dict[str, Any]:
    return {"tenant_id": "acme", "trace_id": trace, "label": label, "experiment_id": cfg.experiment_id,
            "variant": variant, "unit_id": unit}


def experience(cfg: ExperimentConfig, unit: str, variant: str, trace: str, latency: float = 100.0) -> dict[str, Any]:
    return {"tenant_id": "acme", "trace_id": trace, "status": "ok", "latency_ms": latency, "cost_usd": 0.0,
            "assignment": {"experiment_id": cfg.experiment_id, "variant": variant, "unit_type": "user", "unit_id": unit}}


def audit_feedback(trace: str, success: bool, *, marked: bool = True, source: str = "human") -> dict[str, Any]:
    return {"tenant_id": "acme", "trace_id": trace, "event_id": f"fb-{trace}", "kind": "thumbs", "source": source,
            "thumbs_up": success, "metadata": {"audit": "true"} if marked else {}}


def test_the_audit_sample_is_a_hash_of_the_unit_at_the_configured_rate() -> None:
    cfg = config(audit_rate=0.1)
    units = [f"user-{i}" for i in range(20_000)]
    chosen = [u for u in units if in_audit_sample(cfg, u)]
    assert abs(len(chosen) / len(units) - 0.1) < 4 * (0.1 * 0.9 / len(units)) ** 0.5
    assert chosen == [u for u in units if in_audit_sample(cfg, u)]  # deterministic: nothing about the run enters
    assert not any(in_audit_sample(config(audit_rate=0.0), u) for u in units[:1000])  # default: off
    # stratified by arm: the sample's share of each arm is the rate (the audit hash is independent of the variant's)
    from agentgym.producers.assignment import assign
    arms: dict[str, list[bool]] = {"control": [], "treatment": []}
    for u in units:
        a = assign(cfg.to_record(), u)
        assert a is not None
        arms[a.variant].append(in_audit_sample(cfg, u))
    for flags in arms.values():
        assert abs(sum(flags) / len(flags) - 0.1) < 4 * (0.1 * 0.9 / len(flags)) ** 0.5


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2.0])
def test_an_invalid_audit_rate_names_the_field(rate: float) -> None:
    with pytest.raises(ExperimentConfigError, match="audit_rate"):
        config(audit_rate=rate)


def test_cuped_metrics_must_be_metrics_of_the_experiment() -> None:
    with pytest.raises(ExperimentConfigError, match="cuped_metrics"):
        config(cuped_metrics=("rating",))


def test_config_round_trips_through_the_avro_record() -> None:
    cfg = config(cuped_metrics=("latency_ms",), cuped_lookback_days=14)
    back = ExperimentConfig.from_record(CODEC.decode(CODEC.encode("ExperimentConfig", cfg.to_record())).record)
    assert (back.audit_rate, back.cuped_metrics, back.cuped_lookback_days) == (0.2, ("latency_ms",), 14)


@pytest.mark.parametrize(
    ("record", "is_audit", "gold"),
    [
        (audit_feedback("t", True), True, 1.0),
        (audit_feedback("t", False), True, 0.0),
        (audit_feedback("t", True, marked=False), False, None),  # explicit feedback: never an audit label
        (audit_feedback("t", True, source="ai"), False, None),
        ({"tenant_id": "acme", "source": "human", "metadata": {"audit": "true"}, "value": 0.8}, True, 1.0),
        ({"tenant_id": "acme", "source": "human", "metadata": {"audit": "true"}, "rating": 1.0, "rating_scale": 5.0}, True, 0.0),
        ({"tenant_id": "acme", "source": "human", "metadata": {"audit": "true"}}, True, None),
    ],
)
def test_audit_labels_table(record: dict[str, Any], is_audit: bool, gold: float | None) -> None:
    assert is_audit_label(record) is is_audit
    assert gold_label(record) == gold


def _unit_in(cfg: ExperimentConfig, inside: bool, start: int = 0) -> str:
    i = start
    while in_audit_sample(cfg, f"u{i}") is not inside:
        i += 1
    return f"u{i}"


def test_only_marked_labels_of_sampled_units_become_gold_observations() -> None:
    cfg = config()
    sampled, other = _unit_in(cfg, True), _unit_in(cfg, False)
    exp_in, exp_out = experience(cfg, sampled, "control", "t1"), experience(cfg, other, "control", "t2")
    a_in, a_out = rating_assignment(exp_in, cfg), rating_assignment(exp_out, cfg)
    assert a_in is not None and a_out is None  # only the audit sample's traces are remembered for the join
    obs = audit_observation(audit_feedback("t1", True), a_in, cfg)
    assert obs is not None and obs.values == {"__gold__": 1.0} and obs.unit_id == sampled
    assert audit_observation(audit_feedback("t1", True, marked=False), a_in, cfg) is None
    forged = {**a_in, "u": other}  # a marked label on a unit outside the sample is not a random sample
    assert audit_observation(audit_feedback("t2", True), forged, cfg) is None
    assert audit_observation(audit_feedback("t1", True), a_in, config(audit_rate=0.0)) is None


def _fold(cfg: ExperimentConfig, observations: list[UnitObservation], partitions: int = 1) -> dict[int, Any]:
    units: dict[str, Any] = {}
    parts: dict[int, Any] = {}
    for obs in observations:
        p = sum(obs.key.encode()) % partitions
        units[obs.key], parts[p], _ = apply_observation(units.get(obs.key), parts.get(p), obs, cfg)
    return parts


def _gold(cfg: ExperimentConfig, unit: str, variant: str, trace: str, success: bool) -> UnitObservation:
    obs = audit_observation(audit_feedback(trace, success), {"t": "acme", "e": cfg.experiment_id, "v": variant, "u": unit}, cfg)
    assert obs is not None
    return obs


def test_a_pair_counts_once_the_first_outcome_and_its_gold_label_are_known_and_follows_revisions() -> None:
    cfg = config()
    u = _unit_in(cfg, True)

    def out(label: str, trace: str) -> UnitObservation:
        o = unit_observations("outcome", outcome(cfg, u, "control", label, trace), cfg)
        assert o is not None
        return o

    steps = [
        (_gold(cfg, u, "control", "t1", True), None),  # gold before the label: waits
        (out("failure", "t1"), (1, 0.0, 1.0)),  # the pair (label 0, gold 1)
        (out("success", "t1"), (1, 1.0, 1.0)),  # the labeller revises its label: the pair follows
        (_gold(cfg, u, "control", "t1", False), (1, 1.0, 0.0)),  # a reviewer corrects the gold label
        (_gold(cfg, u, "control", "t9", True), (1, 1.0, 0.0)),  # gold of another trace: not the unit's first outcome
        (out("failure", "t2"), (1, 1.0, 0.0)),  # a later outcome: not the unit's value
    ]
    unit, part = None, None
    for obs, expected in steps:
        unit, part, _ = apply_observation(unit, part, obs, cfg)
        pair = merge_partials([part], cfg)["control"][AUDIT]
        assert isinstance(pair, PredictionPoweredStatistic)
        got = (pair.m, pair.sum_audit_label, pair.sum_gold) if pair.m else None
        assert got == expected


def _simulate(cfg: ExperimentConfig, truth: dict[str, float], false_positive: dict[str, float], units: int,
              seed: int = 0) -> list[UnitObservation]:
    rng = random.Random(seed)
    out = []
    for i in range(units):
        variant = "control" if i % 2 == 0 else "treatment"
        u, tr = f"unit-{i}", f"trace-{i}"
        y = rng.random() < truth[variant]
        f = y or rng.random() < false_positive[variant]
        o = unit_observations("outcome", outcome(cfg, u, variant, "success" if f else "failure", tr), cfg)
        e = unit_observations("experience", experience(cfg, u, variant, tr, 100.0 + rng.random()), cfg)
        assert o is not None and e is not None
        out += [o, e]
        if in_audit_sample(cfg, u):
            out.append(_gold(cfg, u, variant, tr, y))
    return out


def test_partials_with_audit_pairs_merge_to_the_single_partition_result() -> None:
    cfg = config()
    obs = _simulate(cfg, {"control": 0.5, "treatment": 0.5}, {"control": 0.1, "treatment": 0.3}, 600)
    one = merge_partials(_fold(cfg, obs, 1).values(), cfg)
    many = merge_partials(_fold(cfg, obs, 5).values(), cfg)
    for arm in ("control", "treatment"):
        # integer sums: exact (the latency sums differ only by the rounding of another order)
        assert one[arm]["success_rate"] == many[arm]["success_rate"]
        assert one[arm][AUDIT] == many[arm][AUDIT]
        assert one[arm]["latency_ms"].sum == pytest.approx(many[arm]["latency_ms"].sum, rel=1e-12)
    assert one["control"][AUDIT].m > 0


def test_the_decision_uses_the_corrected_estimate_and_snapshots_carry_both() -> None:
    # equal truth; the labeller calls 20 % more of the treatment's failures successes
    cfg = config()
    obs = _simulate(cfg, {"control": 0.5, "treatment": 0.5}, {"control": 0.05, "treatment": 0.45}, 4000, seed=3)
    totals = merge_partials(_fold(cfg, obs, 3).values(), cfg)
    analysis, state = analyse(cfg, totals, ExperimentState())
    assert analysis.decision.action == "continue"  # not promoted on the labeller's opinion
    labelled = analysis.labelled["success_rate"].comparisons[0]
    corrected = analysis.primary.comparisons[0]
    assert labelled.state.p_value < 1e-6 and labelled.state.interval.low > 0.1
    assert corrected.state.interval.contains(0.0)
    assert "success_rate#labelled" in state.sequential
    plain_cfg = replace(cfg, audit_rate=0.0)  # without an audit sample the same labels promote the treatment
    plain, _ = analyse(plain_cfg, merge_partials(_fold(plain_cfg, obs, 3).values(), plain_cfg), ExperimentState())
    assert plain.decision.action == "promote_winner"
    records = snapshot_records(analysis, 1_700_000_000_000)
    primary = records[0]
    assert primary["estimator"] == "prediction_powered" and primary["audit_units"] > 0
    assert primary["labelled_comparisons"][0]["estimate"] == pytest.approx(labelled.sequential.absolute.estimate)
    assert primary["comparisons"][0]["estimate"] == pytest.approx(corrected.sequential.absolute.estimate)
    for rec in records:
        back = CODEC.decode(CODEC.encode("StatsSnapshot", rec)).record
        assert back["estimator"] == rec["estimator"]


def test_too_few_audited_units_make_no_inference() -> None:
    cfg = config(audit_rate=0.01)
    obs = _simulate(cfg, {"control": 0.3, "treatment": 0.7}, {"control": 0.0, "treatment": 0.0}, 1000)
    analysis, _ = analyse(cfg, merge_partials(_fold(cfg, obs).values(), cfg), ExperimentState())
    assert analysis.primary.comparisons[0].sequential.reason.value == "insufficient_sample"
    assert analysis.decision.action == "continue"


def test_cuped_adjusts_the_metric_and_reports_the_variance_reduction() -> None:
    cfg = config(audit_rate=0.0, primary_metric=MetricSpec.of("latency_ms"), guardrails=(), cuped_metrics=("latency_ms",))
    rng = random.Random(4)
    observations = []
    for i in range(2000):
        variant = "control" if i % 2 == 0 else "treatment"
        x = rng.gauss(0, 1)
        y = 500 + 50 * (0.8 * x + 0.6 * rng.gauss(0, 1))  # corr(x, y) = 0.8
        rec = experience(cfg, f"unit-{i}", variant, f"trace-{i}", y)
        o = unit_observations("experience", rec, cfg)
        assert o is not None
        observations.append(replace(o, covariates={"latency_ms": x}))
    totals = merge_partials(_fold(cfg, observations, 2).values(), cfg)
    analysis, _ = analyse(cfg, totals, ExperimentState())
    reduction = analysis.variance_reduction["latency_ms"]
    assert reduction == pytest.approx(0.64, abs=0.06)  # 1 − (1 − ρ²) with ρ = 0.8
    rec = snapshot_records(analysis, 1)[0]
    assert rec["estimator"] == "cuped" and rec["variance_reduction"] == pytest.approx(reduction)
    plain_se = analysis.labelled["latency_ms"].comparisons[0].sequential.absolute.standard_error
    cuped_se = analysis.primary.comparisons[0].sequential.absolute.standard_error
    assert cuped_se / plain_se == pytest.approx((1 - reduction) ** 0.5, rel=1e-6)


def test_history_gives_the_mean_of_the_look_back_window_before_the_first_exposure() -> None:
    day = 86_400_000
    t0 = 1_000 * day + 5_000  # the unit's first exposure to the CUPED experiment
    earlier = config(experiment_id="exp-earlier", audit_rate=0.0)
    cfg = config(experiment_id="exp-cuped", audit_rate=0.0, cuped_metrics=("success_rate",), cuped_lookback_days=7)

    def obs(c: ExperimentConfig, label: str, ts: int, trace: str) -> UnitObservation:
        o = unit_observations("outcome", {**outcome(c, "u1", "control", label, trace), "timestamp_ms": ts}, c)
        assert o is not None and o.timestamp_ms == ts
        return o

    history = None
    for label, ts in [("success", t0 - 10 * day),  # outside the 7-day window
                      ("success", t0 - 3 * day), ("failure", t0 - 2 * day), ("success", t0 - 1 * day)]:
        history, passed = through_history(history, obs(earlier, label, ts, f"old-{ts}"), earlier)
        assert passed.covariates == {}  # the earlier experiment adjusts nothing
    history, first = through_history(history, obs(cfg, "failure", t0, "new-1"), cfg)
    assert first.covariates == {"success_rate": pytest.approx(2 / 3)}
    # later observations keep the window of the first exposure: today's values never enter it
    history, later = through_history(history, obs(cfg, "success", t0 + 2 * day, "new-2"), cfg)
    assert later.covariates == {"success_rate": pytest.approx(2 / 3)}
    # a unit without history gets no covariate (the engine counts it with 0)
    _, fresh = through_history(None, obs(cfg, "success", t0, "new-3"), cfg)
    assert fresh.covariates == {}
    assert UnitObservation.from_json(first.to_json()) == first
