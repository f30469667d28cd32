"""Prediction-powered estimates (processors/stats/ppi.py) and the simulations of ops/bench/ppi.py.

Three ways, as STYLE.md asks: a table of cases, values against an independent
computation on the raw per-unit values (NumPy's var/cov, and the Monte-Carlo variance of
the estimator), and properties: merging equals concatenating; under 30 looks the PPI
test's false-positive rate and wrong-winner rate stay at or below α and its confidence
sequence covers the truth at all looks in at least 1 − α of runs, within Monte-Carlo error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentgym.ops.bench.ppi import Labeller, fixed_horizon_n, simulate_cuped, simulate_ppi
from agentgym.processors.stats import ArmSummary, Reason, sequential_test
from agentgym.processors.stats.exceptions import InvalidParameterError
from agentgym.processors.stats.ppi import (
    PredictionPoweredStatistic,
    gold_summary,
    label_summary,
    ppi_estimate,
    ppi_summary,
)

ALPHA = 0.05


def _arm(rng: np.random.Generator, n: int, p: float, fp: float, fn: float, rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = (rng.random(n) < p).astype(float)
    u = rng.random(n)
    f = np.where(y == 1, u >= fn, u < fp).astype(float)
    return f, y, rng.random(n) < rate


def _stat(f: np.ndarray, y: np.ndarray, audited: np.ndarray) -> PredictionPoweredStatistic:
    return PredictionPoweredStatistic.from_values(f.tolist(), [float(g) if a else None for g, a in zip(y, audited)])


@pytest.mark.parametrize(
    ("labels", "golds", "min_audit", "reason"),
    [
        ([], [], 2, Reason.EMPTY_ARM),
        ([1, 0, 1], [None, None, None], 2, Reason.INSUFFICIENT_SAMPLE),
        ([1, 0, 1], [1, None, None], 2, Reason.INSUFFICIENT_SAMPLE),
        ([1, 0, 1, 1], [1, 0, None, None], 3, Reason.INSUFFICIENT_SAMPLE),
        ([1, 0, 1, 1], [1, 0, None, None], 2, Reason.OK),
    ],
)
def test_reasons(labels: list[float], golds: list[float | None], min_audit: int, reason: Reason) -> None:
    est = ppi_estimate(PredictionPoweredStatistic.from_values(labels, golds), min_audit=min_audit)
    assert est.reason is reason
    assert math.isnan(est.summary().mean) == (reason is not Reason.OK)


@pytest.mark.parametrize(
    ("labels", "golds", "estimate"),
    [
        # a perfect labeller: no correction
        ([1, 0, 1, 1], [1, 0, None, None], 0.75),
        # labels 1 everywhere, the audit finds half of them wrong: 1 + (-0.5)
        ([1, 1, 1, 1], [1, 0, None, None], 0.5),
        # a labeller that misses successes: 0.25 + 0.5
        ([0, 0, 0, 1], [1, 0, None, None], 0.75),
    ],
)
def test_rectified_estimate_table(labels: list[float], golds: list[float | None], estimate: float) -> None:
    est = ppi_estimate(PredictionPoweredStatistic.from_values(labels, golds), min_audit=2)
    assert est.estimate == pytest.approx(estimate)
    assert est.estimate == pytest.approx(est.label_mean + est.correction)


def test_invalid_input_raises_a_typed_error() -> None:
    with pytest.raises(InvalidParameterError, match="min_audit"):
        ppi_estimate(PredictionPoweredStatistic(), min_audit=1)
    with pytest.raises(InvalidParameterError, match="audited units exceed"):
        PredictionPoweredStatistic(n=1, m=2)


def test_estimate_and_variance_equal_a_direct_computation_on_the_raw_values() -> None:
    rng = np.random.default_rng(7)
    f, y, a = _arm(rng, 3000, 0.4, 0.15, 0.05, 0.15)
    f = f + rng.normal(0, 0.3, f.size)  # non-binary labels (a score): every moment matters
    est = ppi_estimate(_stat(f, y, a))
    d = (y - f)[a]
    expected_var = f.var(ddof=1) / f.size + d.var(ddof=1) / a.sum() + 2 * np.cov(f[a], d, ddof=1)[0, 1] / f.size
    assert est.ok and est.m == a.sum()
    assert est.estimate == pytest.approx(f.mean() + d.mean(), rel=1e-12)
    assert est.variance == pytest.approx(expected_var, rel=1e-9)
    assert est.gold_mean == pytest.approx(y[a].mean())
    assert ppi_summary(_stat(f, y, a)) == ArmSummary(f.size, est.estimate, f.size * est.variance)
    assert label_summary(_stat(f, y, a)).mean == pytest.approx(f.mean())
    assert gold_summary(_stat(f, y, a)).variance == pytest.approx(y[a].var(ddof=1))


def test_merging_equals_concatenating() -> None:
    rng = np.random.default_rng(3)
    f, y, a = _arm(rng, 900, 0.5, 0.2, 0.1, 0.3)
    f = f * rng.uniform(0.5, 1.0, f.size)
    parts = [_stat(f[i:i + 300], y[i:i + 300], a[i:i + 300]) for i in (0, 300, 600)]
    whole = _stat(f, y, a)
    merged = parts[0] + parts[1] + parts[2]
    assert merged.n == whole.n and merged.m == whole.m
    for name in ("sum_label", "sum_label_squares", "sum_audit_label", "sum_audit_label_squares", "sum_gold",
                 "sum_gold_squares", "sum_label_gold"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), rel=1e-12), name
    assert ppi_estimate(merged).estimate == pytest.approx(ppi_estimate(whole).estimate, rel=1e-12)


def test_the_estimate_is_unbiased_and_its_variance_matches_the_monte_carlo_variance() -> None:
    # 2,000 replicate arms of 1,000 units, audit rate 0.1: the labels' mean is 0.64 while
    # the truth is 0.5; the rectified mean is unbiased and V̂ is the estimator's variance
    rng = np.random.default_rng(11)
    reps, n, rate = 2000, 1000, 0.1
    estimates, variances = np.empty(reps), np.empty(reps)
    for r in range(reps):
        f, y, a = _arm(rng, n, 0.5, 0.3, 0.02, rate)
        st = PredictionPoweredStatistic(n, f.sum(), f.sum(), int(a.sum()), f[a].sum(), f[a].sum(), y[a].sum(),
                                        y[a].sum(), (f * y)[a].sum())
        e = ppi_estimate(st)
        estimates[r], variances[r] = e.estimate, e.variance
    mc_se = estimates.std() / math.sqrt(reps)
    assert abs(estimates.mean() - 0.5) < 4 * mc_se
    # the variance of a sample variance over 2,000 replicates: ~3 % relative standard error
    assert estimates.var() == pytest.approx(variances.mean(), rel=0.12)


def test_the_engine_test_runs_on_the_ppi_summary() -> None:
    rng = np.random.default_rng(5)
    c = _stat(*_arm(rng, 4000, 0.5, 0.1, 0.0, 0.2))
    t = _stat(*_arm(rng, 4000, 0.5, 0.3, 0.0, 0.2))
    plain = sequential_test(label_summary(c), label_summary(t), rho=0.05)
    corrected = sequential_test(ppi_summary(c), ppi_summary(t), rho=0.05)
    assert plain.ok and plain.p_value < ALPHA  # the labeller's bias looks like an effect
    assert corrected.ok and corrected.p_value > ALPHA and corrected.absolute is not None
    assert corrected.absolute.interval.contains(0.0)


# -- simulations under continuous monitoring (the bench's functions, fewer replicates) ------------

REPS = 1000
MC = 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)  # three Monte-Carlo standard errors at rate alpha
DEMO_CONTROL, DEMO_TREATMENT = Labeller(0.10, 0.0), Labeller(0.24, 0.0)


def test_a_labeller_that_errs_differently_per_arm_fools_the_plain_test_but_not_ppi() -> None:
    res = simulate_ppi(p_control=0.5, p_treatment=0.5, labeller_control=DEMO_CONTROL, labeller_treatment=DEMO_TREATMENT,
                       audit_rate=0.2, replicates=REPS, looks=30, per_look=100, seed=21)
    assert res["plain"].rate() > 0.9
    assert res["ppi"].rate() <= ALPHA + MC
    assert res["ppi"].covered.mean() >= 1 - ALPHA - MC


def test_ppi_does_not_promote_the_arm_the_labeller_prefers_when_the_truth_is_opposite() -> None:
    res = simulate_ppi(p_control=0.5, p_treatment=0.46, labeller_control=DEMO_CONTROL, labeller_treatment=DEMO_TREATMENT,
                       audit_rate=0.2, replicates=REPS, looks=30, per_look=100, seed=22)
    assert res["plain"].rate(+1) > 0.3  # the plain test promotes the worse arm often
    assert res["ppi"].rate(+1) <= ALPHA + MC
    assert res["ppi"].covered.mean() >= 1 - ALPHA - MC


def test_ppi_stops_sooner_than_a_test_on_the_audit_samples_gold_labels_alone() -> None:
    good = Labeller(0.1, 0.1)
    res = simulate_ppi(p_control=0.5, p_treatment=0.6, labeller_control=good, labeller_treatment=good,
                       audit_rate=0.2, replicates=500, looks=30, per_look=100, seed=23)
    assert res["ppi"].rate(+1) > res["gold"].rate(+1)
    assert res["ppi"].n_stop.mean() < res["gold"].n_stop.mean()


def test_cuped_in_the_sequential_test_keeps_type_i_error_and_stops_sooner() -> None:
    aa = simulate_cuped(effect=0.0, correlation=0.6, replicates=REPS, looks=30, per_look=100, seed=24)
    assert aa["cuped"].rate() <= ALPHA + MC
    n_fix = 1000.0
    mde = math.sqrt(2 / n_fix) * 2.8015852  # z_0.975 + z_0.8
    assert fixed_horizon_n(mde) == pytest.approx(n_fix, rel=1e-6)
    res = simulate_cuped(effect=1.5 * mde, correlation=0.6, replicates=500, looks=60, per_look=50, seed=25)
    assert res["cuped"].n_stop.mean() < 0.85 * res["plain"].n_stop.mean()


def test_cuped_theta_and_adjusted_difference_equal_scipys_regression() -> None:
    # golden values from an independent implementation: θ is the pooled OLS slope of y on x
    # (scipy.stats.linregress), and the CUPED difference equals the treatment coefficient of
    # y ~ 1 + T + x when both arms share θ (NumPy least squares)
    from scipy.stats import linregress

    from agentgym.processors.stats import RegressionAdjustedStatistic, cuped_adjust, cuped_theta

    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 500))
    y = 0.7 * x + rng.normal(size=(2, 500)) + np.array([[0.0], [0.2]])
    arms = [RegressionAdjustedStatistic.from_pairs(y[j].tolist(), x[j].tolist()) for j in (0, 1)]
    theta = cuped_theta(arms)
    assert theta == pytest.approx(linregress(x.ravel(), y.ravel()).slope, rel=1e-9)
    adjusted = cuped_adjust(arms)
    t = np.repeat([0.0, 1.0], 500)
    design = np.column_stack([np.ones(1000), t, x.ravel()])
    coef = np.linalg.lstsq(design, y.ravel(), rcond=None)[0]
    # least squares fits the slope within arms; CUPED pools it over both: equal up to the arms' covariate imbalance
    assert adjusted[1].mean - adjusted[0].mean == pytest.approx(coef[1], abs=0.01)
    assert adjusted[0].variance == pytest.approx(np.var(y[0] - theta * x[0], ddof=1), rel=1e-9)
