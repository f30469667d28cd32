r"""Always-valid inference for the difference between two arms.

The test is the normal-mixture sequential probability ratio test (mSPRT) of Johari,
Pekelis & Walsh (2022, "Always valid inference: continuous monitoring of A/B tests",
*Operations Research* 70(3); arXiv:1512.04922, "JPW" below), applied to the
asymptotically normal difference-in-means estimator as the asymptotic confidence
sequences of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023, "Time-uniform
central limit theory and asymptotic confidence sequences", *Annals of Statistics*;
arXiv:2103.06476, "WS" below) do; its boundary is the two-sided normal-mixture
boundary of Howard, Ramdas, McAuliffe & Sekhon (2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", *Annals of Statistics* 49(2); arXiv:1810.08240,
"HRMS" below).

Notation (c: control, t: treatment)::

    θ̂ = m_t − m_c                       difference of the arms' means
    V̂ = v_t / n_t + v_c / n_c           its estimated variance (per-unit variances v)
    z = (θ̂ − θ₀) / √V̂                  the usual z statistic against the null θ₀
    t = n_c + n_t                         units so far ("time")

θ̂ is asymptotically the mean of t i.i.d. influence values whose variance is
σ² = t·V̂ (WS §3.2, randomised experiments), so the Gaussian likelihood ratio of
θ against θ₀, mixed over θ ~ N(θ₀, ρ²σ²), is in closed form

    Λ_t = (1 + tρ²)^(-1/2) · exp( tρ²/(1 + tρ²) · z²/2 )

(JPW, the normal-mixture mSPRT Λ_n = ∫ Π f_θ/f_θ₀ dH(θ) with H = N(θ₀, τ²) in
closed form, here with τ² = ρ²σ²; HRMS §3, the two-sided normal-mixture boundary,
with their s = z√t, v = t and their ρ equal to 1/ρ² here). ρ is dimensionless — effect sizes in units of the per-unit standard
deviation — so one value serves every metric, and it is fixed for an experiment's life.

* The always-valid p-value is p_t = min(1, 1/Λ_t), kept as a running minimum over
  looks (JPW §3.2, p_n = min(p_{n-1}, 1/Λ_n)); by Ville's inequality
  P(∃t: p_t ≤ α) ≤ α under the null.
* The confidence sequence is {θ₀ : Λ_t(θ₀) < 1/α}:

      θ̂ ± √V̂ · sqrt( (1 + tρ²)/(tρ²) · (2·log(1/α) + log(1 + tρ²)) )

  which is WS Theorem 2.2's Gaussian-mixture asymptotic CS
  μ̂_t ± σ̂_t·sqrt(2(tρ²+1)/(t²ρ²) · log(√(tρ²+1)/α)) with σ̂_t = √(t·V̂).
* The relative difference m_t/m_c − 1 uses the same boundary with the delta-method
  variance V̂_rel = v_t/(n_t m_c²) + m_t² v_c/(n_c m_c⁴) (Deng, Knoblich & Lu 2018,
  "Applying the delta method in metric analytics", KDD, §3, ratio of independent means).
* ρ: the boundary is tightest around t* units when tρ² = 2·log(1/α) + log(1 + 2·log(1/α))
  (the stationary point of the width in tρ², one Newton step from the exact fixed
  point; the same closed form as ``best_rho`` in Howard's ``confseq`` package, and
  WS's recommended ρ for a target time t*), which :func:`mixing_rho` returns.

One-sided tests (guardrails) mix over a half-normal instead (HRMS §3, the one-sided
normal mixture; confseq's ``OneSidedNormalMixture``):

    log Λ⁺_t = log Λ_t + log(2·Φ(z·sqrt(tρ²/(1 + tρ²))))

Validity is asymptotic (plug-in variances), so no inference is made before
``min_samples_per_arm`` units per arm.

Sections and theorem numbers refer to the arXiv versions named above; they could not
be re-read against the papers while this was written, so the tests check the
formulas themselves: against confseq 0.0.11 (the HRMS authors' implementation),
against numerical integration of the mixture likelihood ratio with scipy, and by
simulating the error rates under continuous monitoring.

The functions on arrays (:func:`log_mixture_likelihood_ratio`,
:func:`one_sided_log_mixture_likelihood_ratio`, :func:`radius_multiplier`) accept
NumPy arrays, which the simulations in the tests use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from scipy.special import log_ndtr

from agentgym.processors.stats.exceptions import InvalidParameterError
from agentgym.processors.stats.results import UNBOUNDED, DifferenceEstimate, Interval, Reason, SequentialResult
from agentgym.processors.stats.statistics import ArmSummary

__all__ = [
    "mixing_rho",
    "log_mixture_likelihood_ratio",
    "one_sided_log_mixture_likelihood_ratio",
    "radius_multiplier",
    "sequential_test",
    "one_sided_p_value",
    "SequentialState",
    "check_alpha",
]

ArrayOrFloat = TypeVar("ArrayOrFloat", float, np.ndarray)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` if it lies in (0, 1); raises InvalidParameterError otherwise."""
    if not 0.0 < alpha < 1.0:
        raise InvalidParameterError(f"{name} must be in (0, 1), got {alpha}")
    return float(alpha)


