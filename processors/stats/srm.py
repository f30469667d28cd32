r"""Sample-ratio mismatch (SRM): are units split across arms as the weights say?

Two tests side by side:

* Pearson's χ² goodness-of-fit test — a fixed-horizon test, valid at one look.
* The sequential Dirichlet-multinomial Bayes factor of Lindon & Malek (2020,
  "Sequential testing of multinomial hypotheses with applications to detecting
  implementation errors and missing data in randomized experiments", arXiv:2011.03567;
  NeurIPS 2022 as "Anytime-valid inference for multinomial count data"), valid under
  continuous monitoring. With counts x over d arms, null shares θ₀ and the prior
  Dirichlet(α₀), α₀ = k·θ₀ (their §3, the conjugate Dirichlet mixture):

      BF(x) = B(α₀ + x) / B(α₀) / Π_i θ₀_i^{x_i},   log B(a) = Σ_i log Γ(a_i) − log Γ(Σ_i a_i)

  (the multinomial coefficients cancel). BF is a test martingale under the null, so
  p = min(1, 1/max_s BF_s) is an always-valid p-value (Ville's inequality). When the weights change mid-experiment the update is applied
  increment by increment with the weights in force for each increment
  (their posterior-predictive product form; ``savvi.Multinomial.update_odds``):

      log BF += log B(α₀ + x_new) − log B(α₀ + x_old) − Σ_i (x_new − x_old)_i·log θ₀_i

Section numbers are from memory of the arXiv version; the tests check the Bayes
factor against savvi 0.3.1's implementation and against numerical integration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.special import gammaln, xlogy

from agentgym.processors.stats.exceptions import InvalidParameterError
from agentgym.processors.stats.results import Reason, SrmResult
from agentgym.processors.stats.sequential import check_alpha

__all__ = ["srm_chi_square", "srm_log_bayes_factor", "SrmState", "srm_test"]


def _log_multivariate_beta(a: np.ndarray) -> float:
    return float(gammaln(a).sum() - gammaln(a.sum()))


def _shares(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size < 2 or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise InvalidParameterError(f"SRM weights must be >= 0, finite, at least two, not all 0; got {list(weights)}")
    return w / w.sum()


def _counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    x = np.asarray(counts, dtype=float)
    if not np.isfinite(x).all() or np.any(x < 0):
        raise InvalidParameterError(f"SRM counts must be finite and >= 0, got {x.tolist() if x.size <= 20 else 'an array with such values'}")
    return x


def srm_chi_square(counts: Sequence[int], weights: Sequence[float]) -> tuple[float, float]:
    """Pearson's χ² statistic and p-value of ``counts`` against the shares ``weights`` (arms with weight 0 left out).

    Raises:
        InvalidParameterError: a count is negative or not finite, or the weights are invalid.
    """
    theta = _shares(weights)
    x = _counts(counts)
    if x.shape != theta.shape:
        raise InvalidParameterError(f"SRM counts {x.tolist()} do not match weights {list(weights)}")
    keep = theta > 0
    if keep.sum() < 2 or x[keep].sum() == 0:
        return 0.0, 1.0
    res = sps.chisquare(x[keep], f_exp=x[keep].sum() * theta[keep] / theta[keep].sum())
    return float(res.statistic), float(res.pvalue)


def srm_log_bayes_factor(counts: Sequence[int] | np.ndarray, weights: Sequence[float], concentration: float = 100.0) -> Any:
    """log BF of the Dirichlet-multinomial alternative against the shares ``weights`` (Lindon & Malek 2020, §3).

    Args:
        counts: units per arm; an array whose last axis runs over the arms gives an
            array of log Bayes factors (used by the simulations).
        weights: the configured weights (normalised here); arms with weight 0 must have no units.
        concentration: k in the prior α₀ = k·θ₀ (> 0); larger k puts the alternative
            nearer the null, which detects small mismatches later but more surely.

    Returns:
        A float for one vector of counts, an array for a stack of them.

    Raises:
        InvalidParameterError: a count is negative or not finite, or the weights are invalid.
    """
    if not concentration > 0:
        raise InvalidParameterError(f"concentration must be > 0, got {concentration}")
    theta = _shares(weights)
    x = _counts(counts)
    if x.shape[-1:] != theta.shape:
        raise InvalidParameterError(f"SRM counts of shape {x.shape} do not match {theta.size} weights")
    keep = theta > 0
    alpha0 = concentration * theta[keep]
    xk = x[..., keep]
    a = alpha0 + xk
    # log B(α₀ + x) − log B(α₀) − Σ x_i log θ₀_i
    out = (gammaln(a).sum(axis=-1) - gammaln(a.sum(axis=-1))) - _log_multivariate_beta(alpha0) - xlogy(xk, theta[keep]).sum(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True, slots=True)
class SrmState:
    """The sequential SRM test's memory between looks.

    Attributes:
        counts: cumulative units per arm at the last look.
        prior_shares: θ₀ when the test started (the prior is α₀ = k·θ₀).
        log_bayes_factor: log BF so far.
        p_value: running minimum of min(1, 1/BF).
    """

    counts: tuple[int, ...] = ()
    prior_shares: tuple[float, ...] = ()
    log_bayes_factor: float = 0.0
    p_value: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "prior_shares": list(self.prior_shares),
                "log_bayes_factor": self.log_bayes_factor, "p_value": self.p_value}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SrmState":
        if not data:
            return cls()
        return cls(tuple(int(c) for c in data.get("counts", ())), tuple(float(s) for s in data.get("prior_shares", ())),
                   float(data.get("log_bayes_factor", 0.0)), float(data.get("p_value", 1.0)))


def srm_test(
    counts: Sequence[int],
    weights: Sequence[float],
    *,
    alpha: float = 0.001,
    concentration: float = 100.0,
    state: SrmState | None = None,
) -> tuple[SrmResult, SrmState]:
    """One look of both SRM tests.

    Args:
        counts: cumulative units per arm (same order as ``weights``).
        weights: the weights in force now.
        alpha: level of the mismatch verdict (SRM is usually checked at 0.001).
        concentration: the Dirichlet prior's k.
        state: the previous look's state (None: the first look). A state whose arms
            differ, or whose counts exceed ``counts``, is restarted.

    Returns:
        The result and the state for the next look.
    """
    check_alpha(alpha)
    theta = _shares(weights)
    x = tuple(int(c) for c in _counts(counts))
    if len(x) != theta.size or any(c < 0 for c in x):
        raise InvalidParameterError(f"counts {list(counts)} do not match weights {list(weights)}")
    expected = tuple(float(s) for s in theta)
    unexpected = any(c > 0 and s == 0 for c, s in zip(x, theta))
    if unexpected:
        st = SrmState(x, expected, math.inf, 0.0)
        return SrmResult(Reason.UNEXPECTED_ARM, math.inf, 0.0, math.inf, 0.0, True, x, expected), st
    if sum(x) == 0:
        return SrmResult(Reason.NO_TRAFFIC, counts=x, expected=expected), state or SrmState()
    chi2, chi2_p = srm_chi_square(x, theta.tolist())
    if (state is None or len(state.counts) != len(x) or len(state.prior_shares) != len(x)
            or any(o > n for o, n in zip(state.counts, x)) or any((s > 0) != (p > 0) for s, p in zip(theta, state.prior_shares))):
        state = SrmState((0,) * len(x), expected, 0.0, 1.0)
    keep = np.asarray(state.prior_shares) > 0
    alpha0 = concentration * np.asarray(state.prior_shares)[keep]
    old = np.asarray(state.counts, dtype=float)[keep]
    new = np.asarray(x, dtype=float)[keep]
    # the increment's factor: B(α₀ + x_new) / B(α₀ + x_old) / Π θ₀^(x_new − x_old)  (Lindon & Malek 2020, §3)
    log_bf = state.log_bayes_factor + (_log_multivariate_beta(alpha0 + new) - _log_multivariate_beta(alpha0 + old)
                                       - float(xlogy(new - old, theta[keep]).sum()))
    p = min(state.p_value, 1.0 if log_bf <= 0 else math.exp(-log_bf))
    new_state = SrmState(x, state.prior_shares, log_bf, p)
    return SrmResult(Reason.OK, chi2, chi2_p, log_bf, p, p <= alpha, x, expected), new_state
