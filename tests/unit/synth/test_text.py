"""Rule-based text transformations: deterministic, placeholders and values untouched."""

from __future__ import annotations

import json
import random

import pytest

from agentgym.trainers.synth import text as t


@pytest.mark.parametrize(("text", "values", "template", "masked"), [
    ("Where is order 4512?", {"order_id": "4512"}, "Where is order {order_id}?", {"order_id": "4512"}),
    ("Where is order 4512?", {"order_id": 4512}, "Where is order {order_id}?", {"order_id": "4512"}),
    ("order 14512 please", {"order_id": "4512"}, "order 14512 please", {}),  # whole tokens only
    ("Weather in New York please", {"city": "New York", "x": "York"}, "Weather in {city} please", {"city": "New York"}),
    ("weather in oslo", {"city": "Oslo"}, "weather in {city}", {"city": "oslo"}),
    ("use {curly} braces 42", {"n": "42"}, "use {curly} braces 42", {}),  # literal braces: left alone
    ("flag true", {"flag": True}, "flag true", {}),  # booleans are not masked
])
def test_mask_values(text: str, values: dict[str, object], template: str, masked: dict[str, str]) -> None:
    assert t.mask_values(text, values) == (template, masked)
    assert t.fill(template, masked) == text


def test_fill_leaves_unknown_slots() -> None:
    assert t.fill("{a} and {b}", {"a": 1}) == "1 and {b}"


@pytest.mark.parametrize(("text", "type_name", "value"), [
    ("42", "int", 42), ("-1", "int", -1), ("007", "int", "007"), ("1e309", "int", "1e309"), ("12.5", "float", 12.5),
    ("Oslo", "int", "Oslo"), ("42", "str", "42"),
])
def test_typed_value(text: str, type_name: str, value: object) -> None:
    assert t.typed_value(text, type_name) == value


def test_transformations_are_deterministic_per_seed() -> None:
    src = "Where is order {order_id}? I want a refund for it, please."
    for fn in (lambda r: t.paraphrase_rules(src, r), lambda r: t.typos(src, r), lambda r: t.translate(src, "de", r),
               lambda r: t.inject(src, r), lambda r: t.long_context(src, r, 2000)):
        assert fn(random.Random(5)) == fn(random.Random(5))
    outs = {t.paraphrase_rules(src, random.Random(s)) for s in range(20)}
    assert len(outs) > 5


def test_paraphrase_changes_text_and_keeps_placeholders_and_numbers() -> None:
    rng = random.Random(0)
    for src in ["Where is order {order_id}?", "What's the weather in {city}?", "I want a refund for order 4512",
                "How do I {topic}?"]:
        for _ in range(20):
            out = t.paraphrase_rules(src, rng)
            assert " ".join(out.lower().split()) != " ".join(src.lower().split())
            assert t.placeholders(out) == t.placeholders(src)
            if "4512" in src:
                assert "4512" in out


def test_synonym_swap_keeps_case_and_whole_words() -> None:
    rng = random.Random(1)
    out = t.synonym_swap("Where is my order? Somewhere is fine.", rng, [["where is", "where's"]], max_swaps=5)
    assert out == "Where's my order? Somewhere is fine."


def test_reorder_fronts_a_prepositional_phrase_or_swaps_sentences() -> None:
    rng = random.Random(2)
    assert t.reorder("I want a refund for order {order_id}", rng) == "For order {order_id}, I want a refund"
    assert t.reorder("Hello there. Where is my parcel?", rng) == "Where is my parcel? Hello there."
    assert t.reorder("Refund", rng) == "Refund"


def test_typos_never_touch_protected_values_and_always_change_something() -> None:
    rng = random.Random(3)
    for _ in range(50):
        out = t.typos("What's the weather in Lisbon for order 4512?", rng, protect=["Lisbon"])
        assert out != "What's the weather in Lisbon for order 4512?"
        assert "Lisbon" in out and "4512" in out
    assert t.typos("42 17", rng) == "42 17"  # nothing to misspell


def test_translate_every_language_keeps_slot_values() -> None:
    rng = random.Random(4)
    for lang in t.LANGUAGES:
        out = t.translate("Where is my order 4512 in Oslo?", lang, rng, protect=["Oslo"])
        assert "4512" in out and "Oslo" in out
        assert out != "Where is my order 4512 in Oslo?"
    with pytest.raises(KeyError):
        t.translate("x", "xx", rng)


def test_long_context_reaches_the_target_and_keeps_the_request() -> None:
    rng = random.Random(5)
    for target in (500, 4000, 12000):
        out, where = t.long_context("Where is order 4512?", rng, target)
        assert len(out) >= target and "Where is order 4512?" in out and where in ("start", "middle", "end")
    a, _ = t.long_context("x", random.Random(1), 3000)
    b, _ = t.long_context("x", random.Random(2), 3000)
    assert a != b


def test_injections_and_malformed_results() -> None:
    rng = random.Random(6)
    out, placement = t.inject("Where is order 4512?", rng)
    assert any(a in out for a in t.INJECTIONS) and placement in ("prefix", "suffix", "middle")
    for kind in t.MALFORMED_KINDS:
        value = t.malformed_tool_result(kind, rng, {"order_id": "4512"})
        if kind in ("truncated_json", "html_error", "encoding"):
            with pytest.raises(ValueError):
                json.loads(value)
        if kind == "empty":
            assert value == ""
    with pytest.raises(KeyError):
        t.malformed_tool_result("nope", rng)


def test_boundary_values_differ_from_the_original() -> None:
    rng = random.Random(7)
    for _ in range(30):
        assert t.boundary_value("4512", rng) in t.BOUNDARY_NUMBERS
        assert t.boundary_value("Oslo", rng) in t.BOUNDARY_STRINGS
        assert t.boundary_value("0", rng, ["0", "-1"]) == "-1"
