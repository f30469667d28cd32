"""Features of a trace: the evidence the system-signal rules weigh and the online model's inputs.

Both come from the run (status, errored steps and tool calls, retries, latency,
tokens, output) and from non-label feedback (implicit signals such as ``retry`` or
``task_completed``, sentiment words of comments, verdicts of automated checks).
Explicit ratings, thumbs and corrections are deliberately *not* features: they are
the training target, and the model has to label the traces that lack them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from agentgym.processors.labelling.rules import LabellingRules
from agentgym.processors.labelling.state import TraceState

__all__ = ["CATEGORICAL", "Evidence", "comment_sentiment", "signal_counts", "signal_evidence", "model_features", "KNOWN_SIGNALS"]

# implicit signals the SDK documents; a tenant may weigh more in its rules
KNOWN_SIGNALS = ("retry", "abandon", "escalate", "copy", "task_completed")
CATEGORICAL = "cat:"  # prefix of one-hot features
_RUN_SIGNALS = frozenset({"status_error", "status_timeout", "status_cancelled", "empty_output", "failed_tool_call", "step_error", "step_retry"})
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")
_NEGATORS = frozenset({"not", "no", "never", "don't", "doesn't", "didn't", "isn't", "wasn't", "won't", "can't", "cannot", "hardly"})


@dataclass(frozen=True)
class Evidence:
    """One signal's contribution to the log-odds of success: ``count * weight``."""

    signal: str
    count: int
    weight: float

    @property
    def log_odds(self) -> float:
        return self.count * self.weight


def comment_sentiment(text: str, rules: LabellingRules) -> tuple[int, int]:
    """(positive, negative) word counts of a comment.

    A negator within the two words before a sentiment word flips it ("not helpful"
    counts as negative, "not bad" as positive) — the usual window of lexicon methods.
    """
    pos_words, neg_words = set(rules.positive_words), set(rules.negative_words)
    words = _WORD_RE.findall(text.lower())
    pos = neg = 0
    for i, w in enumerate(words):
        polarity = 1 if w in pos_words else -1 if w in neg_words else 0
        if not polarity:
            continue
        if any(p in _NEGATORS for p in words[max(0, i - 2):i]):
            polarity = -polarity
        if polarity > 0:
            pos += 1
        else:
            neg += 1
    return pos, neg


def signal_counts(state: TraceState, rules: LabellingRules) -> Counter[str]:
    """How often each weighable signal occurred in the trace (uncapped)."""
    c: Counter[str] = Counter()
    run = state.run
    if run is not None:
        if run.status in ("error", "timeout", "cancelled"):
            c[f"status_{run.status}"] += 1
        elif run.run_error:
            c["status_error"] += 1
        c["empty_output"] += int(run.output_empty and run.status == "ok")
        c["failed_tool_call"] += run.failed_tool_calls
        c["step_error"] += run.step_errors
        c["step_retry"] += run.step_retries
    for f in state.feedback:
        if f.kind == "implicit" and f.signal:
            c[f.signal] += 1
        elif f.source == "system" and f.kind in ("rating", "thumbs"):
            verdict = f.thumbs_up if f.kind == "thumbs" else rules.rating_verdict(f.rating or 0.0)
            if verdict is not None:
                c["system_pass" if verdict else "system_fail"] += 1
        if f.comment:
            pos, neg = comment_sentiment(f.comment, rules)
            c["positive_word"] += pos
            c["negative_word"] += neg
    return +c  # drop zeros


def signal_evidence(state: TraceState, rules: LabellingRules) -> list[Evidence]:
    """The weighted evidence of the trace's signals, strongest first (unknown signals carry no weight)."""
    out = [
        Evidence(s, min(n, rules.signal_count_cap), rules.signal_weights[s])
        for s, n in signal_counts(state, rules).items()
        if rules.signal_weights.get(s)
    ]
    return sorted(out, key=lambda e: -abs(e.log_odds))


def model_features(state: TraceState, rules: LabellingRules) -> dict[str, float]:
    """The online model's input: numeric features of the run and its non-label feedback.

    Heavy-tailed quantities (latency, tokens, cost, output length) enter as log1p,
    so a few huge runs do not dominate the scaler; counts are capped like the rules'.
    """
    cap = rules.signal_count_cap
    x: dict[str, float] = {}
    run = state.run
    if run is None:
        x["no_experience"] = 1.0
    else:
        x["status_error"] = float(run.status == "error" or (run.status == "ok" and run.run_error))
        x["status_timeout"] = float(run.status == "timeout")
        x["status_cancelled"] = float(run.status == "cancelled")
        x["log_steps"] = math.log1p(run.n_steps)
        x["step_errors"] = float(min(run.step_errors, cap))
        x["failed_tool_calls"] = float(min(run.failed_tool_calls, cap))
        x["step_retries"] = float(min(run.step_retries, cap))
        x["log_latency_s"] = math.log1p(run.latency_ms / 1000.0)
        x["log_tokens"] = math.log1p(run.tokens)
        x["log_cost_cents"] = math.log1p(100.0 * run.cost_usd)
        x["output_empty"] = float(run.output_empty)
        x["log_output_chars"] = math.log1p(run.output_chars)
        # one-hot model version (versions differ in base rate and drift apart);
        # CATEGORICAL-prefixed features are left unscaled by the model
        x[f"{CATEGORICAL}model_version={run.model_version}"] = 1.0
    counts = signal_counts(state, rules)
    # feedback-borne signals (implicit signals, check verdicts, sentiment words); the
    # run-borne ones are already above
    for s in sorted((set(KNOWN_SIGNALS) | set(rules.signal_weights)) - _RUN_SIGNALS):
        x[f"signal_{s}"] = float(min(counts.get(s, 0), cap))
    x["has_comment"] = float(any(f.comment for f in state.feedback))
    return x
