"""Fixed-horizon tests against scipy's independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from agentgym.processors.stats import ArmSummary, ProportionStatistic, Reason, SampleMeanStatistic, fixed_horizon_test, two_proportion_z_test, welch_t_test


@pytest.mark.parametrize("seed", range(4))
def test_welch_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(10, 2, 40 + seed * 7), rng.normal(10.8, 3.5, 25 + seed * 11)
    ref = sps.ttest_ind(b, a, equal_var=False)
    r = welch_t_test(SampleMeanStatistic.from_values(a).summary(), SampleMeanStatistic.from_values(b).summary())
    assert r.ok and r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert r.absolute is not None
    assert (r.absolute.interval.low, r.absolute.interval.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


@pytest.mark.parametrize(("c", "t"), [((1000, 300), (1000, 345)), ((500, 20), (800, 50)), ((50, 25), (60, 20))])
def test_two_proportion_z_squared_is_pearsons_chi_square(c: tuple[int, int], t: tuple[int, int]) -> None:
    table = [[c[1], c[0] - c[1]], [t[1], t[0] - t[1]]]
    chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
    r = two_proportion_z_test(ProportionStatistic(*c), ProportionStatistic(*t))
    assert r.ok and r.statistic**2 == pytest.approx(chi2, rel=1e-9) and r.p_value == pytest.approx(p, rel=1e-9)


@pytest.mark.parametrize(
    ("c", "t", "reason"),
    [
        (ProportionStatistic(0, 0), ProportionStatistic(10, 3), Reason.EMPTY_ARM),
        (ProportionStatistic(10, 10), ProportionStatistic(10, 10), Reason.ZERO_VARIANCE),
        (ArmSummary(1, 1.0, math.nan), ArmSummary(10, 1.0, 1.0), Reason.INSUFFICIENT_SAMPLE),
        (ArmSummary(10, 1.0, 0.0), ArmSummary(10, 1.0, 0.0), Reason.ZERO_VARIANCE),
    ],
)
def test_degenerate_input_gives_a_reason(c: ProportionStatistic | ArmSummary, t: ProportionStatistic | ArmSummary, reason: Reason) -> None:
    r = fixed_horizon_test(c, t)
    assert r.reason is reason and r.p_value == 1.0
