"""Deciding a trace's label: the strongest available source wins.

Order, strongest first:

1. **human** — explicit human feedback: a correction (failure, the corrected output
   kept), else ratings and thumbs against the thresholds; ratings in the neutral band
   decide nothing.
2. **ai_judge** — the same kinds of feedback with ``source=ai``, at a lower confidence.
3. **signals** — system signals (run status, failed tool calls, retries, abandonment,
   escalation, task completion, automated checks, comment words) summed as log-odds;
   they decide when the sum is clearly away from zero.
4. **model** — the online model's P(success), once it has learnt enough labels.
5. **fallback** — ``unknown`` (default), or the agent's base rate of explicit labels.

A lower source is consulted only when every stronger one is absent or undecided.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from agentgym.processors.labelling.features import model_features, signal_evidence
from agentgym.processors.labelling.model import OnlineOutcomeModel, ProportionStatistic
from agentgym.processors.labelling.rules import LabellingRules
from agentgym.processors.labelling.state import FeedbackItem, TraceState

__all__ = ["Decision", "Label", "Source", "decide", "explicit_decision", "signal_decision"]

Label = Literal["success", "failure", "unknown"]
Source = Literal["human", "ai_judge", "signals", "model", "fallback"]
_MIN_CONFIDENCE, _MAX_CONFIDENCE = 0.5, 0.999


@dataclass(frozen=True)
class Decision:
    """A label with its confidence and provenance.

    Attributes:
        confidence: probability that ``label`` is right, in [0.5, 1] for success and
            failure; 0 for ``unknown`` (no label to be confident in).
        labeller: ``human``, ``ai_judge``, ``rule:<signal>`` (the strongest signal
            in the decision's direction), ``model:<name>`` or ``fallback:<kind>``.
        labeller_version: the rule book's version, or the model's ``name@n_learned``.
    """

    label: Label
    confidence: float
    labeller: str
    labeller_version: str
    reasons: tuple[str, ...]
    source: Source
    corrected_output: str | None = None

    @property
    def p_success(self) -> float:
        """The decision as a probability of success (0.5 for ``unknown``)."""
        if self.label == "success":
            return self.confidence
        if self.label == "failure":
            return 1.0 - self.confidence
        return 0.5

    def same_as(self, emitted: dict[str, object] | None) -> bool:
        """Whether an outcome emitted earlier already says this (no revision needed)."""
        if not emitted:
            return False
        return (
            emitted.get("label") == self.label
            and emitted.get("labeller") == self.labeller
            and abs(float(emitted.get("confidence", -1.0)) - self.confidence) < 0.01  # type: ignore[arg-type]
            and emitted.get("corrected_output") == self.corrected_output
        )


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _clip(p: float) -> float:
    return min(_MAX_CONFIDENCE, max(_MIN_CONFIDENCE, p))


def _verdict(f: FeedbackItem, rules: LabellingRules) -> bool | None:
    if f.kind == "correction":
        return False
    if f.kind == "thumbs":
        return f.thumbs_up
    if f.kind == "rating" and f.rating is not None:
        return rules.rating_verdict(f.rating)
    return None


def _describe(f: FeedbackItem) -> str:
    if f.kind == "correction":
        return "correction given"
    if f.kind == "thumbs":
        return "thumbs up" if f.thumbs_up else "thumbs down"
    return f"rating {f.rating:.2f} of 1"


def explicit_decision(
    feedback: Sequence[FeedbackItem], rules: LabellingRules, source: Literal["human", "ai"], version: str
) -> Decision | None:
    """The label explicit feedback of one source gives, or None when it decides nothing.

    A correction always means failure. Otherwise the newest decisive item sets the
    label (people change their minds), and disagreement lowers the confidence:
    ``0.5 + (c - 0.5) * agreeing / decisive`` with c the source's confidence.
    """
    items = [f for f in feedback if f.source == source and f.explicit]
    if not items:
        return None
    labeller: str = "human" if source == "human" else "ai_judge"
    src: Source = "human" if source == "human" else "ai_judge"
    corrections = [f for f in items if f.kind == "correction"]
    if corrections:
        base = rules.correction_confidence if source == "human" else rules.ai_judge_confidence
        return Decision(
            "failure", base, labeller, version,
            (f"{labeller}: correction given ({len(corrections)})",), src, corrections[-1].correction,
        )
    verdicts = [(f, v) for f in items if (v := _verdict(f, rules)) is not None]
    if not verdicts:
        return None
    latest_f, latest = verdicts[-1]
    agreeing = sum(1 for _, v in verdicts if v == latest)
    base = rules.human_confidence if source == "human" else rules.ai_judge_confidence
    confidence = 0.5 + (base - 0.5) * agreeing / len(verdicts)
    reasons = [f"{labeller}: {_describe(latest_f)}"]
    if agreeing < len(verdicts):
        reasons.append(f"{labeller}: {len(verdicts) - agreeing} of {len(verdicts)} explicit items disagree; newest wins")
    return Decision("success" if latest else "failure", _clip(confidence), labeller, version, tuple(reasons), src)


def signal_decision(state: TraceState, rules: LabellingRules, version: str) -> tuple[Decision | None, float]:
    """The system signals' decision (None when their log-odds sum is not decisive), and the sum."""
    evidence = signal_evidence(state, rules)
    total = sum(e.log_odds for e in evidence)
    if not evidence or abs(total) < rules.signal_decisive_at:
        return None, total
    success = total > 0
    # the rule named as labeller: the strongest signal pointing the decided way
    lead = next(e for e in evidence if (e.log_odds > 0) == success)
    reasons = tuple(f"signal {e.signal} x{e.count}: {e.log_odds:+.2f} log-odds" for e in evidence) + (f"sum {total:+.2f}",)
    confidence = min(rules.signal_max_confidence, _sigmoid(abs(total)))  # sigmoid: log-odds -> probability
    return Decision("success" if success else "failure", _clip(confidence), f"rule:{lead.signal}", version, reasons, "signals"), total


def decide(
    state: TraceState,
    rules: LabellingRules,
    rules_version: str,
    model: OnlineOutcomeModel | None = None,
    base_rate: ProportionStatistic | None = None,
    features: Callable[[TraceState, LabellingRules], dict[str, float]] = model_features,
) -> Decision:
    """Labels one trace with the strongest source that decides (see the module docstring).

    Args:
        state: the joined trace.
        rules: this tenant/agent's rules.
        rules_version: reported as ``labeller_version`` of rule-based decisions.
        model: the agent's online model (ignored unless ``rules.model_enabled`` and it
            has learnt ``rules.model_min_examples`` labels).
        base_rate: the agent's explicit labels so far, for ``fallback: base_rate``.
    """
    human = explicit_decision(state.feedback, rules, "human", rules_version)
    if human is not None:
        return human
    if rules.ai_judge_enabled:
        ai = explicit_decision(state.feedback, rules, "ai", rules_version)
        if ai is not None:
            return ai
    signals, total = signal_decision(state, rules, rules_version)
    if signals is not None:
        return signals
    if rules.model_enabled and model is not None and model.n_learned >= rules.model_min_examples:
        p = model.predict_proba(features(state, rules))
        success = p >= 0.5
        return Decision(
            "success" if success else "failure", _clip(max(p, 1.0 - p)), f"model:{model.name}", model.version,
            (f"model P(success)={p:.3f} after {model.n_learned} labelled traces", f"signals sum {total:+.2f} (undecided)"),
            "model",
        )
    if rules.fallback == "base_rate" and base_rate is not None and base_rate.n > 0:
        rate = base_rate.smoothed_rate
        return Decision(
            "success" if rate >= 0.5 else "failure", _clip(max(rate, 1.0 - rate)), "fallback:base_rate", rules_version,
            (f"no decisive source; base rate {rate:.3f} of {base_rate.n} explicit labels",), "fallback",
        )
    return Decision("unknown", 0.0, "fallback:unknown", rules_version, (f"no decisive source (signals sum {total:+.2f})",), "fallback")
