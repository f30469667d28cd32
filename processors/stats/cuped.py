"""CUPED: variance reduction with a pre-experiment covariate.

Deng, Xu, Kohavi & Walker (2013), "Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data", WSDM, §3.1 (control variates):

    Ŷ_cv = Ȳ − θ·(X̄ − E[X]),   θ = cov(Y, X) / var(X)

which is unbiased for E[Y] and has variance var(Ȳ)·(1 − ρ²_XY), ρ the correlation.
θ is estimated once from all arms pooled, so it is the same for every arm and the
adjustment cannot bias the difference (§3.3, X is unaffected by the treatment because
it is measured before it). Per arm j:

    mean_j     = ȳ_j − θ·(x̄_j − x̄)                  (x̄: pooled covariate mean)
    variance_j = s²_y,j − 2θ·s_xy,j + θ²·s²_x,j       (the per-unit variance of Y − θX)

The adjusted summaries go into the same tests as unadjusted ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce
from operator import add

from agentgym.processors.stats.statistics import ArmSummary, RegressionAdjustedStatistic

__all__ = ["cuped_theta", "cuped_adjust"]


def cuped_theta(arms: Sequence[RegressionAdjustedStatistic]) -> float:
    """θ = cov(Y, X) / var(X) over all arms pooled (Deng et al. 2013, §3.1).

    0.0 when it cannot be estimated (under two units, or a constant covariate): then
    CUPED leaves the metric unchanged.
    """
    if not arms:
        return 0.0
    pooled: RegressionAdjustedStatistic = reduce(add, arms)
    var_x = pooled.covariate.summary().variance
    cov = pooled.covariance()
    if not (math.isfinite(var_x) and math.isfinite(cov)) or var_x <= 0.0:
        return 0.0
    return cov / var_x


def cuped_adjust(arms: Sequence[RegressionAdjustedStatistic], theta: float | None = None) -> list[ArmSummary]:
    """CUPED-adjusted summaries of the arms (same order), with θ pooled unless given."""
    if theta is None:
        theta = cuped_theta(arms)
    n_total = sum(a.n for a in arms)
    x_bar = sum(a.sum_x for a in arms) / n_total if n_total else 0.0
    out = []
    for a in arms:
        y = a.metric.summary()
        if a.n == 0:
            out.append(y)
            continue
        x_mean = a.sum_x / a.n
        mean = y.mean - theta * (x_mean - x_bar)
        if a.n < 2:
            out.append(ArmSummary(a.n, mean, math.nan))
            continue
        var_x = a.covariate.summary().variance
        var = y.variance - 2.0 * theta * a.covariance() + theta * theta * var_x
        out.append(ArmSummary(a.n, mean, max(var, 0.0)))
    return out
