"""Paraphrasers: the rules, and a model checked and backed by the rules."""

from __future__ import annotations

import random

import pytest

from agentgym.trainers.synth.paraphrase import PARAPHRASE_INSTRUCTION, ModelParaphraser, Paraphraser, RuleParaphraser


def test_rules_paraphrase_and_count() -> None:
    p = RuleParaphraser()
    assert isinstance(p, Paraphraser)
    out = p.paraphrase("Where is order {order_id}?", random.Random(0))
    assert out != "Where is order {order_id}?" and "{order_id}" in out
    assert p.stats == {"rules": 1}


@pytest.mark.parametrize(("reply", "accepted", "why"), [
    ("Could you tell me where order {order_id} is?", True, None),
    ("", False, "empty"),
    ("where is ORDER {order_id}?", False, "unchanged"),
    ("Where is my order?", False, "placeholders"),
    ("Could you tell me where order {order_id} is" + ", please" * 30, False, "too_long"),
])
def test_model_replies_are_checked(reply: str, accepted: bool, why: str | None) -> None:
    seen: list[list[dict[str, str]]] = []

    def model(messages: list[dict[str, str]]) -> str:
        seen.append(messages)
        return reply + "\nsecond line is ignored" if reply else "  "

    p = ModelParaphraser(model, "model:v7")
    out = p.paraphrase("Where is order {order_id}?", random.Random(1))
    assert seen[0][0] == {"role": "system", "content": PARAPHRASE_INSTRUCTION}
    assert seen[0][1] == {"role": "user", "content": "Where is order {order_id}?"}
    if accepted:
        assert out == reply and p.stats == {"model_accepted": 1}
    else:
        assert "{order_id}" in out and p.stats[f"model_rejected:{why}"] == 1 and p.stats["fallback_rules"] == 1


def test_protected_values_and_model_errors() -> None:
    p = ModelParaphraser(lambda m: "Where is the order?", "m")
    p.paraphrase("Where is order 4512?", random.Random(2), protect=["4512"])
    assert p.stats["model_rejected:protected_value"] == 1

    def broken(messages: list[dict[str, str]]) -> str:
        raise RuntimeError("CUDA out of memory")

    q = ModelParaphraser(broken, "m")
    assert "{x}" in q.paraphrase("Tell me about {x}", random.Random(3))
    assert q.stats["model_error:RuntimeError"] == 1 and q.stats["fallback_rules"] == 1
    assert q.paraphrase("", random.Random(3)) == ""
