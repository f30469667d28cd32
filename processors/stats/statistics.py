"""Mergeable sufficient statistics of one arm (variant) of an experiment.

Each statistic is a small frozen dataclass with ``__add__``: statistics of disjoint
sets of units merge exactly (partition partials, worker partials, time buckets), so
``stat(a) + stat(b) == stat(a + b)`` up to floating-point rounding.

* :class:`ProportionStatistic` — ``n`` units, ``successes`` of them with outcome 1.
* :class:`SampleMeanStatistic` — ``n`` units, ``sum`` and ``sum_squares`` of a
  per-unit value, optionally capped (winsorised) for heavy-tailed metrics.
* :class:`RegressionAdjustedStatistic` — the above plus a pre-period covariate's
  ``sum``, ``sum_squares`` and cross-product, for CUPED (:mod:`agentgym.processors.stats.cuped`).

Every statistic reduces to an :class:`ArmSummary` (``n``, mean, per-unit variance),
which is what the tests consume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from agentgym.processors.stats.exceptions import InvalidParameterError

__all__ = [
    "ArmSummary",
    "ProportionStatistic",
    "SampleMeanStatistic",
    "RegressionAdjustedStatistic",
    "Statistic",
    "capped",
]


def capped(value: float, cap: float | None) -> float:
    """``value`` winsorised at ``cap`` (values above ``cap`` count as ``cap``; None: unchanged).

    Capping bounds the influence of a heavy right tail (latency, cost) on the mean and
    its variance; it changes the estimand to the mean of the capped metric, the usual
    trade (Kohavi, Tang & Xu 2020, *Trustworthy Online Controlled Experiments*, ch. 22).
    """
    if cap is not None and value > cap:
        return float(cap)
    return float(value)


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """What a test needs of one arm: units, the mean of the per-unit value, its variance.

    Attributes:
        n: number of units.
        mean: mean of the per-unit values.
        variance: per-unit variance (population variance for a proportion, the
            unbiased sample variance for a mean); the variance of ``mean`` is
            ``variance / n``.
    """

    n: int
    mean: float
    variance: float

    def __post_init__(self) -> None:
        # NaN stands for "not known yet" (an empty arm, one unit); a negative count or
        # variance cannot come from data
        if not self.n >= 0:
            raise InvalidParameterError(f"ArmSummary.n must be >= 0, got {self.n}")
        if self.variance < 0 or self.variance == math.inf:
            raise InvalidParameterError(f"ArmSummary.variance must be >= 0 and finite (or NaN: unknown), got {self.variance}")


@dataclass(frozen=True, slots=True)
class ProportionStatistic:
    """Successes among units: the sufficient statistic of a Bernoulli metric.

    Attributes:
        n: units observed (default 0).
        successes: units whose outcome is a success (default 0).
    """

    n: int = 0
    successes: int = 0

    def __post_init__(self) -> None:
        # written so that NaN fails: every comparison with NaN is false
        if not (math.isfinite(self.n) and 0 <= self.successes <= self.n):
            raise InvalidParameterError(
                f"ProportionStatistic needs finite 0 <= successes <= n, got n={self.n}, successes={self.successes}")

    def __add__(self, other: "ProportionStatistic") -> "ProportionStatistic":
        if not isinstance(other, ProportionStatistic):
            return NotImplemented
        return ProportionStatistic(self.n + other.n, self.successes + other.successes)

    def __sub__(self, other: "ProportionStatistic") -> "ProportionStatistic":
        if not isinstance(other, ProportionStatistic):
            return NotImplemented
        return ProportionStatistic(self.n - other.n, self.successes - other.successes)

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[bool | int]) -> "ProportionStatistic":
        """The statistic of per-unit outcomes (truthy: success)."""
        n = s = 0
        for o in outcomes:
            n += 1
            s += 1 if o else 0
        return cls(n, s)

    def add(self, success: bool | int) -> "ProportionStatistic":
        """This statistic with one more unit."""
        return ProportionStatistic(self.n + 1, self.successes + (1 if success else 0))

    @property
    def sum(self) -> float:
        """Sum of the 0/1 values (= successes), as snapshots store it."""
        return float(self.successes)

    @property
    def sum_squares(self) -> float:
        """Sum of squared 0/1 values (= successes)."""
        return float(self.successes)

    @property
    def mean(self) -> float:
        """The success rate (NaN for an empty arm)."""
        return self.successes / self.n if self.n else math.nan

    def summary(self) -> ArmSummary:
        """Mean and Bernoulli variance p(1-p) (NaN for an empty arm)."""
        if self.n == 0:
            return ArmSummary(0, math.nan, math.nan)
        p = self.successes / self.n
        return ArmSummary(self.n, p, p * (1.0 - p))


@dataclass(frozen=True, slots=True)
class SampleMeanStatistic:
    """Count, sum and sum of squares of a per-unit value: the sufficient statistic of a mean.

    Values are capped when they are added (:func:`capped`); merged statistics must use
    the same cap. ``sum_squares - sum**2 / n`` loses precision only when the mean is
    ~1e7 times the standard deviation, far from latency, cost or ratings.

    Attributes:
        n: units (default 0).
        sum: sum of the per-unit values (default 0.0).
        sum_squares: sum of their squares (default 0.0).
    """

    n: int = 0
    sum: float = 0.0
    sum_squares: float = 0.0

    def __post_init__(self) -> None:
        if not self.n >= 0:
            raise InvalidParameterError(f"SampleMeanStatistic.n must be >= 0, got {self.n}")
        # Cauchy-Schwarz: sum²/n <= sum_squares for any real values. Allow the rounding of
        # streamed updates (replace() subtracts squares: cancellation leaves a small
        # deficit, relative 1e-6 or absolute 1e-9) but not a sum of squares no data can give
        if self.n and self.sum * self.sum / self.n - self.sum_squares > 1e-6 * max(abs(self.sum_squares), self.sum * self.sum / self.n) + 1e-9:
            raise InvalidParameterError(
                f"SampleMeanStatistic.sum_squares={self.sum_squares} is impossible for n={self.n}, sum={self.sum} "
                "(it must be at least sum**2 / n)")

    def __add__(self, other: "SampleMeanStatistic") -> "SampleMeanStatistic":
        if not isinstance(other, SampleMeanStatistic):
            return NotImplemented
        return SampleMeanStatistic(self.n + other.n, self.sum + other.sum, self.sum_squares + other.sum_squares)

    def __sub__(self, other: "SampleMeanStatistic") -> "SampleMeanStatistic":
        if not isinstance(other, SampleMeanStatistic):
            return NotImplemented
        return SampleMeanStatistic(self.n - other.n, self.sum - other.sum, self.sum_squares - other.sum_squares)

    @classmethod
    def from_values(cls, values: Iterable[float], cap: float | None = None) -> "SampleMeanStatistic":
        """The statistic of per-unit values, each capped at ``cap`` (None: uncapped)."""
        n, s, ss = 0, 0.0, 0.0
        for v in values:
            x = capped(v, cap)
            n += 1
            s += x
            ss += x * x
        return cls(n, s, ss)

    def add(self, value: float, cap: float | None = None) -> "SampleMeanStatistic":
        """This statistic with one more unit whose value is ``value`` (capped at ``cap``)."""
        x = capped(value, cap)
        return SampleMeanStatistic(self.n + 1, self.sum + x, self.sum_squares + x * x)

    def replace(self, old: float, new: float) -> "SampleMeanStatistic":
        """One unit's (already capped) value changes from ``old`` to ``new`` (a per-unit mean updated)."""
        return SampleMeanStatistic(self.n, self.sum - old + new, self.sum_squares - old * old + new * new)

    @property
    def mean(self) -> float:
        """Mean of the per-unit values (NaN for an empty arm)."""
        return self.sum / self.n if self.n else math.nan

    def summary(self) -> ArmSummary:
        """Mean and unbiased sample variance (variance NaN below two units)."""
        if self.n == 0:
            return ArmSummary(0, math.nan, math.nan)
        mean = self.sum / self.n
        if self.n < 2:
            return ArmSummary(self.n, mean, math.nan)
        var = (self.sum_squares - self.sum * mean) / (self.n - 1)
        return ArmSummary(self.n, mean, max(var, 0.0))  # only rounding can make it negative here (checked on construction)


