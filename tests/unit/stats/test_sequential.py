"""The always-valid test: a table of cases, golden values from confseq and from numerical
integration of the mixture likelihood ratio, and simulated error rates under continuous monitoring."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats as sps

from agentgym.processors.stats import (
    ArmSummary,
    Interval,
    InvalidParameterError,
    ProportionStatistic,
    Reason,
    SampleMeanStatistic,
    SequentialState,
    log_mixture_likelihood_ratio,
    mixing_rho,
    one_sided_log_mixture_likelihood_ratio,
    radius_multiplier,
    sequential_test,
)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "golden_values.json").read_text())


# --------------------------------------------------------------------------- table of cases

@pytest.mark.parametrize(
    ("control", "treatment", "min_n", "reason"),
    [
        (ArmSummary(0, math.nan, math.nan), ArmSummary(10, 1.0, 1.0), 1, Reason.EMPTY_ARM),
        (ArmSummary(50, 1.0, 1.0), ArmSummary(500, 1.0, 1.0), 100, Reason.INSUFFICIENT_SAMPLE),
        (ArmSummary(500, 1.0, 0.0), ArmSummary(500, 1.0, 0.0), 100, Reason.ZERO_VARIANCE),
        (ArmSummary(500, math.nan, 1.0), ArmSummary(500, 1.0, 1.0), 100, Reason.NON_FINITE),
        (ArmSummary(500, 1.0, 1.0), ArmSummary(500, 1.1, 1.0), 100, Reason.OK),
    ],
)
def test_reasons(control: ArmSummary, treatment: ArmSummary, min_n: int, reason: Reason) -> None:
    r = sequential_test(control, treatment, rho=0.05, min_samples_per_arm=min_n)
    assert r.reason is reason
    if reason is not Reason.OK:
        assert r.p_value == 1.0 and r.absolute is None  # no inference, no exception


def test_zero_control_mean_gives_no_relative_difference() -> None:
    r = sequential_test(ArmSummary(500, 0.0, 1.0), ArmSummary(500, 0.5, 1.0), rho=0.05)
    assert r.ok and r.absolute is not None and r.relative is None


@pytest.mark.parametrize(("alpha", "rho"), [(0.0, 0.1), (1.0, 0.1), (0.05, 0.0), (0.05, -1.0)])
def test_invalid_parameters_raise(alpha: float, rho: float) -> None:
    with pytest.raises(InvalidParameterError):
        sequential_test(ArmSummary(500, 1.0, 1.0), ArmSummary(500, 1.0, 1.0), rho=rho, alpha=alpha)


@pytest.mark.parametrize(
    ("c", "t", "significant"),
    [
        (ProportionStatistic(2000, 600), ProportionStatistic(2000, 600), False),
        (ProportionStatistic(2000, 600), ProportionStatistic(2000, 640), False),  # z ≈ 1.4
        (ProportionStatistic(2000, 600), ProportionStatistic(2000, 760), True),  # z ≈ 5.3
        (ProportionStatistic(2000, 760), ProportionStatistic(2000, 600), True),
        (ProportionStatistic(20000, 6000), ProportionStatistic(20000, 6250), False),  # z ≈ 2.7 < sequential threshold
    ],
)
def test_proportion_table(c: ProportionStatistic, t: ProportionStatistic, significant: bool) -> None:
    rho = mixing_rho(4000, 0.05)
    r = sequential_test(c.summary(), t.summary(), rho=rho, alpha=0.05)
    assert r.ok
    assert (r.p_value <= 0.05) is significant
    # the interval excludes 0 exactly when the p-value is at or below alpha (same boundary)
    assert r.absolute is not None and (not r.absolute.interval.contains(0.0)) is significant
    assert r.relative is not None and r.relative.estimate == pytest.approx(t.mean / c.mean - 1)


def test_the_sequential_interval_is_wider_than_the_fixed_horizon_one() -> None:
    c, t = ArmSummary(1000, 0.0, 1.0), ArmSummary(1000, 0.1, 1.0)
    r = sequential_test(c, t, rho=mixing_rho(2000), alpha=0.05)
    assert r.absolute is not None
    fixed_half_width = 1.959964 * r.absolute.standard_error
    ratio = (r.absolute.interval.high - r.absolute.estimate) / fixed_half_width
    assert 1.1 < ratio < 1.6  # the price of validity at every look, near its optimum t*


# --------------------------------------------------------------------------- golden values

def test_mixing_rho_is_confseqs_best_rho() -> None:
    # confseq: rho_H = v_opt / (2 log(1/α) + log(1 + 2 log(1/α))); ours is 1/sqrt(rho_H) with v = units
    for t_opt, alpha in ((100, 0.05), (2000, 0.01), (10_000, 0.1)):
        two_log = 2 * math.log(1 / alpha)
        assert mixing_rho(t_opt, alpha) == pytest.approx(1 / math.sqrt(t_opt / (two_log + math.log1p(two_log))))


@pytest.mark.parametrize("case", GOLDEN["confseq"]["two_sided_log_mixture"], ids=lambda c: f"z{c['z']}-t{c['t']}-opt{c['t_opt']}-a{c['alpha']}")
def test_two_sided_log_mixture_matches_confseq(case: dict[str, Any]) -> None:
    rho = mixing_rho(case["t_opt"], case["alpha"])
    assert float(log_mixture_likelihood_ratio(case["z"], case["t"], rho)) == pytest.approx(case["log_mixture"], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("case", GOLDEN["confseq"]["one_sided_log_mixture"], ids=lambda c: f"z{c['z']}-t{c['t']}-opt{c['t_opt']}-a{c['alpha']}")
def test_one_sided_log_mixture_matches_confseq(case: dict[str, Any]) -> None:
    # confseq's one-sided mixture tunes its rho for 2·alpha_opt
    rho = mixing_rho(case["t_opt"], min(2 * case["alpha"], 0.5))
    got = float(one_sided_log_mixture_likelihood_ratio(case["z"], case["t"], rho))
    assert got == pytest.approx(case["log_mixture"], rel=1e-7, abs=1e-7)


@pytest.mark.parametrize("case", GOLDEN["confseq"]["two_sided_bound"], ids=lambda c: f"t{c['t']}-opt{c['t_opt']}-a{c['alpha']}")
def test_confidence_radius_matches_confseqs_boundary(case: dict[str, Any]) -> None:
    # confseq bounds the sum s = z·sqrt(t); our radius is in standard errors of the mean difference
    rho = mixing_rho(case["t_opt"], case["alpha"])
    assert float(radius_multiplier(case["t"], rho, case["alpha"])) == pytest.approx(case["s_bound"] / math.sqrt(case["t"]), rel=1e-9)


@pytest.mark.parametrize(("z", "t", "rho"), [(0.0, 100, 0.1), (1.5, 400, 0.05), (3.0, 2000, 0.06), (-2.2, 50, 0.3), (4.0, 10_000, 0.01)])
def test_closed_form_equals_numerical_integration_of_the_mixture(z: float, t: int, rho: float) -> None:
    """Λ = ∫ N(θ̂; θ, V)/N(θ̂; 0, V) dH(θ), H = N(0, ρ²σ²), V = σ²/t (JPW 2022 §3), integrated by scipy."""
    sigma = 1.7
    v = sigma**2 / t
    theta_hat = z * math.sqrt(v)
    tau = rho * sigma

    def integrand(theta: float) -> float:
        return math.exp((theta_hat**2 - (theta_hat - theta) ** 2) / (2 * v)) * sps.norm.pdf(theta, 0, tau)

    lam, _ = integrate.quad(integrand, -12 * tau + theta_hat, 12 * tau + theta_hat, points=[0.0, theta_hat], limit=200)
    assert float(log_mixture_likelihood_ratio(z, t, rho)) == pytest.approx(math.log(lam), rel=1e-7, abs=1e-9)


def test_one_sided_closed_form_equals_numerical_integration_over_a_half_normal() -> None:
    for z, t, rho in ((1.0, 300, 0.08), (2.5, 1000, 0.05), (-1.0, 300, 0.08)):
        v = 1.0 / t

        def integrand(theta: float, z: float = z, v: float = v, rho: float = rho) -> float:
            th = z * math.sqrt(v)
            return math.exp((th**2 - (th - theta) ** 2) / (2 * v)) * 2 * sps.norm.pdf(theta, 0, rho)

        lam, _ = integrate.quad(integrand, 0, 12 * rho + abs(z) * math.sqrt(v), limit=200)
        assert float(one_sided_log_mixture_likelihood_ratio(z, t, rho)) == pytest.approx(math.log(lam), rel=1e-7)


# --------------------------------------------------------------------------- the running state

def test_running_p_value_never_rises_and_intervals_only_shrink() -> None:
    rng = np.random.default_rng(3)
    rho = mixing_rho(4000)
    state = SequentialState()
    c = t = SampleMeanStatistic()
    last = (1.0, Interval())
    for _ in range(40):
        c = c + SampleMeanStatistic.from_values(rng.normal(0, 1, 100))
        t = t + SampleMeanStatistic.from_values(rng.normal(0.05, 1, 100))
        state = state.update(sequential_test(c.summary(), t.summary(), rho=rho))
        assert state.p_value <= last[0]
        assert last[1].low <= state.interval.low and state.interval.high <= last[1].high
        last = (state.p_value, state.interval)
    assert SequentialState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_a_look_without_inference_leaves_the_state_alone() -> None:
    s = SequentialState(0.2, Interval(-1, 1), Interval(-2, 2), 3)
    r = sequential_test(ArmSummary(5, 0, 1), ArmSummary(5, 0, 1), rho=0.1, min_samples_per_arm=100)
    assert s.update(r) == s


# --------------------------------------------------------------------------- simulations

LOOKS = 30
PER_LOOK = 100  # units per arm between looks
REPLICATES = 4000
ALPHA = 0.05


def _simulate_proportions(p_control: float, p_treatment: float, seed: int) -> dict[str, np.ndarray]:
    """REPLICATES experiments with LOOKS looks each, vectorised: per look and replicate, the
    always-valid p (running minimum), the naive fixed-horizon p and the estimate."""
    rng = np.random.default_rng(seed)
    sc = rng.binomial(PER_LOOK, p_control, size=(REPLICATES, LOOKS)).cumsum(axis=1)
    st = rng.binomial(PER_LOOK, p_treatment, size=(REPLICATES, LOOKS)).cumsum(axis=1)
    n = PER_LOOK * np.arange(1, LOOKS + 1)
    pc, pt = sc / n, st / n
    var = (pc * (1 - pc) + pt * (1 - pt)) / n
    diff = pt - pc
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, diff / np.sqrt(var), 0.0)
    rho = mixing_rho(2 * PER_LOOK * LOOKS, ALPHA)
    log_lr = log_mixture_likelihood_ratio(z, 2 * n, rho)
    p_seq = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lr)), axis=1)
    pooled = (sc + st) / (2 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = np.where(pooled * (1 - pooled) > 0, diff / np.sqrt(pooled * (1 - pooled) * 2 / n), 0.0)
    p_fixed = 2 * sps.norm.sf(np.abs(z0))
    return {"p_seq": p_seq, "p_fixed": p_fixed, "diff": diff, "z": z}


def test_a_a_false_positive_rate_under_continuous_monitoring() -> None:
    sim = _simulate_proportions(0.3, 0.3, seed=11)
    seq_fpr = float((sim["p_seq"] <= ALPHA).any(axis=1).mean())
    peek_fpr = float((sim["p_fixed"] <= ALPHA).any(axis=1).mean())
    last_look_fpr = float((sim["p_fixed"][:, -1] <= ALPHA).mean())
    mc_se = math.sqrt(ALPHA * (1 - ALPHA) / REPLICATES)
    print(f"A/A, {LOOKS} looks, {REPLICATES} replicates: sequential {seq_fpr:.4f}, naive peeking {peek_fpr:.4f}, one fixed look {last_look_fpr:.4f}")
    assert seq_fpr <= ALPHA + 3 * mc_se
    assert peek_fpr > 0.2
    assert abs(last_look_fpr - ALPHA) < 4 * mc_se  # the fixed-horizon test is fine when looked at once


def test_a_a_false_positive_rate_for_a_capped_heavy_tailed_mean() -> None:
    rng = np.random.default_rng(5)
    reps, cap = 2000, 2000.0
    n = PER_LOOK * np.arange(1, LOOKS + 1)
    stats = []
    for _ in range(2):  # control, treatment: lognormal latencies, capped
        x = np.minimum(rng.lognormal(6.0, 1.0, size=(reps, LOOKS, PER_LOOK)), cap)
        s, ss = x.sum(axis=2).cumsum(axis=1), (x * x).sum(axis=2).cumsum(axis=1)
        stats.append((s / n, (ss - s * s / n) / (n - 1)))
    (mc, vc), (mt, vt) = stats
    z = (mt - mc) / np.sqrt(vc / n + vt / n)
    p_seq = np.minimum.accumulate(np.exp(-np.maximum(log_mixture_likelihood_ratio(z, 2 * n, mixing_rho(6000)), 0)), axis=1)
    fpr = float((p_seq <= ALPHA).any(axis=1).mean())
    print(f"A/A capped lognormal mean, {LOOKS} looks, {reps} replicates: sequential {fpr:.4f}")
    assert fpr <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)


@pytest.mark.parametrize(("p_treatment", "winner"), [(0.36, "treatment"), (0.25, "control")])
def test_a_real_effect_stops_with_the_right_winner(p_treatment: float, winner: str) -> None:
    sim = _simulate_proportions(0.30, p_treatment, seed=23)
    stopped = (sim["p_seq"] <= ALPHA).any(axis=1)
    first = np.argmax(sim["p_seq"] <= ALPHA, axis=1)
    sign_at_stop = np.sign(sim["diff"][np.arange(REPLICATES), first])
    right = stopped & (sign_at_stop == (1 if winner == "treatment" else -1))
    wrong = stopped & ~right
    mean_stop = float(((first[stopped] + 1) * PER_LOOK).mean())
    print(f"effect 0.30 -> {p_treatment}: power {stopped.mean():.4f}, right winner {right.mean():.4f}, "
          f"wrong winner {wrong.mean():.4f}, mean stop at {mean_stop:.0f} units per arm")
    assert right.mean() >= 0.9
    assert wrong.mean() <= 0.001
    assert mean_stop < PER_LOOK * LOOKS  # it stops early on average
