"""The classical fixed-horizon tests, for comparison with the sequential one.

Valid at a single look fixed in advance; peeking at them repeatedly and stopping at
the first p ≤ α inflates the false-positive rate far above α (Johari et al. 2022, §2;
see the simulation in ``tests/unit/stats``).

* Means: Welch's unequal-variance t-test (Welch 1947, "The generalization of
  'Student's' problem when several different population variances are involved",
  *Biometrika* 34, the statistic and the Welch-Satterthwaite degrees of freedom).
* Proportions: the two-proportion z-test, pooled variance under the null for the
  p-value and unpooled (Wald) variance for the interval (e.g. Agresti 2013,
  *Categorical Data Analysis*, §3.1.3); its z² equals Pearson's χ² of the 2×2 table.
"""

from __future__ import annotations

import math
from typing import Literal

from scipy import stats as sps

from agentgym.processors.stats.exceptions import InvalidParameterError
from agentgym.processors.stats.results import DifferenceEstimate, FixedHorizonResult, Interval, Reason
from agentgym.processors.stats.sequential import check_alpha
from agentgym.processors.stats.statistics import ArmSummary, ProportionStatistic

__all__ = ["welch_t_test", "two_proportion_z_test", "fixed_horizon_test"]


def welch_t_test(control: ArmSummary, treatment: ArmSummary, *, alpha: float = 0.05) -> FixedHorizonResult:
    """Welch's t-test of equal means, with a (1-α) interval for ``treatment − control``."""
    check_alpha(alpha)
    if control.n == 0 or treatment.n == 0:
        return FixedHorizonResult(Reason.EMPTY_ARM, test="welch_t")
    if control.n < 2 or treatment.n < 2:
        return FixedHorizonResult(Reason.INSUFFICIENT_SAMPLE, test="welch_t")
    a, b = control.variance / control.n, treatment.variance / treatment.n
    if not all(math.isfinite(x) for x in (a, b, control.mean, treatment.mean)):
        return FixedHorizonResult(Reason.NON_FINITE, test="welch_t")
    if a + b <= 0.0:
        return FixedHorizonResult(Reason.ZERO_VARIANCE, test="welch_t")
    se = math.sqrt(a + b)
    diff = treatment.mean - control.mean
    t = diff / se
    # Welch-Satterthwaite: df = (a + b)² / (a²/(n_c - 1) + b²/(n_t - 1))   (Welch 1947, eq. 9)
    df = (a + b) ** 2 / (a * a / (control.n - 1) + b * b / (treatment.n - 1))
    p = float(2.0 * sps.t.sf(abs(t), df))
    q = float(sps.t.ppf(1.0 - alpha / 2.0, df))
    return FixedHorizonResult(Reason.OK, p, DifferenceEstimate(diff, se, Interval(diff - q * se, diff + q * se), t), t, df, "welch_t")


def two_proportion_z_test(
    control: ProportionStatistic, treatment: ProportionStatistic, *, alpha: float = 0.05, min_expected: float = 5.0,
) -> FixedHorizonResult:
    """The two-proportion z-test (pooled under the null), with a Wald interval for the difference.

    Args:
        control, treatment: the arms' statistics.
        alpha: level of the interval, in (0, 1).
        min_expected: the normal approximation is used only when every cell of the 2×2
            table expects at least this many units under the null (default 5, the
            usual rule for Pearson's χ², of which z² is one: Cochran 1954, "Some methods
            for strengthening the common χ² tests", *Biometrics* 10(4)); below it the
            result's reason is ``insufficient_sample`` (1/1 against 0/1000 would
            otherwise give p ≈ 1e-219).
    """
    check_alpha(alpha)
    if not min_expected >= 0:
        raise InvalidParameterError(f"min_expected must be >= 0, got {min_expected}")
    if control.n == 0 or treatment.n == 0:
        return FixedHorizonResult(Reason.EMPTY_ARM, test="two_proportion_z")
    pc, pt = control.successes / control.n, treatment.successes / treatment.n
    pooled = (control.successes + treatment.successes) / (control.n + treatment.n)
    # z = (p_t - p_c) / sqrt(p̄(1-p̄)(1/n_c + 1/n_t))
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / control.n + 1.0 / treatment.n))
    if se0 <= 0.0:
        return FixedHorizonResult(Reason.ZERO_VARIANCE, test="two_proportion_z")
    if min(control.n, treatment.n) * min(pooled, 1.0 - pooled) < min_expected:
        return FixedHorizonResult(Reason.INSUFFICIENT_SAMPLE, test="two_proportion_z")
    diff = pt - pc
    z = diff / se0
    p = float(2.0 * sps.norm.sf(abs(z)))
    se = math.sqrt(pc * (1 - pc) / control.n + pt * (1 - pt) / treatment.n)
    q = float(sps.norm.ppf(1.0 - alpha / 2.0))
    return FixedHorizonResult(Reason.OK, p, DifferenceEstimate(diff, se, Interval(diff - q * se, diff + q * se), z), z, math.inf, "two_proportion_z")


def fixed_horizon_test(
    control: ProportionStatistic | ArmSummary,
    treatment: ProportionStatistic | ArmSummary,
    *,
    alpha: float = 0.05,
    kind: Literal["proportion", "mean"] | None = None,
) -> FixedHorizonResult:
    """The z-test for two :class:`ProportionStatistic`, Welch's t-test otherwise."""
    if isinstance(control, ProportionStatistic) and isinstance(treatment, ProportionStatistic) and kind != "mean":
        return two_proportion_z_test(control, treatment, alpha=alpha)
    c = control.summary() if isinstance(control, ProportionStatistic) else control
    t = treatment.summary() if isinstance(treatment, ProportionStatistic) else treatment
    return welch_t_test(c, t, alpha=alpha)
