"""What to do with an experiment, given one look at its statistics. Pure.

Rules, in order (the first that applies wins):

1. **Sample-ratio mismatch** — the sequential SRM test (Dirichlet-multinomial Bayes
   factor) rejects the configured split: the assignment or the logging is broken, so
   no comparison can be trusted: **roll back** (all traffic to the control).
2. **Guardrail breached** — some treatment's degradation on a guardrail metric is
   shown to exceed its limit (one-sided always-valid test): **roll back**.
3. **Winner** — treatments whose primary-metric comparison concluded (always-valid
   p-value, Holm-adjusted with several treatments, at or below α) in the metric's good
   direction and for which every guardrail *holds* (non-inferiority shown): **promote**
   the one with the best estimate.
4. **Every treatment worse** — each treatment concluded in the bad direction:
   **roll back**.
5. Otherwise **continue** (the reason says what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.processors.stats import ArmComparison, GuardrailStatus, MetricAnalysis, SrmResult

__all__ = ["DecisionOutcome", "decide"]

Action = Literal["promote_winner", "rollback", "continue"]


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """The verdict of one look.

    Attributes:
        action: ``promote_winner``, ``rollback`` or ``continue``.
        winner: the promoted variant (promote_winner only).
        reason: a sentence for people, with the numbers that decided it.
    """

    action: Action
    reason: str
    winner: str | None = None


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _better(c: ArmComparison, direction: str) -> bool:
    est = c.sequential.absolute.estimate if c.sequential.absolute is not None else 0.0
    return est > 0 if direction == "increase" else est < 0


def decide(config: ExperimentConfig, primary: MetricAnalysis, guardrails: list[MetricAnalysis], srm: SrmResult) -> DecisionOutcome:
    """The decision for ``config`` at this look (see the module docstring)."""
    alpha = config.alpha
    if srm.mismatch:
        return DecisionOutcome("rollback", f"sample ratio mismatch: units {list(srm.counts)} against weights "
                                           f"{[round(e, 4) for e in srm.expected]} (always-valid p = {srm.p_value:.2g}, "
                                           f"chi-square p = {srm.chi_square_p_value:.2g})")
    for g in guardrails:
        spec = next(m for m in config.guardrails if m.name == g.metric)
        for c in g.comparisons:
            if c.guardrail is not None and c.guardrail.status is GuardrailStatus.BREACHED and c.guardrail.degradation is not None:
                d = c.guardrail.degradation
                return DecisionOutcome("rollback", f"guardrail {g.metric} breached by {c.variant}: degradation {_pct(d.estimate)} "
                                                   f"[{_pct(d.interval.low)}, {_pct(d.interval.high)}] beyond the limit "
                                                   f"{_pct(spec.limit or 0.0)} (always-valid p = {c.guardrail.p_value_breached:.2g})")
    direction = config.primary_metric.direction
    concluded = [c for c in primary.comparisons if c.sequential.ok and c.adjusted_p_value <= alpha]
    winners: list[ArmComparison] = []
    waiting_for_guardrails: list[ArmComparison] = []
    for c in concluded:
        if not _better(c, direction):
            continue
        holds = all(
            gc.guardrail is not None and gc.guardrail.status is GuardrailStatus.HOLDS
            for g in guardrails for gc in g.comparisons if gc.variant == c.variant
        )
        (winners if holds else waiting_for_guardrails).append(c)
    if winners:
        sign = 1.0 if direction == "increase" else -1.0
        best = max(winners, key=lambda c: sign * (c.sequential.absolute.estimate if c.sequential.absolute else 0.0))
        a = best.sequential.absolute
        assert a is not None
        return DecisionOutcome(
            "promote_winner",
            f"{best.variant} beats {best.control} on {primary.metric}: {a.estimate:+.4g} "
            f"[{best.state.interval.low:+.4g}, {best.state.interval.high:+.4g}], always-valid p = {best.adjusted_p_value:.2g}"
            + (f"; guardrails hold ({', '.join(g.metric for g in guardrails)})" if guardrails else ""),
            best.variant,
        )
    if primary.comparisons and len(concluded) == len(primary.comparisons) and not any(_better(c, direction) for c in concluded):
        worst = ", ".join(f"{c.variant} {c.sequential.absolute.estimate:+.4g}" for c in concluded if c.sequential.absolute)
        return DecisionOutcome("rollback", f"every treatment is worse than {config.control.name} on {primary.metric}: {worst}")
    if waiting_for_guardrails:
        return DecisionOutcome("continue", f"{', '.join(c.variant for c in waiting_for_guardrails)} won on {primary.metric}; "
                                           "waiting for the guardrails to show non-inferiority")
    reasons = {c.sequential.reason.value for c in primary.comparisons if not c.sequential.ok}
    if reasons:
        return DecisionOutcome("continue", f"no inference yet ({', '.join(sorted(reasons))}; min {config.min_samples_per_arm} units per arm)")
    return DecisionOutcome("continue", "inconclusive")