def mixing_rho(t_opt: float, alpha: float = 0.05) -> float:
    """The mixing parameter ρ whose confidence sequence is tightest near ``t_opt`` units.

    tρ² = 2·log(1/α) + log(1 + 2·log(1/α)) at t = t_opt: the width
    ((1+r)/r)·(2·log(1/α) + log(1+r)) is smallest where r = 2·log(1/α) + log(1+r),
    and this is that fixed point's first iterate (confseq's
    ``TwoSidedNormalMixture::best_rho`` with v_opt = t_opt, ρ_HRMS = 1/ρ²).

    Args:
        t_opt: units (both arms together) at which the interval should be narrowest (> 0).
        alpha: the level the width is optimised for, in (0, 1).
    """
    check_alpha(alpha)
    if not t_opt > 0:
        raise InvalidParameterError(f"t_opt must be > 0, got {t_opt}")
    two_log = 2.0 * math.log(1.0 / alpha)
    return math.sqrt((two_log + math.log1p(two_log)) / t_opt)


def log_mixture_likelihood_ratio(z: ArrayOrFloat, t: ArrayOrFloat, rho: float) -> ArrayOrFloat:
    """log Λ_t = −½·log(1 + tρ²) + tρ²/(1 + tρ²) · z²/2 (JPW's normal-mixture mSPRT; HRMS's two-sided normal mixture).

    Args:
        z: the z statistic(s) against the null.
        t: units so far (both arms).
        rho: the mixing parameter (> 0).
    """
    r = np.multiply(t, rho * rho)
    return -0.5 * np.log1p(r) + r / (1.0 + r) * np.square(z) / 2.0  # type: ignore[no-any-return]


def one_sided_log_mixture_likelihood_ratio(z: ArrayOrFloat, t: ArrayOrFloat, rho: float) -> ArrayOrFloat:
    """log Λ⁺_t for the alternative θ > θ₀: a half-normal mixture (HRMS, one-sided normal mixture).

    log Λ⁺_t = log Λ_t + log 2 + log Φ(z·sqrt(tρ²/(1 + tρ²))); confseq's
    ``OneSidedNormalMixture::log_superMG`` in the same variables.
    """
    r = np.multiply(t, rho * rho)
    return (  # type: ignore[no-any-return]
        log_mixture_likelihood_ratio(z, t, rho) + math.log(2.0) + log_ndtr(np.multiply(z, np.sqrt(r / (1.0 + r))))
    )


def radius_multiplier(t: ArrayOrFloat, rho: float, alpha: float) -> ArrayOrFloat:
    """The confidence-sequence half-width in standard errors: sqrt((1+tρ²)/(tρ²) · (2·log(1/α) + log(1+tρ²))).

    WS Theorem 2.2 (Gaussian-mixture asymptotic CS); the inversion of Λ_t(θ₀) < 1/α.
    """
    r = np.multiply(t, rho * rho)
    return np.sqrt((1.0 + r) / r * (2.0 * math.log(1.0 / alpha) + np.log1p(r)))  # type: ignore[no-any-return]


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _precheck(control: ArmSummary, treatment: ArmSummary, min_samples_per_arm: int) -> Reason | None:
    if control.n == 0 or treatment.n == 0:
        return Reason.EMPTY_ARM
    if min(control.n, treatment.n) < max(min_samples_per_arm, 2):
        return Reason.INSUFFICIENT_SAMPLE
    if not _finite(control.mean, treatment.mean, control.variance, treatment.variance):
        return Reason.NON_FINITE
    return None


