"""CUPED, guardrails (non-inferiority) and multiple-comparison corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentgym.processors.stats import (
    ArmSummary,
    GuardrailSpec,
    GuardrailStatus,
    ProportionStatistic,
    Reason,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    analyse_metric,
    bonferroni,
    cuped_adjust,
    cuped_theta,
    guardrail_test,
    holm,
    mixing_rho,
    sequential_test,
)

# --------------------------------------------------------------------------- CUPED


def _pre_post(rng: np.random.Generator, n: int, effect: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(100, 20, n)  # pre-period metric
    y = 0.8 * x + rng.normal(0, 10, n) + effect
    return y, x


def test_cuped_matches_a_direct_computation_on_the_raw_data() -> None:
    rng = np.random.default_rng(0)
    (yc, xc), (yt, xt) = _pre_post(rng, 800, 0.0), _pre_post(rng, 900, 2.0)
    arms = [RegressionAdjustedStatistic.from_pairs(yc, xc), RegressionAdjustedStatistic.from_pairs(yt, xt)]
    theta = cuped_theta(arms)
    x_all, y_all = np.concatenate([xc, xt]), np.concatenate([yc, yt])
    ref_theta = np.cov(y_all, x_all, ddof=1)[0, 1] / np.var(x_all, ddof=1)
    assert theta == pytest.approx(ref_theta, rel=1e-9)
    adj = cuped_adjust(arms)
    for (y, x), s in zip(((yc, xc), (yt, xt)), adj):
        y_cv = y - ref_theta * (x - x_all.mean())  # Deng et al. 2013 §3.1
        assert s.mean == pytest.approx(y_cv.mean(), rel=1e-9)
        assert s.variance == pytest.approx(np.var(y_cv, ddof=1), rel=1e-9)


def test_cuped_reduces_variance_by_the_squared_correlation() -> None:
    rng = np.random.default_rng(1)
    y, x = _pre_post(rng, 20_000, 0.0)
    st = RegressionAdjustedStatistic.from_pairs(y, x)
    rho2 = np.corrcoef(y, x)[0, 1] ** 2
    assert cuped_adjust([st])[0].variance == pytest.approx(st.summary().variance * (1 - rho2), rel=1e-3)


def test_cuped_tightens_the_sequential_interval() -> None:
    rng = np.random.default_rng(2)
    (yc, xc), (yt, xt) = _pre_post(rng, 2000, 0.0), _pre_post(rng, 2000, 1.0)
    arms = [RegressionAdjustedStatistic.from_pairs(yc, xc), RegressionAdjustedStatistic.from_pairs(yt, xt)]
    rho = mixing_rho(4000)
    plain = sequential_test(arms[0].summary(), arms[1].summary(), rho=rho)
    adj_c, adj_t = cuped_adjust(arms)
    cuped = sequential_test(adj_c, adj_t, rho=rho)
    assert plain.absolute is not None and cuped.absolute is not None
    rho2 = np.corrcoef(np.concatenate([yc, yt]), np.concatenate([xc, xt]))[0, 1] ** 2
    # the interval narrows by sqrt(1 - ρ²) (Deng et al. 2013, §3.1)
    assert cuped.absolute.interval.width / plain.absolute.interval.width == pytest.approx(math.sqrt(1 - rho2), rel=0.05)
    # and the estimate no longer carries the arms' chance imbalance in the pre-period
    assert abs(cuped.absolute.estimate - 1.0) < abs(plain.absolute.estimate - 1.0)


def test_cuped_degenerate_covariate_leaves_the_metric_alone() -> None:
    st = RegressionAdjustedStatistic.from_pairs([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert cuped_theta([st]) == 0.0
    assert cuped_adjust([st])[0] == st.summary()
    assert cuped_theta([]) == 0.0


# --------------------------------------------------------------------------- guardrails

RHO = mixing_rho(10_000)


@pytest.mark.parametrize(
    ("control", "treatment", "direction", "status"),
    [
        # latency (lower is better), 10 % tolerated
        (ArmSummary(5000, 1000.0, 300.0**2), ArmSummary(5000, 1000.0, 300.0**2), "decrease", GuardrailStatus.HOLDS),
        (ArmSummary(5000, 1000.0, 300.0**2), ArmSummary(5000, 1300.0, 300.0**2), "decrease", GuardrailStatus.BREACHED),
        (ArmSummary(5000, 1000.0, 300.0**2), ArmSummary(5000, 1100.0, 300.0**2), "decrease", GuardrailStatus.INCONCLUSIVE),
        (ArmSummary(5000, 1000.0, 300.0**2), ArmSummary(5000, 700.0, 300.0**2), "decrease", GuardrailStatus.HOLDS),
        # success rate (higher is better)
        (ArmSummary(5000, 0.8, 0.16), ArmSummary(5000, 0.5, 0.25), "increase", GuardrailStatus.BREACHED),
        (ArmSummary(5000, 0.8, 0.16), ArmSummary(5000, 0.82, 0.16), "increase", GuardrailStatus.HOLDS),
        (ArmSummary(50, 0.8, 0.16), ArmSummary(50, 0.5, 0.25), "increase", GuardrailStatus.INSUFFICIENT),
        (ArmSummary(5000, 0.0, 0.0), ArmSummary(5000, 0.1, 0.09), "decrease", GuardrailStatus.INSUFFICIENT),
    ],
)
def test_guardrail_table(control: ArmSummary, treatment: ArmSummary, direction: str, status: GuardrailStatus) -> None:
    r = guardrail_test(control, treatment, limit=0.1, direction=direction, rho=RHO)  # type: ignore[arg-type]
    assert r.status is status
    if status is GuardrailStatus.INSUFFICIENT:
        assert r.reason is not Reason.OK


def test_guardrail_p_values_are_running_minima() -> None:
    c, t = ArmSummary(5000, 1000.0, 300.0**2), ArmSummary(5000, 1300.0, 300.0**2)
    first = guardrail_test(c, t, limit=0.1, direction="decrease", rho=RHO)
    later = guardrail_test(c, c, limit=0.1, direction="decrease", rho=RHO, previous=(first.p_value_holds, first.p_value_breached))
    assert later.p_value_breached == first.p_value_breached  # once breached, always breached
    assert later.status is GuardrailStatus.BREACHED


def test_guardrail_false_breach_rate_at_the_margin() -> None:
    """A treatment exactly at the margin (10 % slower), monitored 30 times: breaches ≤ α."""
    rng = np.random.default_rng(4)
    reps, looks, per = 600, 30, 100
    hits = 0
    for _ in range(reps):
        prev = (1.0, 1.0)
        cx, tx = rng.normal(1000, 300, (looks, per)), rng.normal(1100, 300, (looks, per))
        c, t = SampleMeanStatistic(), SampleMeanStatistic()
        for k in range(looks):
            c = c + SampleMeanStatistic.from_values(cx[k])
            t = t + SampleMeanStatistic.from_values(tx[k])
            r = guardrail_test(c.summary(), t.summary(), limit=0.1, direction="decrease", rho=mixing_rho(6000), previous=prev)
            prev = (r.p_value_holds, r.p_value_breached)
        hits += r.p_value_breached <= 0.05
    assert hits / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


# --------------------------------------------------------------------------- multiple comparisons


@pytest.mark.parametrize(
    ("p", "holm_expected", "bonferroni_expected"),
    [
        ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06], [0.03, 0.12, 0.09]),
        ([0.001, 0.2], [0.002, 0.2], [0.002, 0.4]),
        ([0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
        ([0.04], [0.04], [0.04]),
    ],
)
def test_corrections_table(p: list[float], holm_expected: list[float], bonferroni_expected: list[float]) -> None:
    assert holm(p) == pytest.approx(holm_expected)
    assert bonferroni(p) == pytest.approx(bonferroni_expected)


def test_holm_is_never_more_conservative_than_bonferroni() -> None:
    rng = np.random.default_rng(9)
    for _ in range(200):
        p = rng.uniform(0, 0.2, rng.integers(2, 6)).tolist()
        assert all(h <= b + 1e-15 for h, b in zip(holm(p), bonferroni(p)))


# --------------------------------------------------------------------------- one metric, several arms


def test_analyse_metric_with_three_arms() -> None:
    stats = {"control": ProportionStatistic(4000, 1200), "a": ProportionStatistic(4000, 1500), "b": ProportionStatistic(4000, 1210)}
    res = analyse_metric("success_rate", stats, "control", rho=mixing_rho(8000), alpha=0.05)
    assert [c.variant for c in res.comparisons] == ["a", "b"]
    a, b = res.comparisons
    assert a.adjusted_p_value <= 0.05 < b.adjusted_p_value
    assert a.adjusted_p_value >= a.state.p_value  # corrected
    assert a.sequential.alpha == pytest.approx(0.025)  # intervals at the Bonferroni level
    assert a.fixed_horizon.test == "two_proportion_z"
    assert a.to_dict()["sequential"]["absolute"]["interval"]["low"] > 0


def test_analyse_metric_guardrail() -> None:
    stats = {"control": SampleMeanStatistic.from_values([1000.0, 1200.0] * 3000), "t": SampleMeanStatistic.from_values([1500.0, 1700.0] * 3000)}
    res = analyse_metric("latency_ms", stats, "control", rho=mixing_rho(10000), guardrail=GuardrailSpec(0.1, "decrease"))
    g = res.comparisons[0].guardrail
    assert g is not None and g.status is GuardrailStatus.BREACHED
    assert res.comparisons[0].fixed_horizon.test == "welch_t"
