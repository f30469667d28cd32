"""SRM: golden values from savvi's Lindon & Malek implementation and from numerical
integration, the χ² test against scipy, and the sequential test's error rate under monitoring."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats as sps

from agentgym.processors.stats import InvalidParameterError, Reason, SrmState, srm_chi_square, srm_log_bayes_factor, srm_test

GOLDEN = json.loads((Path(__file__).parent / "golden" / "golden_values.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["savvi_multinomial"], ids=lambda c: f"{c['theta0']}-k{c['k']}")
def test_incremental_bayes_factor_matches_savvi(case: dict[str, Any]) -> None:
    state: SrmState | None = None
    total = np.zeros(len(case["theta0"]), dtype=int)
    for batch, odds, p in zip(case["batches"], case["odds"], case["p_values"]):
        total += np.asarray(batch)
        result, state = srm_test(total.tolist(), case["theta0"], concentration=case["k"], state=state, alpha=0.05)
        assert result.log_bayes_factor == pytest.approx(math.log(odds), rel=1e-9, abs=1e-9)
        assert result.p_value == pytest.approx(p, rel=1e-9)
        # with fixed weights the batch-by-batch product is the one-shot Bayes factor
        assert srm_log_bayes_factor(total.tolist(), case["theta0"], case["k"]) == pytest.approx(result.log_bayes_factor, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("x", "n", "theta0", "k"), [(520, 1000, 0.5, 100.0), (30, 100, 0.2, 10.0), (5000, 10000, 0.5, 1.0)])
def test_two_arm_bayes_factor_equals_numerical_integration(x: int, n: int, theta0: float, k: float) -> None:
    """Two arms: BF = ∫ θ^x (1-θ)^(n-x) Beta(θ; kθ₀, k(1-θ₀)) dθ / (θ₀^x (1-θ₀)^(n-x))."""
    a, b = k * theta0, k * (1 - theta0)
    log_null = x * math.log(theta0) + (n - x) * math.log(1 - theta0)
    mode = x / n

    def integrand(th: float) -> float:
        return math.exp(x * math.log(th) + (n - x) * math.log1p(-th) - log_null + sps.beta.logpdf(th, a, b))

    val, _ = integrate.quad(integrand, 1e-12, 1 - 1e-12, points=[mode, theta0], limit=400)
    assert srm_log_bayes_factor([x, n - x], [theta0, 1 - theta0], k) == pytest.approx(math.log(val), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(("counts", "weights"), [([520, 480], [1, 1]), ([100, 210, 290], [0.2, 0.3, 0.5]), ([90, 10], [9, 1])])
def test_chi_square_matches_scipy(counts: list[int], weights: list[float]) -> None:
    w = np.asarray(weights, float) / sum(weights)
    ref = sps.chisquare(counts, f_exp=np.asarray(counts).sum() * w)
    stat, p = srm_chi_square(counts, weights)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize(
    ("counts", "weights", "reason", "mismatch"),
    [
        ([0, 0], [1, 1], Reason.NO_TRAFFIC, False),
        ([10, 3], [1, 0], Reason.UNEXPECTED_ARM, True),
        ([10, 0], [1, 0], Reason.OK, False),  # a rolled-back arm with no units is left out
        ([5000, 5000], [1, 1], Reason.OK, False),
        ([5600, 4400], [1, 1], Reason.OK, True),
    ],
)
def test_srm_table(counts: list[int], weights: list[float], reason: Reason, mismatch: bool) -> None:
    result, _ = srm_test(counts, weights, alpha=0.001)
    assert result.reason is reason and result.mismatch is mismatch


def test_invalid_weights_raise() -> None:
    with pytest.raises(InvalidParameterError):
        srm_test([1, 2], [1, -1])
    with pytest.raises(InvalidParameterError):
        srm_test([1, 2, 3], [1, 1])


def test_weight_change_mid_experiment_is_not_a_mismatch() -> None:
    rng = np.random.default_rng(0)
    state = None
    total = np.zeros(2, dtype=int)
    worst = 1.0
    for look in range(30):
        share = 0.5 if look < 15 else 0.2  # ramp the treatment down halfway
        total += rng.multinomial(400, [1 - share, share])
        result, state = srm_test(total.tolist(), [1 - share, share], state=state)
        worst = min(worst, result.p_value)
    assert worst > 0.001
    # the χ² test against the final weights cannot tell a ramp from a mismatch
    assert srm_chi_square(total.tolist(), [0.8, 0.2])[1] < 1e-6


def test_sequential_srm_false_positive_rate_under_monitoring() -> None:
    rng = np.random.default_rng(1)
    reps, looks, alpha = 4000, 30, 0.05
    counts = rng.multinomial(200, [0.5, 0.5], size=(reps, looks)).cumsum(axis=1)  # (reps, looks, arms)
    log_bf = srm_log_bayes_factor(counts, [1, 1])  # with fixed weights: the product over looks
    p_seq = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_bf)), axis=1)
    p_chi = sps.chisquare(counts, axis=-1).pvalue
    seq, chi = float((p_seq <= alpha).any(axis=1).mean()), float((p_chi <= alpha).any(axis=1).mean())
    print(f"SRM A/A, {looks} looks, {reps} replicates: Bayes factor {seq:.4f}, peeking chi-square {chi:.4f}")
    assert seq <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)
    assert chi > 0.15
    # the vectorised form is the scalar one
    r, _ = srm_test(counts[0, -1].tolist(), [1, 1])
    assert r.log_bayes_factor == pytest.approx(log_bf[0, -1])


def test_a_real_mismatch_is_detected() -> None:
    rng = np.random.default_rng(2)
    total = np.zeros(2, dtype=int)
    state = None
    detected_at = None
    for look in range(30):
        total += rng.multinomial(1000, [0.46, 0.54])  # 8 % of control's units lost
        r, state = srm_test(total.tolist(), [1, 1], alpha=0.001, state=state)
        if r.mismatch:
            detected_at = look
            break
    assert detected_at is not None and detected_at < 20
