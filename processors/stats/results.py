"""Typed results of the statistical tests.

A test never raises on degenerate data: its result carries a :class:`Reason` and
no inference (``p_value`` 1, an unbounded interval), so a stream keeps flowing and a
dashboard can say *why* there is no answer yet.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Reason",
    "Interval",
    "UNBOUNDED",
    "DifferenceEstimate",
    "SequentialResult",
    "FixedHorizonResult",
    "GuardrailStatus",
    "GuardrailResult",
    "SrmResult",
]


class Reason(StrEnum):
    """Why a result holds an inference, or why it does not."""

    OK = "ok"
    EMPTY_ARM = "empty_arm"  # an arm has no units
    INSUFFICIENT_SAMPLE = "insufficient_sample"  # fewer units than the minimum per arm
    ZERO_VARIANCE = "zero_variance"  # both arms constant: no standard error
    ZERO_CONTROL_MEAN = "zero_control_mean"  # a relative difference needs a non-zero control mean
    NON_FINITE = "non_finite"  # a NaN or infinity in the input
    NO_TRAFFIC = "no_traffic"  # SRM: no unit assigned yet
    UNEXPECTED_ARM = "unexpected_arm"  # SRM: units in an arm whose weight is 0


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval ``[low, high]`` (possibly unbounded)."""

    low: float = -math.inf
    high: float = math.inf

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        """``high - low`` (infinite when unbounded)."""
        return self.high - self.low

    def intersect(self, other: "Interval") -> "Interval":
        """The running intersection of two intervals of a confidence sequence.

        Intersecting a CS's intervals keeps its time-uniform coverage (Howard et al.
        2021, §1: any intersection of the intervals of a (1-α)-CS is again a (1-α)-CS).
        An empty intersection (possible only for an asymptotic CS that is off) keeps
        ``other``, the newest interval.
        """
        low, high = max(self.low, other.low), min(self.high, other.high)
        return Interval(low, high) if low <= high else other


UNBOUNDED = Interval()


@dataclass(frozen=True, slots=True)
class DifferenceEstimate:
    """A difference between treatment and control on one scale (absolute or relative).

    Attributes:
        estimate: the point estimate (treatment - control, or treatment/control - 1).
        standard_error: its estimated standard error.
        interval: the confidence interval (or confidence-sequence interval).
        z: ``(estimate - null) / standard_error``.
    """

    estimate: float
    standard_error: float
    interval: Interval
    z: float


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """One look of the always-valid (mSPRT / asymptotic confidence sequence) test.

    Attributes:
        reason: :attr:`Reason.OK` or why there is no inference.
        p_value: ``min(1, 1 / Λ_t)`` at this look. Keep the running minimum over looks
            with :class:`agentgym.processors.stats.sequential.SequentialState` (the always-valid
            p-value of Johari et al. 2022 is that minimum).
        log_likelihood_ratio: ``log Λ_t``, the mixture likelihood ratio against the null.
        absolute: the difference of means with its confidence-sequence interval.
        relative: the relative difference ``mean_t / mean_c - 1`` (delta method).
        n_control, n_treatment: units per arm.
        alpha: the level of the intervals.
        rho: the mixing parameter (per unit, dimensionless).
    """

    reason: Reason
    p_value: float = 1.0
    log_likelihood_ratio: float = 0.0
    absolute: DifferenceEstimate | None = None
    relative: DifferenceEstimate | None = None
    n_control: int = 0
    n_treatment: int = 0
    alpha: float = 0.05
    rho: float = math.nan

    @property
    def ok(self) -> bool:
        """Whether the result holds an inference."""
        return self.reason is Reason.OK

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (infinities as None)."""
        return _clean(asdict(self))


@dataclass(frozen=True, slots=True)
class FixedHorizonResult:
    """A classical (fixed-sample) test: valid only at one look planned in advance.

    Attributes:
        reason: :attr:`Reason.OK` or why there is no inference.
        p_value: two-sided p-value.
        absolute: the difference with its (1-α) confidence interval.
        statistic: the z or Welch t statistic.
        df: Welch-Satterthwaite degrees of freedom (inf for a z-test).
        test: ``"welch_t"`` or ``"two_proportion_z"``.
    """

    reason: Reason
    p_value: float = 1.0
    absolute: DifferenceEstimate | None = None
    statistic: float = 0.0
    df: float = math.inf
    test: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


class GuardrailStatus(StrEnum):
    """The verdict of a guardrail's two one-sided always-valid tests."""

    HOLDS = "holds"  # non-inferiority shown: degradation below the limit
    BREACHED = "breached"  # degradation above the limit shown
    INCONCLUSIVE = "inconclusive"
    INSUFFICIENT = "insufficient"  # no inference (see reason)


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """A guardrail metric tested for non-inferiority with a relative margin.

    Attributes:
        status: the verdict at level ``alpha``.
        reason: why there is no inference, when ``status`` is INSUFFICIENT.
        degradation: relative degradation estimate (positive: worse), its interval and z.
        limit: the largest tolerated relative degradation (the margin).
        p_value_holds: always-valid p-value of H0 "degradation >= limit" (small: holds).
        p_value_breached: always-valid p-value of H0 "degradation <= limit" (small: breached).
    """

    status: GuardrailStatus
    reason: Reason
    limit: float
    degradation: DifferenceEstimate | None = None
    p_value_holds: float = 1.0
    p_value_breached: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Sample-ratio-mismatch check: units per arm against the configured weights.

    Attributes:
        reason: :attr:`Reason.OK`, NO_TRAFFIC, or UNEXPECTED_ARM (units where weight is 0).
        chi_square: Pearson's statistic of a fixed-horizon goodness-of-fit test.
        chi_square_p_value: its p-value (valid at one planned look only).
        log_bayes_factor: log of the Dirichlet-multinomial Bayes factor against the
            configured ratio (Lindon & Malek 2022).
        p_value: the always-valid p-value, ``min(1, 1/BF)`` kept as a running minimum.
        mismatch: whether ``p_value <= alpha``.
        counts: units per arm, in the order of the weights.
        expected: the expected share of each arm.
    """

    reason: Reason
    chi_square: float = 0.0
    chi_square_p_value: float = 1.0
    log_bayes_factor: float = 0.0
    p_value: float = 1.0
    mismatch: bool = False
    counts: tuple[int, ...] = field(default_factory=tuple)
    expected: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


def _clean(value: Any) -> Any:
    """Infinities and NaN to None, enums to their values, tuples to lists: JSON-ready."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
