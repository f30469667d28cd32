r"""Prediction-powered estimates of an arm's mean from a labeller and a random audit sample.

A labeller (heuristic rules, an online model, an LLM judge) gives every unit a label
``f`` (its prediction of the outcome); a random *audit sample* of the units also gets
the gold label ``y`` from a human. The labeller's mean alone estimates E[f], not E[y];
when the labeller errs differently per arm, a test on labels tests the labeller.

The rectified estimator of prediction-powered inference (Angelopoulos, Bates,
Fannjiang, Jordan & Zrnic 2023, "Prediction-powered inference", *Science* 382;
arXiv:2301.09633, "PPI" below; the mean estimator of their §"Mean estimation",
θ̂^PP = (1/N)·Σ f(X̃_i) − (1/n)·Σ (f(X_i) − Y_i)) is, per arm::

    θ̂ = f̄_N + Δ̄_m        f̄_N: the labels' mean over all N units of the arm
                            Δ̄_m: the mean of Δ = y − f over the m audited units

Unbiased for E[y] whatever the labeller does, because the audit sample is random:
E[Δ̄_m] = E[y] − E[f] (PPI, the rectifier). Here the audited units are *among* the N
(PPI's labelled and unlabelled sets are disjoint); with the audit a Bernoulli(π) sample
chosen by a hash of the unit (independent of the unit's outcome), conditionally on the
sample sizes::

    V̂ = var(f)/N + var(Δ)/m + 2·cov(f, Δ)/N                                  (1)

(PPI's variance σ̂²_f/N + σ̂²_Δ/n, plus the covariance of f̄_N and Δ̄_m that the
overlap adds: Cov(f̄_N, Δ̄_m) = (1/(N·m))·Σ_{i∈audit} Cov(f_i, Δ_i) = cov(f, Δ)/N).
var(f) is estimated over all N units, var(Δ) and cov(f, Δ) over the audit sample.

Continuous monitoring. θ̂ is asymptotically linear: with A_i the audit indicator and
π its rate, θ̂ − θ = (1/N)·Σ ψ_i + o_P(N^{-1/2}) with the influence values

    ψ_i = f_i − E f + (A_i/π)·(Δ_i − E Δ),   Var(ψ) = var(f) + var(Δ)/π + 2·cov(f, Δ)

(the augmented-IPW form of PPI under Bernoulli sampling: Zrnic & Candès 2024, "Active
statistical inference", ICML, its estimator with labelling indicators ξ_i and
probabilities π_i, here π_i = π; the ratio m/(Nπ) → 1 replaces 1/π by
N/m, which gives (1)). The units' ψ_i are i.i.d., so the asymptotic confidence sequences
of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023, "Time-uniform central limit
theory and asymptotic confidence sequences", *Annals of Statistics*; arXiv:2103.06476,
Theorem 2.2 and §3.2 for randomised experiments) apply to the difference of two arms'
θ̂ with the plug-in variance V̂_t + V̂_c, exactly as they apply to the plain difference of
means in :mod:`agentgym.processors.stats.sequential` (WS's asymptotic CS needs only
i.i.d. terms with finite variance and a consistent variance estimate; it applies to any
asymptotically linear estimator, their §3). Anytime-valid versions of PPI built this way
are in the literature (Zrnic & Candès discuss the sequential setting of active
inference); this derivation does not depend on them. So :func:`ppi_summary` returns an
:class:`ArmSummary` whose per-unit variance is N·V̂ (σ̂²_ψ), and the engine's
:func:`~agentgym.processors.stats.sequential.sequential_test` runs on it unchanged.

Caveats: validity is asymptotic in the *audit* sample too (var(Δ) is a plug-in), so no
inference before ``min_audit`` audited units per arm; with Δ = y − f, σ²_ψ = var(y) +
var(Δ)·(1/π − 1), so the estimate beats a gold-only one on the same audit sample
(variance var(y)/π per unit) exactly when var(Δ) < var(y), i.e. when the labeller is
better than no labeller; PPI++'s power tuning (Angelopoulos, Duchi & Zrnic 2023,
arXiv:2311.01453) would guard against a worse one and is not implemented. The audit sample
must be random: feedback that users chose to give is not one.

Sections and equation numbers refer to the arXiv versions named above; they could not
be re-read against the papers while this was written, so the tests check the formulas
against a direct computation on the raw values and by simulation (type-I error and
coverage under 30 looks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from agentgym.processors.stats.exceptions import InvalidParameterError
from agentgym.processors.stats.results import Reason
from agentgym.processors.stats.statistics import ArmSummary

ArrayOrFloat = TypeVar("ArrayOrFloat", float, np.ndarray)

__all__ = ["rectified_mean_and_variance", "PredictionPoweredStatistic", "PpiEstimate", "ppi_estimate", "ppi_summary", "gold_summary", "label_summary"]


@dataclass(frozen=True, slots=True)
class PredictionPoweredStatistic:
    """One arm's labels over all units and (label, gold) pairs over its audit sample.

    The sufficient statistic of the rectified estimator (:func:`ppi_estimate`);
    statistics of disjoint sets of units merge exactly with ``+``.

    Attributes:
        n: units with a label (the audited ones included).
        sum_label, sum_label_squares: sum and sum of squares of the labels ``f``.
        m: audited units (a label and a gold label).
        sum_audit_label, sum_audit_label_squares: the same over the audited units.
        sum_gold, sum_gold_squares: sum and sum of squares of the gold labels ``y``.
        sum_label_gold: sum of ``f·y`` over the audited units.
    """

    n: int = 0
    sum_label: float = 0.0
    sum_label_squares: float = 0.0
    m: int = 0
    sum_audit_label: float = 0.0
    sum_audit_label_squares: float = 0.0
    sum_gold: float = 0.0
    sum_gold_squares: float = 0.0
    sum_label_gold: float = 0.0

    def __post_init__(self) -> None:
        if not (self.n >= 0 and 0 <= self.m):
            raise InvalidParameterError(f"PredictionPoweredStatistic needs n >= 0 and m >= 0, got n={self.n}, m={self.m}")
        if self.m > self.n:
            raise InvalidParameterError(
                f"PredictionPoweredStatistic.m={self.m} audited units exceed the n={self.n} labelled units (the audit sample is among them)")

    def __add__(self, other: "PredictionPoweredStatistic") -> "PredictionPoweredStatistic":
        if not isinstance(other, PredictionPoweredStatistic):
            return NotImplemented
        return PredictionPoweredStatistic(
            self.n + other.n, self.sum_label + other.sum_label, self.sum_label_squares + other.sum_label_squares,
            self.m + other.m, self.sum_audit_label + other.sum_audit_label,
            self.sum_audit_label_squares + other.sum_audit_label_squares, self.sum_gold + other.sum_gold,
            self.sum_gold_squares + other.sum_gold_squares, self.sum_label_gold + other.sum_label_gold,
        )

    def add(self, label: float, gold: float | None = None) -> "PredictionPoweredStatistic":
        """This statistic with one more unit: its ``label``, and its ``gold`` label if it is audited."""
        f = float(label)
        if gold is None:
            return self + PredictionPoweredStatistic(1, f, f * f)
        y = float(gold)
        return self + PredictionPoweredStatistic(1, f, f * f, 1, f, f * f, y, y * y, f * y)

    @classmethod
    def from_values(cls, labels: Iterable[float], golds: Iterable[float | None]) -> "PredictionPoweredStatistic":
        """The statistic of per-unit labels and gold labels (None: the unit is not audited)."""
        st = cls()
        for f, y in zip(labels, golds, strict=True):
            st = st.add(f, y)
        return st


def _variance(n: int, s: float, ss: float) -> float:
    """Unbiased sample variance from count, sum and sum of squares (NaN below two)."""
    if n < 2:
        return math.nan
    return max((ss - s * s / n) / (n - 1), 0.0)


@dataclass(frozen=True, slots=True)
class PpiEstimate:
    """One arm's prediction-powered estimate (eq. (1) of the module docstring).

    Attributes:
        reason: ``ok``, or why there is no estimate (``empty_arm``, ``insufficient_sample``:
            fewer audited units than the minimum, ``non_finite``).
        n, m: units labelled, units audited.
        label_mean: f̄_N, the labeller's mean over all units (the plain estimate).
        correction: Δ̄_m, the mean of gold − label over the audit sample.
        estimate: θ̂ = label_mean + correction.
        variance: V̂, the estimated variance of ``estimate`` (not per unit).
        gold_mean: ȳ_m, the gold labels' mean over the audit sample (a gold-only estimate).
    """

    reason: Reason
    n: int = 0
    m: int = 0
    label_mean: float = math.nan
    correction: float = math.nan
    estimate: float = math.nan
    variance: float = math.nan
    gold_mean: float = math.nan

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK

    def summary(self) -> ArmSummary:
        """The estimate as an arm summary for the engine's tests: (N, θ̂, N·V̂), N·V̂ = σ̂²_ψ.

        The tests take ``variance / n`` as the mean's variance, which gives back V̂; the
        boundary's time is N, the units whose influence values θ̂ averages.
        """
        if not self.ok:
            return ArmSummary(self.n, math.nan, math.nan)
        return ArmSummary(self.n, self.estimate, self.n * self.variance)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (NaN as None)."""
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {"reason": self.reason.value, "n": self.n, "m": self.m, "label_mean": num(self.label_mean),
                "correction": num(self.correction), "estimate": num(self.estimate), "variance": num(self.variance),
                "gold_mean": num(self.gold_mean)}