@dataclass(frozen=True, slots=True)
class RegressionAdjustedStatistic:
    """A metric ``y`` and a pre-period covariate ``x`` per unit, for CUPED.

    Holds the moments CUPED needs (Deng, Xu, Kohavi & Walker 2013, §3.1): the
    means and variances of ``y`` and ``x`` and their covariance.

    Attributes:
        n: units.
        sum_y, sum_y_squares: sum and sum of squares of the metric (capped on add).
        sum_x, sum_x_squares: sum and sum of squares of the covariate.
        sum_xy: sum of the products.
    """

    n: int = 0
    sum_y: float = 0.0
    sum_y_squares: float = 0.0
    sum_x: float = 0.0
    sum_x_squares: float = 0.0
    sum_xy: float = 0.0

    def __post_init__(self) -> None:
        if self.n < 0:
            raise InvalidParameterError(f"RegressionAdjustedStatistic.n must be >= 0, got {self.n}")

    def __add__(self, other: "RegressionAdjustedStatistic") -> "RegressionAdjustedStatistic":
        if not isinstance(other, RegressionAdjustedStatistic):
            return NotImplemented
        return RegressionAdjustedStatistic(
            self.n + other.n, self.sum_y + other.sum_y, self.sum_y_squares + other.sum_y_squares,
            self.sum_x + other.sum_x, self.sum_x_squares + other.sum_x_squares, self.sum_xy + other.sum_xy,
        )

    @classmethod
    def from_pairs(cls, ys: Iterable[float], xs: Iterable[float], cap: float | None = None) -> "RegressionAdjustedStatistic":
        """The statistic of per-unit (metric, covariate) pairs; the metric is capped at ``cap``."""
        st = cls()
        for y, x in zip(ys, xs, strict=True):
            st = st.add(y, x, cap)
        return st

    def add(self, y: float, x: float, cap: float | None = None) -> "RegressionAdjustedStatistic":
        """This statistic with one more unit (metric ``y`` capped at ``cap``, covariate ``x``)."""
        y = capped(y, cap)
        x = float(x)
        return RegressionAdjustedStatistic(
            self.n + 1, self.sum_y + y, self.sum_y_squares + y * y,
            self.sum_x + x, self.sum_x_squares + x * x, self.sum_xy + x * y,
        )

    @property
    def metric(self) -> SampleMeanStatistic:
        """The metric alone (no adjustment)."""
        return SampleMeanStatistic(self.n, self.sum_y, self.sum_y_squares)

    @property
    def covariate(self) -> SampleMeanStatistic:
        """The covariate alone."""
        return SampleMeanStatistic(self.n, self.sum_x, self.sum_x_squares)

    def covariance(self) -> float:
        """Unbiased sample covariance of metric and covariate (NaN below two units)."""
        if self.n < 2:
            return math.nan
        return (self.sum_xy - self.sum_x * self.sum_y / self.n) / (self.n - 1)

    def summary(self) -> ArmSummary:
        """The unadjusted metric's summary."""
        return self.metric.summary()


Statistic = Union[ProportionStatistic, SampleMeanStatistic, RegressionAdjustedStatistic]
