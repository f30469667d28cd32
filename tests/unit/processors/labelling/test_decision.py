"""The decision order: human > AI judge > system signals > online model > fallback."""

from __future__ import annotations

from typing import Any

import pytest

from agentgym.processors.labelling.decision import decide
from agentgym.processors.labelling.features import model_features
from agentgym.processors.labelling.model import OnlineOutcomeModel, ProportionStatistic
from agentgym.processors.labelling.rules import LabellingRules
from tests.unit.processors.labelling.helpers import experience, feedback, state

rules = LabellingRules()


def _trained_model(n: int = 60) -> OnlineOutcomeModel:
    m = OnlineOutcomeModel()
    for i in range(n):
        ok = i % 2 == 0
        m.learn(model_features(state(None, experience(latency_ms=800.0 if ok else 20_000.0)), rules), ok)
    return m


ERRORED: dict[str, Any] = {"status": "error", "error": "boom", "output": None}
# (experience changes, feedback records, expected label, labeller)
CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], str, str]] = [
    ("human thumbs beat an errored run", ERRORED, [feedback(thumbs_up=True)], "success", "human"),
    ("human rating beats task_completed", {}, [feedback(kind="implicit", signal="task_completed", source="system"),
                                              feedback(kind="rating", rating=1.0)], "failure", "human"),
    ("human beats the AI judge", {}, [feedback(kind="rating", source="ai", rating=9.0, rating_scale=10.0),
                                      feedback(thumbs_up=False)], "failure", "human"),
    ("a correction is a failure", {}, [feedback(thumbs_up=True, ts=1), feedback(kind="correction", correction="x", ts=2)],
     "failure", "human"),
    ("a neutral rating decides nothing", ERRORED, [feedback(kind="rating", rating=3.0)], "failure", "rule:status_error"),
    ("AI judge beats signals", ERRORED, [feedback(kind="rating", source="ai", rating=9.0, rating_scale=10.0)], "success", "ai_judge"),
    ("signals: escalation", {}, [feedback(kind="implicit", signal="escalate")], "failure", "rule:escalate"),
    ("signals: task completed", {}, [feedback(kind="implicit", signal="task_completed", source="system")], "success", "rule:task_completed"),
    ("contradictory signals cancel", {}, [feedback(kind="implicit", signal="task_completed", source="system"),
                                         feedback(kind="implicit", signal="escalate")], "unknown", "fallback:unknown"),
    ("a human comment is a signal, not a label", {}, [feedback(kind="comment", comment="wrong, useless, broken")],
     "failure", "rule:negative_word"),
    ("nothing at all", {}, [], "unknown", "fallback:unknown"),
]


@pytest.mark.parametrize(("name", "exp", "fbs", "label", "labeller"), CASES, ids=[c[0] for c in CASES])
def test_order(name: str, exp: dict[str, Any], fbs: list[dict[str, Any]], label: str, labeller: str) -> None:
    d = decide(state(None, experience(**exp), *fbs), rules, "rv1")
    assert (d.label, d.labeller) == (label, labeller), d.reasons
    assert d.reasons
    if label == "unknown":
        assert d.confidence == 0.0 and d.p_success == 0.5
    else:
        assert 0.5 <= d.confidence <= 1.0


def test_correction_keeps_the_corrected_output_the_newest_one() -> None:
    st = state(None, experience(), feedback(kind="correction", correction="first", ts=1), feedback(kind="correction", correction="second", ts=2))
    d = decide(st, rules, "rv1")
    assert (d.label, d.confidence, d.corrected_output) == ("failure", rules.correction_confidence, "second")


def test_disagreeing_humans_lower_the_confidence_and_the_newest_wins() -> None:
    unanimous = decide(state(None, experience(), feedback(thumbs_up=True, ts=1), feedback(kind="rating", rating=5.0, ts=2)), rules, "")
    split = decide(state(None, experience(), feedback(thumbs_up=True, ts=1), feedback(thumbs_up=False, ts=2)), rules, "")
    assert unanimous.confidence == rules.human_confidence
    assert split.label == "failure" and 0.5 < split.confidence < unanimous.confidence
    assert any("disagree" in r for r in split.reasons)


def test_ai_judges_can_be_switched_off() -> None:
    st = state(None, experience(), feedback(kind="thumbs", source="ai", thumbs_up=True))
    assert decide(st, rules, "").labeller == "ai_judge"
    assert decide(st, LabellingRules(ai_judge_enabled=False), "").labeller == "fallback:unknown"


def test_signal_confidence_grows_with_evidence_and_is_capped() -> None:
    one = decide(state(None, experience(), feedback(kind="implicit", signal="abandon")), rules, "")
    many = decide(state(None, experience(**ERRORED), feedback(kind="implicit", signal="abandon"),
                        feedback(kind="implicit", signal="escalate")), rules, "")
    assert one.label == many.label == "failure"
    assert 0.5 < one.confidence < many.confidence == rules.signal_max_confidence


def test_the_model_labels_what_no_rule_decided_once_trained() -> None:
    model = _trained_model()
    fast, slow = state(None, experience(latency_ms=700.0)), state(None, experience(latency_ms=25_000.0))
    d_fast, d_slow = decide(fast, rules, "", model), decide(slow, rules, "", model)
    assert (d_fast.label, d_slow.label) == ("success", "failure")
    assert d_fast.labeller == "model:river-logistic-regression"
    assert d_fast.labeller_version == "river-logistic-regression@60"
    assert d_fast.confidence > 0.6 and d_slow.confidence > 0.6
    # a rule still wins where it decides
    assert decide(state(None, experience(latency_ms=700.0, **ERRORED)), rules, "", model).labeller == "rule:status_error"
    # not before it learnt model_min_examples labels, and not when disabled
    assert decide(fast, rules, "", _trained_model(10)).labeller == "fallback:unknown"
    assert decide(fast, LabellingRules(model_enabled=False), "", model).labeller == "fallback:unknown"


def test_base_rate_fallback() -> None:
    r = LabellingRules(fallback="base_rate")
    st = state(None, experience())
    d = decide(st, r, "", None, ProportionStatistic(n=8, successes=6))
    assert (d.label, d.labeller) == ("success", "fallback:base_rate")
    assert d.confidence == pytest.approx(7 / 10)  # (6 + 1) / (8 + 2)
    assert decide(st, r, "", None, ProportionStatistic()).label == "unknown"  # no labels yet