def rectified_mean_and_variance(
    n: ArrayOrFloat, sum_label: ArrayOrFloat, sum_label_squares: ArrayOrFloat, m: ArrayOrFloat,
    sum_audit_label: ArrayOrFloat, sum_audit_label_squares: ArrayOrFloat, sum_gold: ArrayOrFloat,
    sum_gold_squares: ArrayOrFloat, sum_label_gold: ArrayOrFloat,
) -> tuple[ArrayOrFloat, ArrayOrFloat]:
    """θ̂ = f̄_N + Δ̄_m and V̂ of eq. (1) from the sums of :class:`PredictionPoweredStatistic`.

    Works elementwise on NumPy arrays (the simulations in ``ops/bench/ppi.py`` and the
    tests use it); needs n >= 2 and m >= 2. V̂ is not clamped here.
    """
    sum_d = sum_gold - sum_audit_label  # Σ Δ over the audit sample, Δ = y − f
    sum_dd = sum_gold_squares - 2.0 * sum_label_gold + sum_audit_label_squares  # Σ Δ²
    var_f = (sum_label_squares - sum_label * sum_label / n) / (n - 1)  # over all N units
    var_d = (sum_dd - sum_d * sum_d / m) / (m - 1)  # over the audit sample
    # cov(f, Δ) over the audit sample: Σ fΔ = Σ fy − Σ f²
    cov_fd = (sum_label_gold - sum_audit_label_squares - sum_audit_label * sum_d / m) / (m - 1)
    estimate = sum_label / n + sum_d / m  # PPI's rectified mean θ̂^PP
    variance = var_f / n + var_d / m + 2.0 * cov_fd / n  # eq. (1)
    return estimate, variance  # type: ignore[return-value]