def sequential_test(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    rho: float,
    alpha: float = 0.05,
    min_samples_per_arm: int = 100,
    null: float = 0.0,
) -> SequentialResult:
    """One look of the two-sided always-valid test of ``treatment − control == null``.

    Args:
        control, treatment: the arms' summaries (units, mean, per-unit variance).
        rho: the mixing parameter, fixed for the experiment's life (:func:`mixing_rho`).
        alpha: level of the confidence sequences, in (0, 1).
        min_samples_per_arm: no inference below this many units in either arm (the
            plug-in variance needs a burn-in; WS §2.3).
        null: the difference under the null hypothesis (default 0).

    Returns:
        The look's result; ``reason`` says why there is none for degenerate input.
    """
    check_alpha(alpha)
    if not rho > 0:
        raise InvalidParameterError(f"rho must be > 0, got {rho}")
    base = {"n_control": control.n, "n_treatment": treatment.n, "alpha": alpha, "rho": rho}
    reason = _precheck(control, treatment, min_samples_per_arm)
    if reason is not None:
        return SequentialResult(reason, **base)  # type: ignore[arg-type]
    var = treatment.variance / treatment.n + control.variance / control.n
    if var <= 0.0:
        return SequentialResult(Reason.ZERO_VARIANCE, **base)  # type: ignore[arg-type]
    t = control.n + treatment.n
    se = math.sqrt(var)
    diff = treatment.mean - control.mean
    z = (diff - null) / se
    log_lr = float(log_mixture_likelihood_ratio(z, t, rho))
    p = 1.0 if log_lr <= 0 else math.exp(-log_lr)
    mult = float(radius_multiplier(t, rho, alpha))
    absolute = DifferenceEstimate(diff, se, Interval(diff - mult * se, diff + mult * se), z)
    relative = None
    if control.mean != 0.0:
        # delta method for m_t/m_c - 1 with independent arms (Deng, Knoblich & Lu 2018, §3)
        mc, mt = control.mean, treatment.mean
        var_rel = treatment.variance / (treatment.n * mc * mc) + mt * mt * control.variance / (control.n * mc**4)
        rel = mt / mc - 1.0
        se_rel = math.sqrt(var_rel)
        relative = DifferenceEstimate(rel, se_rel, Interval(rel - mult * se_rel, rel + mult * se_rel),
                                      rel / se_rel if se_rel > 0 else 0.0)
    return SequentialResult(Reason.OK, p, log_lr, absolute, relative, **base)  # type: ignore[arg-type]


def one_sided_p_value(z: float, t: int, rho: float) -> float:
    """Always-valid p-value (one look) of H0: θ ≤ θ₀ against θ > θ₀, for ``z = (θ̂ − θ₀)/se``.

    ``min(1, 1/Λ⁺_t)`` with the half-normal mixture (HRMS); keep the running minimum.
    """
    log_lr = float(one_sided_log_mixture_likelihood_ratio(z, t, rho))
    return 1.0 if log_lr <= 0 else math.exp(-log_lr)


@dataclass(frozen=True, slots=True)
class SequentialState:
    """The always-valid summary across looks: running minimum p-value, running intersections.

    JPW §3.2 define the always-valid p-value as the running minimum of 1/Λ; the
    intervals of a confidence sequence may be intersected over time (HRMS §1), which
    keeps them consistent with that p-value: once 0 leaves the interval it stays out.

    Attributes:
        p_value: the smallest p-value seen so far (never rises).
        interval: running intersection of the absolute difference's intervals.
        relative_interval: running intersection of the relative difference's intervals.
        looks: looks with an inference so far.
    """

    p_value: float = 1.0
    interval: Interval = UNBOUNDED
    relative_interval: Interval = UNBOUNDED
    looks: int = 0

    def update(self, result: SequentialResult) -> "SequentialState":
        """The state after one more look (looks without an inference change nothing)."""
        if not result.ok or result.absolute is None:
            return self
        rel = self.relative_interval
        r = result.relative
        # a degenerate look (no relative estimate, or a zero or non-finite standard error:
        # e.g. an arm with no events yet gives the point [-1, -1]) says nothing about
        # the relative difference; intersecting it would pin every later interval to it
        if r is not None and math.isfinite(r.standard_error) and r.standard_error > 0 and math.isfinite(r.estimate):
            rel = rel.intersect(r.interval)
        return SequentialState(
            min(self.p_value, result.p_value), self.interval.intersect(result.absolute.interval), rel, self.looks + 1
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (infinite bounds as None)."""
        def bound(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "p_value": self.p_value, "looks": self.looks,
            "interval": [bound(self.interval.low), bound(self.interval.high)],
            "relative_interval": [bound(self.relative_interval.low), bound(self.relative_interval.high)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SequentialState":
        """The inverse of :meth:`to_dict` (None: a fresh state)."""
        if not data:
            return cls()

        def interval(pair: list[float | None] | None) -> Interval:
            lo, hi = pair or (None, None)
            return Interval(-math.inf if lo is None else lo, math.inf if hi is None else hi)

        return cls(float(data.get("p_value", 1.0)), interval(data.get("interval")),
                   interval(data.get("relative_interval")), int(data.get("looks", 0)))
