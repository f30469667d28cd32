"""Sufficient statistics: a table of cases, and the property that merging equals concatenating."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentgym.processors.stats import (
    InvalidParameterError,
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    capped,
)


@pytest.mark.parametrize(
    ("values", "cap", "n", "mean", "variance"),
    [
        ([], None, 0, math.nan, math.nan),
        ([3.0], None, 1, 3.0, math.nan),
        ([1.0, 2.0, 3.0, 4.0], None, 4, 2.5, 5.0 / 3.0),
        ([1.0, 2.0, 3.0, 400.0], 4.0, 4, 2.5, 5.0 / 3.0),  # capped: 400 counts as 4
        ([5.0, 5.0, 5.0], None, 3, 5.0, 0.0),
    ],
)
def test_sample_mean_table(values: list[float], cap: float | None, n: int, mean: float, variance: float) -> None:
    s = SampleMeanStatistic.from_values(values, cap=cap).summary()
    assert s.n == n
    assert (math.isnan(mean) and math.isnan(s.mean)) or s.mean == pytest.approx(mean)
    assert (math.isnan(variance) and math.isnan(s.variance)) or s.variance == pytest.approx(variance)


@pytest.mark.parametrize(
    ("outcomes", "n", "p", "variance"),
    [([], 0, math.nan, math.nan), ([1, 1, 0, 0], 4, 0.5, 0.25), ([True] * 3, 3, 1.0, 0.0), ([0, 0, 0, 1], 4, 0.25, 0.1875)],
)
def test_proportion_table(outcomes: list[int], n: int, p: float, variance: float) -> None:
    s = ProportionStatistic.from_outcomes(outcomes).summary()
    assert s.n == n
    assert (math.isnan(p) and math.isnan(s.mean)) or s.mean == pytest.approx(p)
    assert (math.isnan(variance) and math.isnan(s.variance)) or s.variance == pytest.approx(variance)


def test_capped() -> None:
    assert capped(5.0, None) == 5.0
    assert capped(5.0, 3.0) == 3.0
    assert capped(-5.0, 3.0) == -5.0


def test_invalid_counts_raise() -> None:
    with pytest.raises(InvalidParameterError):
        ProportionStatistic(2, 3)
    with pytest.raises(InvalidParameterError):
        SampleMeanStatistic(-1)


@pytest.mark.parametrize("seed", range(5))
def test_merging_equals_concatenating(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.lognormal(3.0, 1.2, size=1000)
    x = y * 0.5 + rng.normal(0, 5, size=1000)
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=4, replace=False))
    parts = np.split(np.arange(1000), cuts)
    cap = float(np.quantile(y, 0.99))

    whole = SampleMeanStatistic.from_values(y, cap=cap)
    merged = sum((SampleMeanStatistic.from_values(y[p], cap=cap) for p in parts), SampleMeanStatistic())
    assert merged.n == whole.n
    assert merged.sum == pytest.approx(whole.sum, rel=1e-12)
    assert merged.sum_squares == pytest.approx(whole.sum_squares, rel=1e-12)
    assert merged.summary().variance == pytest.approx(np.var(np.minimum(y, cap), ddof=1), rel=1e-9)

    b = y > np.median(y)
    whole_p = ProportionStatistic.from_outcomes(b)
    merged_p = sum((ProportionStatistic.from_outcomes(b[p]) for p in parts), ProportionStatistic())
    assert merged_p == whole_p

    whole_r = RegressionAdjustedStatistic.from_pairs(y, x)
    merged_r = sum((RegressionAdjustedStatistic.from_pairs(y[p], x[p]) for p in parts), RegressionAdjustedStatistic())
    assert merged_r.n == whole_r.n
    assert merged_r.sum_xy == pytest.approx(whole_r.sum_xy, rel=1e-12)
    assert merged_r.covariance() == pytest.approx(np.cov(y, x, ddof=1)[0, 1], rel=1e-9)


def test_add_is_one_unit_and_sub_undoes_merge() -> None:
    a = SampleMeanStatistic.from_values([1.0, 2.0])
    b = SampleMeanStatistic.from_values([10.0])
    assert a.add(10.0) == a + b
    assert (a + b) - b == a
    assert ProportionStatistic(3, 1) - ProportionStatistic(1, 1) == ProportionStatistic(2, 0)
    # a unit's mean changing from 2 to 5 is the same as having observed 5
    assert a.replace(2.0, 5.0) == SampleMeanStatistic.from_values([1.0, 5.0])


def test_adding_different_kinds_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        ProportionStatistic(1, 1) + SampleMeanStatistic(1, 1.0, 1.0)  # type: ignore[operator]
