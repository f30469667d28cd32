"""Misuse raises a typed error naming the argument; degenerate data gives a typed reason.

Each row is a case that was silently accepted (or answered with nonsense) before.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest

from agentgym.processors.stats.exceptions import InvalidParameterError
from agentgym.processors.stats.fixed_horizon import fixed_horizon_test, two_proportion_z_test
from agentgym.processors.stats.multiple import adjust_p_values, bonferroni, holm
from agentgym.processors.stats.results import Reason
from agentgym.processors.stats.sequential import SequentialState, sequential_test
from agentgym.processors.stats.srm import srm_chi_square, srm_log_bayes_factor, srm_test
from agentgym.processors.stats.statistics import ArmSummary, ProportionStatistic, SampleMeanStatistic

nan = math.nan

MISUSE: list[tuple[str, Callable[[], Any], str]] = [
    ("negative variance", lambda: ArmSummary(10, 1.0, -0.5), r"ArmSummary\.variance"),
    ("infinite variance", lambda: ArmSummary(10, 1.0, math.inf), r"ArmSummary\.variance"),
    ("negative n", lambda: ArmSummary(-1, 1.0, 1.0), r"ArmSummary\.n"),
    # values 1, 2, 3 have sum 6 and sum of squares 14; 10 cannot occur (it is below 6²/3 = 12)
    ("impossible sum of squares", lambda: SampleMeanStatistic(3, 6.0, 10.0), r"sum_squares=10\.0 is impossible"),
    ("negative sum of squares", lambda: SampleMeanStatistic(2, 0.0, -1.0), "sum_squares"),
    ("NaN successes", lambda: ProportionStatistic(10, nan), "ProportionStatistic"),  # type: ignore[arg-type]
    ("NaN n", lambda: ProportionStatistic(nan, 0), "ProportionStatistic"),  # type: ignore[arg-type]
    ("successes above n", lambda: ProportionStatistic(3, 4), "ProportionStatistic"),
    ("chi-square negative count", lambda: srm_chi_square([-5, 105], [1, 1]), "SRM counts"),
    ("chi-square NaN count", lambda: srm_chi_square([nan, 100], [1, 1]), "SRM counts"),
    ("Bayes factor negative count", lambda: srm_log_bayes_factor([-1, 10], [1, 1]), "SRM counts"),
    ("Bayes factor NaN count", lambda: srm_log_bayes_factor([nan, 10], [1, 1]), "SRM counts"),
    ("Bayes factor count/weight mismatch", lambda: srm_log_bayes_factor([1, 2, 3], [1, 1]), "do not match"),
    ("SRM test NaN count", lambda: srm_test([nan, 10], [1, 1]), "SRM counts"),
    ("Holm with a NaN", lambda: holm([0.001, nan, 0.04]), r"p_values\[1\]"),
    ("Bonferroni with a NaN", lambda: bonferroni([nan, 0.2]), r"p_values\[0\]"),
    ("adjusted with a p above 1", lambda: adjust_p_values([0.01, 1.5]), r"p_values\[1\]"),
    ("z-test negative min_expected", lambda: two_proportion_z_test(ProportionStatistic(10, 1), ProportionStatistic(10, 2), min_expected=-1),
     "min_expected"),
]


@pytest.mark.parametrize(("case", "call", "message"), MISUSE, ids=[c[0] for c in MISUSE])
def test_misuse_raises_a_typed_error_naming_the_argument(case: str, call: Callable[[], Any], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        call()


ACCEPTED: list[tuple[str, Callable[[], Any]]] = [
    # rounding may leave sum_squares a hair below sum²/n for constant values: not misuse
    ("constant values with rounding", lambda: SampleMeanStatistic.from_values([0.7] * 5).summary()),
    ("empty arm summary", lambda: ArmSummary(0, nan, nan)),
    # what cancellation in streamed replace() leaves of an all-zero metric: a residue, not misuse
    ("rounding residue of streamed replacements", lambda: SampleMeanStatistic(1000, 1e-12, -1e-12).summary()),
    ("one-unit summary", lambda: SampleMeanStatistic(1, 2.0, 4.0).summary()),
    ("difference of statistics", lambda: SampleMeanStatistic.from_values([1.0, 2.5, 4.0]) - SampleMeanStatistic.from_values([2.5])),
]


@pytest.mark.parametrize(("case", "call"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_valid_input_near_the_edges_is_accepted(case: str, call: Callable[[], Any]) -> None:
    call()


def test_constant_values_have_zero_variance_not_a_negative_one() -> None:
    st = SampleMeanStatistic.from_values([0.7] * 5)
    assert st.sum_squares - st.sum * st.sum / st.n < 0  # rounding: what the clamp is for
    assert st.summary().variance == 0.0


@pytest.mark.parametrize(
    ("control", "treatment", "reason"),
    [
        ((1, 1), (1000, 0), Reason.INSUFFICIENT_SAMPLE),  # p would be 1e-219
        ((20, 1), (20, 0), Reason.INSUFFICIENT_SAMPLE),
        ((100, 0), (100, 0), Reason.ZERO_VARIANCE),
        ((1000, 60), (1000, 90), Reason.OK),
    ],
)
def test_fixed_horizon_z_test_needs_enough_expected_units(control: tuple[int, int], treatment: tuple[int, int], reason: Reason) -> None:
    res = fixed_horizon_test(ProportionStatistic(*control), ProportionStatistic(*treatment))
    assert res.reason == reason
    if reason == Reason.OK:
        assert 0.0 < res.p_value < 1.0
    else:
        assert res.p_value is None or math.isnan(res.p_value) or res.p_value == 1.0


def test_a_degenerate_look_does_not_pin_the_running_relative_interval() -> None:
    """A low-rate metric: the treatment has no event at the first look (relative
    estimate −1 with zero standard error: the point [−1, −1]); later looks must still
    narrow the running interval around the truth, not stay at [−1, −1]."""
    looks = [((200, 5), (200, 0)), ((4000, 200), (4000, 190)), ((8000, 400), (8000, 385))]
    state = SequentialState()
    results = []
    for c, t in looks:
        r = sequential_test(ProportionStatistic(*c).summary(), ProportionStatistic(*t).summary(), rho=0.05, min_samples_per_arm=100)
        results.append(r)
        state = state.update(r)
    assert results[0].relative is not None and results[0].relative.standard_error == 0.0  # the degenerate look
    last = results[-1].relative
    assert last is not None
    assert state.relative_interval.low < -0.0375 < state.relative_interval.high  # the observed 385/400 − 1
    assert state.relative_interval.low >= last.interval.low - 1e-12
    assert state.relative_interval.width > 0
    assert state.looks == 3


def test_a_look_with_a_zero_control_mean_leaves_the_relative_interval_alone() -> None:
    state = SequentialState()
    zero = sequential_test(ArmSummary(500, 0.0, 0.0), ArmSummary(500, 0.02, 0.0196), rho=0.05, min_samples_per_arm=100)
    assert zero.ok and zero.relative is None
    state = state.update(zero)
    assert math.isinf(state.relative_interval.low) and math.isinf(state.relative_interval.high)