def ppi_estimate(stat: PredictionPoweredStatistic, *, min_audit: int = 30) -> PpiEstimate:
    """The rectified estimate of the arm's mean gold label and its variance (PPI; eq. (1) above).

    Args:
        stat: the arm's labels and audit pairs.
        min_audit: no estimate below this many audited units (>= 2; the plug-in var(Δ)
            needs a burn-in, like the engine's ``min_samples_per_arm``).
    """
    if min_audit < 2:
        raise InvalidParameterError(f"min_audit must be >= 2, got {min_audit}")
    n, m = stat.n, stat.m
    if n == 0:
        return PpiEstimate(Reason.EMPTY_ARM, n, m)
    label_mean = stat.sum_label / n
    if m < min_audit:
        return PpiEstimate(Reason.INSUFFICIENT_SAMPLE, n, m, label_mean)
    estimate, variance = rectified_mean_and_variance(
        n, stat.sum_label, stat.sum_label_squares, m, stat.sum_audit_label, stat.sum_audit_label_squares,
        stat.sum_gold, stat.sum_gold_squares, stat.sum_label_gold)
    estimate, variance = float(estimate), float(variance)
    if not all(math.isfinite(x) for x in (estimate, variance)):
        return PpiEstimate(Reason.NON_FINITE, n, m, label_mean)
    # var(f + Δ) = var(y) >= 0 bounds (1) below by 0 for exact moments; estimated on
    # different samples it can dip below by rounding or noise: clamp
    return PpiEstimate(Reason.OK, n, m, label_mean, estimate - label_mean, estimate, max(variance, 0.0), stat.sum_gold / m)


def ppi_summary(stat: PredictionPoweredStatistic, *, min_audit: int = 30) -> ArmSummary:
    """:meth:`PpiEstimate.summary` of :func:`ppi_estimate`: what the sequential test takes."""
    return ppi_estimate(stat, min_audit=min_audit).summary()


def label_summary(stat: PredictionPoweredStatistic) -> ArmSummary:
    """The plain labelled estimate: the labels' mean over all units and their variance (no correction)."""
    if stat.n == 0:
        return ArmSummary(0, math.nan, math.nan)
    return ArmSummary(stat.n, stat.sum_label / stat.n, _variance(stat.n, stat.sum_label, stat.sum_label_squares))


def gold_summary(stat: PredictionPoweredStatistic) -> ArmSummary:
    """The gold-only estimate: the gold labels' mean over the audit sample alone."""
    if stat.m == 0:
        return ArmSummary(0, math.nan, math.nan)
    return ArmSummary(stat.m, stat.sum_gold / stat.m, _variance(stat.m, stat.sum_gold, stat.sum_gold_squares))
