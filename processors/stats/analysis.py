"""One metric of one experiment, every treatment against the control, at one look.

Glue over the tests: summarises each arm's statistic, runs the always-valid test
(:mod:`agentgym.processors.stats.sequential`) and the fixed-horizon test
(:mod:`agentgym.processors.stats.fixed_horizon`) for every treatment, advances each
comparison's running state, corrects the always-valid p-values for multiple
comparisons (:mod:`agentgym.processors.stats.multiple`) and, for a guardrail metric, runs the
non-inferiority tests (:mod:`agentgym.processors.stats.guardrails`). Pure: the caller keeps
the states between looks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentgym.processors.stats.exceptions import UnknownArmError
from agentgym.processors.stats.fixed_horizon import fixed_horizon_test
from agentgym.processors.stats.guardrails import guardrail_test
from agentgym.processors.stats.multiple import Correction, adjust_p_values
from agentgym.processors.stats.results import FixedHorizonResult, GuardrailResult, SequentialResult
from agentgym.processors.stats.sequential import SequentialState, check_alpha, sequential_test
from agentgym.processors.stats.statistics import ArmSummary, ProportionStatistic, RegressionAdjustedStatistic, SampleMeanStatistic, Statistic

__all__ = ["ArmComparison", "MetricAnalysis", "GuardrailSpec", "analyse_metric"]


@dataclass(frozen=True, slots=True)
class GuardrailSpec:
    """A guardrail's margin: the largest tolerated relative degradation, and which way is good."""

    limit: float
    direction: Literal["increase", "decrease"]


@dataclass(frozen=True, slots=True)
class ArmComparison:
    """One treatment against the control on one metric.

    Attributes:
        variant, control: the arms compared.
        sequential: this look's always-valid test.
        state: the running state after this look (running minimum p, intersected intervals).
        fixed_horizon: the classical test at this look (for comparison only).
        adjusted_p_value: ``state.p_value`` corrected for the number of treatments.
        guardrail: the non-inferiority verdict when the metric is a guardrail.
    """

    variant: str
    control: str
    sequential: SequentialResult
    state: SequentialState
    fixed_horizon: FixedHorizonResult
    adjusted_p_value: float
    guardrail: GuardrailResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence."""
        out: dict[str, Any] = {
            "variant": self.variant, "control": self.control,
            "sequential": self.sequential.to_dict(), "state": self.state.to_dict(),
            "fixed_horizon": self.fixed_horizon.to_dict(), "adjusted_p_value": self.adjusted_p_value,
        }
        if self.guardrail is not None:
            out["guardrail"] = self.guardrail.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class MetricAnalysis:
    """All comparisons of one metric at one look.

    Attributes:
        metric: the metric's name.
        arms: each variant's summary.
        comparisons: one per treatment, in the order of the statistics given.
        alpha: the experiment's level; intervals and guardrail verdicts use
            ``alpha / len(comparisons)`` (Bonferroni) when there are several.
        rho: the mixing parameter.
        correction: how the p-values were adjusted.
    """

    metric: str
    arms: dict[str, ArmSummary]
    comparisons: list[ArmComparison] = field(default_factory=list)
    alpha: float = 0.05
    rho: float = 0.0
    correction: str = "holm"


def _summary(stat: Statistic) -> ArmSummary:
    return stat.summary()


def analyse_metric(
    metric: str,
    stats: Mapping[str, Statistic],
    control: str,
    *,
    rho: float,
    alpha: float = 0.05,
    min_samples_per_arm: int = 100,
    correction: Correction = "holm",
    states: Mapping[str, SequentialState] | None = None,
    guardrail: GuardrailSpec | None = None,
    guardrail_states: Mapping[str, tuple[float, float]] | None = None,
    summaries: Mapping[str, ArmSummary] | None = None,
) -> MetricAnalysis:
    """Compares every treatment in ``stats`` with ``control`` on one metric.

    Args:
        metric: the metric's name (for the result).
        stats: variant -> its sufficient statistic (the control included).
        control: the control's variant name.
        rho: the experiment's mixing parameter (fixed for its life).
        alpha: the experiment's level.
        min_samples_per_arm: no inference below this many units per arm.
        correction: ``holm`` (default), ``bonferroni`` or ``none``, applied when there
            is more than one treatment.
        states: each treatment's running state from the previous look.
        guardrail: the margin when the metric is a guardrail.
        guardrail_states: each treatment's running (p_holds, p_breached).
        summaries: summaries that replace the statistics' own (e.g. CUPED-adjusted).
    """
    check_alpha(alpha)
    if control not in stats:
        raise UnknownArmError(f"control {control!r} has no statistic for {metric!r}; arms: {sorted(stats)}")
    arms = {name: (summaries or {}).get(name) or _summary(st) for name, st in stats.items()}
    treatments = [v for v in stats if v != control]
    m = len(treatments)
    level = alpha / m if m > 1 and correction != "none" else alpha
    states = states or {}
    seq: dict[str, tuple[SequentialResult, SequentialState]] = {}
    for v in treatments:
        r = sequential_test(arms[control], arms[v], rho=rho, alpha=level, min_samples_per_arm=min_samples_per_arm)
        seq[v] = (r, (states.get(v) or SequentialState()).update(r))
    adjusted = adjust_p_values([seq[v][1].p_value for v in treatments], correction)
    comparisons = []
    for v, adj in zip(treatments, adjusted):
        c_stat, t_stat = stats[control], stats[v]
        if summaries or isinstance(c_stat, (SampleMeanStatistic, RegressionAdjustedStatistic)):
            fixed = fixed_horizon_test(arms[control], arms[v], alpha=level)
        else:
            assert isinstance(c_stat, ProportionStatistic) and isinstance(t_stat, ProportionStatistic)
            fixed = fixed_horizon_test(c_stat, t_stat, alpha=level)
        g = None
        if guardrail is not None:
            g = guardrail_test(arms[control], arms[v], limit=guardrail.limit, direction=guardrail.direction, rho=rho,
                               alpha=level, min_samples_per_arm=min_samples_per_arm,
                               previous=(guardrail_states or {}).get(v, (1.0, 1.0)))
        comparisons.append(ArmComparison(v, control, seq[v][0], seq[v][1], fixed, adj, g))
    return MetricAnalysis(metric, arms, comparisons, alpha, rho, correction)
