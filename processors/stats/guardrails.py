"""Guardrail metrics as one-sided non-inferiority tests with a relative margin.

A guardrail (latency, cost, error rate, ...) may degrade by at most ``limit``
(relative to control, e.g. 0.1 = 10 %). With the relative difference
r = m_t/m_c − 1 and the metric's good direction, the *degradation* is
d = r for a metric that should decrease and d = −r for one that should increase.
Two one-sided always-valid tests against the margin, each a half-normal mixture
(:func:`agentgym.processors.stats.sequential.one_sided_p_value`):

* holds    — H0: d ≥ limit  vs  d < limit   (non-inferiority shown; the usual
  non-inferiority formulation, e.g. Wellek 2010, *Testing Statistical Hypotheses of
  Equivalence and Noninferiority*, ch. 2);
* breached — H0: d ≤ limit  vs  d > limit   (harm beyond the margin shown).

Both p-values are kept as running minima by the caller; only one of them can fall
below α while the confidence sequence is right (its interval lies on one side of
the margin).
"""

from __future__ import annotations

from typing import Literal

from agentgym.processors.stats.results import DifferenceEstimate, GuardrailResult, GuardrailStatus, Interval, Reason
from agentgym.processors.stats.sequential import one_sided_p_value, sequential_test
from agentgym.processors.stats.statistics import ArmSummary

__all__ = ["guardrail_test"]


def guardrail_test(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    limit: float,
    direction: Literal["increase", "decrease"],
    rho: float,
    alpha: float = 0.05,
    min_samples_per_arm: int = 100,
    previous: tuple[float, float] = (1.0, 1.0),
) -> GuardrailResult:
    """One look of a guardrail's non-inferiority and breach tests.

    Args:
        control, treatment: the arms' summaries.
        limit: largest tolerated relative degradation (>= 0), e.g. 0.1.
        direction: ``"increase"`` if higher is better (success rate), ``"decrease"``
            if lower is better (latency, cost).
        rho: the experiment's mixing parameter.
        alpha: the level of both one-sided tests.
        min_samples_per_arm: no inference below this many units per arm.
        previous: the running minima (p_holds, p_breached) of earlier looks.
    """
    res = sequential_test(control, treatment, rho=rho, alpha=alpha, min_samples_per_arm=min_samples_per_arm)
    p_hold_prev, p_breach_prev = previous
    if not res.ok:
        return GuardrailResult(GuardrailStatus.INSUFFICIENT, res.reason, limit, None, p_hold_prev, p_breach_prev)
    if res.relative is None:
        return GuardrailResult(GuardrailStatus.INSUFFICIENT, Reason.ZERO_CONTROL_MEAN, limit, None, p_hold_prev, p_breach_prev)
    sign = 1.0 if direction == "decrease" else -1.0
    rel = res.relative
    d = sign * rel.estimate
    se = rel.standard_error
    if se <= 0:
        return GuardrailResult(GuardrailStatus.INSUFFICIENT, Reason.ZERO_VARIANCE, limit, None, p_hold_prev, p_breach_prev)
    lo, hi = sorted((sign * rel.interval.low, sign * rel.interval.high))
    t = control.n + treatment.n
    z_breach = (d - limit) / se  # large when the degradation exceeds the margin
    p_breach = min(p_breach_prev, one_sided_p_value(z_breach, t, rho))
    p_hold = min(p_hold_prev, one_sided_p_value(-z_breach, t, rho))
    if p_breach <= alpha:
        status = GuardrailStatus.BREACHED
    elif p_hold <= alpha:
        status = GuardrailStatus.HOLDS
    else:
        status = GuardrailStatus.INCONCLUSIVE
    return GuardrailResult(status, Reason.OK, limit, DifferenceEstimate(d, se, Interval(lo, hi), z_breach), p_hold, p_breach)
