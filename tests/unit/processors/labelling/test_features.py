"""Features: comment sentiment, weighted signal evidence, the model's inputs."""

from __future__ import annotations

import pytest

from agentgym.processors.labelling.features import comment_sentiment, model_features, signal_evidence
from agentgym.processors.labelling.rules import LabellingRules
from tests.unit.processors.labelling.helpers import experience, feedback, state

rules = LabellingRules()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("thanks, that worked perfectly", (3, 0)),
        ("this is wrong", (0, 1)),
        ("not helpful at all", (0, 1)),  # negated positive
        ("not bad", (1, 0)),  # negated negative
        ("it doesn't work", (0, 1)),
        ("great, another wrong answer", (1, 1)),  # sarcasm stays ambiguous
        ("see ticket 4412", (0, 0)),
        ("", (0, 0)),
    ],
)
def test_comment_sentiment(text: str, expected: tuple[int, int]) -> None:
    assert comment_sentiment(text, rules) == expected


def test_signal_evidence_weighs_counts_up_to_the_cap_strongest_first() -> None:
    steps = [{"step_id": str(i), "kind": "tool", "name": f"s{i}", "error": "x"} for i in range(5)]
    st = state(None, experience(steps=steps), feedback(kind="implicit", signal="task_completed", source="system"),
               feedback(kind="implicit", signal="retry"), feedback(kind="implicit", signal="unheard_of"))
    ev = {e.signal: e for e in signal_evidence(st, rules)}
    assert set(ev) == {"failed_tool_call", "task_completed", "retry"}  # unknown signals carry no weight
    assert ev["failed_tool_call"].count == rules.signal_count_cap
    assert ev["failed_tool_call"].log_odds == pytest.approx(3 * rules.signal_weights["failed_tool_call"])
    ordered = signal_evidence(st, rules)
    assert [abs(e.log_odds) for e in ordered] == sorted((abs(e.log_odds) for e in ordered), reverse=True)


def test_system_verdicts_count_as_signals_and_a_tenant_can_weigh_its_own() -> None:
    custom = LabellingRules(signal_weights={**rules.signal_weights, "handoff": -2.0})
    st = state(None, experience(), feedback(kind="thumbs", source="system", thumbs_up=False),
               feedback(kind="implicit", signal="handoff"))
    assert {e.signal for e in signal_evidence(st, custom)} == {"system_fail", "handoff"}


def test_model_features_leave_out_explicit_labels() -> None:
    plain = state(None, experience())
    rated = state(None, experience(), feedback(kind="rating", rating=5.0), feedback(thumbs_up=True),
                  feedback(kind="correction", correction="x"))
    # explicit feedback is the target: the features must not see it
    assert model_features(plain, rules) == model_features(rated, rules)
    x = model_features(state(None, experience(status="timeout", latency_ms=9000.0)), rules)
    assert x["status_timeout"] == 1.0 and x["log_latency_s"] > model_features(plain, rules)["log_latency_s"]
    assert x["cat:model_version=v1"] == 1.0
    assert model_features(state(None, None, feedback(kind="implicit", signal="abandon")), rules)["no_experience"] == 1.0
