"""Labelling rules: defaults, per tenant/agent overrides from Python and YAML, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgym.processors.labelling.rules import DEFAULT_SIGNAL_WEIGHTS, LabellingRules, RuleBook
from agentgym.processors.labelling.exceptions import RulesConfigError


def test_defaults_are_sane() -> None:
    r = LabellingRules()
    # 4 and 5 of 5 mean success, 0-2 failure, 3 is neutral
    assert [r.rating_verdict(s / 5) for s in range(6)] == [False, False, False, None, True, True]
    assert r.correction_confidence > r.human_confidence > r.ai_judge_confidence > 0.5
    assert r.signal_weights["status_error"] < 0 < r.signal_weights["task_completed"]
    assert r.fallback == "unknown" and r.model_enabled
    assert abs(r.label_noise - (1 - r.human_confidence)) < 1e-12


def test_overrides_resolve_default_then_tenant_then_agent() -> None:
    book = RuleBook(
        default={"rating_success_at": 0.8},
        tenants={
            "acme": {
                "rules": {"ai_judge_confidence": 0.7, "signal_weights": {"handoff": -2.0}},
                "agents": {"support-bot": {"signal_weights": {"escalate": -3.5}, "fallback": "base_rate"}},
            }
        },
    )
    other = book.rules_for("globex", "bot")
    assert other.rating_success_at == 0.8 and other.ai_judge_confidence == LabellingRules().ai_judge_confidence
    acme = book.rules_for("acme", "bot")
    assert (acme.rating_success_at, acme.ai_judge_confidence, acme.fallback) == (0.8, 0.7, "unknown")
    support = book.rules_for("acme", "support-bot")
    assert support.fallback == "base_rate"
    # signal weights merge key by key across layers
    assert support.signal_weights["handoff"] == -2.0
    assert support.signal_weights["escalate"] == -3.5
    assert support.signal_weights["abandon"] == DEFAULT_SIGNAL_WEIGHTS["abandon"]
    assert book.rules_for("acme", "support-bot") is support  # cached


def test_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "default:\n  model_min_examples: 5\n"
        "tenants:\n  acme:\n    agents:\n      bot:\n        rating_failure_at: 0.3\n        model_kind: hoeffding_tree\n"
    )
    book = RuleBook.from_yaml(path)
    assert book.rules_for("acme", "bot").model_kind == "hoeffding_tree"
    assert book.rules_for("acme", "bot").rating_failure_at == 0.3
    assert book.rules_for("acme", "other").model_min_examples == 5
    assert book.version != RuleBook().version  # reported as labeller_version of rule decisions


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("default:\n  rating_sucess_at: 0.8\n", "default: rating_sucess_at"),  # a typo
        ("default:\n  rating_failure_at: 0.9\n", "must be below rating_success_at"),
        ("tenants:\n  acme:\n    agents:\n      bot:\n        human_confidence: 2\n", "tenants.acme.agents.bot: human_confidence"),
        ("tenants:\n  acme:\n    rulez: {}\n", "tenants.acme: unknown key"),
        ("defaults: {}\n", "unknown top-level key"),
        ("default: [1, 2]\n", "expected a mapping"),
        ("default: {model_kind: svm}\n", "model_kind"),
        ("- not a mapping\n", "expected a mapping at the top level"),
        ("default: {a: [\n", "not valid YAML"),
    ],
)
def test_bad_rules_fail_at_load_naming_where(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(doc)
    with pytest.raises(RulesConfigError, match=message.replace("[", r"\[")) as err:
        RuleBook.from_yaml(path)
    assert str(path) in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(RulesConfigError, match="cannot read"):
        RuleBook.from_yaml("/nonexistent/rules.yaml")
