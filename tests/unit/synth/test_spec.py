"""YAML domain specs: loading, errors naming the field, and a spec end to end through a batch."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentgym.trainers.synth.bases import expected_for
from agentgym.trainers.synth.exceptions import SpecError
from agentgym.trainers.synth.generators import EdgeCaseGenerator, GenerationContext
from agentgym.trainers.synth.paraphrase import RuleParaphraser
from agentgym.trainers.synth.pipeline import generate_batch
from agentgym.trainers.synth.spec import DomainSpec, SpecGenerator, builtin_spec
from agentgym.trainers.synth.text import SYNONYMS
from agentgym.trainers.synth.validation import BatchValidator, ValidationConfig

TOOL_ARGS = {"get_weather": "city", "lookup_order": "order_id", "create_refund": "order_id", "search_faq": "query"}


def _minimal(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "mini",
        "slots": {"city": {"values": ["Oslo", "Lima"]}, "n": {"range": [1, 9]}},
        "intents": [{"name": "w", "tool": "get_weather", "arguments": {"city": "{city}"},
                     "templates": ["weather in {city}"], "answer": "ok {city}"}],
    }
    doc.update(over)
    return doc


def test_the_shipped_tool_routing_spec_loads() -> None:
    spec = DomainSpec.load(builtin_spec("tool_routing"))
    assert spec.name == "tool_routing"
    assert {i.tool for i in spec.model.intents} == set(TOOL_ARGS)
    assert spec.model.system and spec.synonyms


@pytest.mark.parametrize(("doc", "message"), [
    (_minimal(intents=[{"name": "w", "tool": "t", "templates": ["weather in {citty}"]}]),
     "intents[0].templates[0]: slot {citty} is not defined under slots"),
    (_minimal(intents=[{"name": "w", "arguments": {"city": "{city}"}, "templates": ["x"]}]),
     "intents[0].arguments: arguments need a tool"),
    (_minimal(intents=[{"name": "w", "tool": "t", "templates": ["x"], "answer": "{nope}"}]),
     "intents[0].answer: slot {nope} is not defined"),
    (_minimal(intents=[{"name": "w", "tool": "t", "templates": ["x"], "translations": {"es": ["{bad}"]}}]),
     "intents[0].translations.es[0]: slot {bad}"),
    (_minimal(intents=[]), "intents: List should have at least 1 item"),
    (_minimal(intents=[{"name": "w", "templates": []}]), "intents.0.templates: List should have at least 1 item"),
    (_minimal(slots={"city": {"boundary": ["x"]}}), "slots.city: a slot needs values or a range"),
    (_minimal(slots={"n": {"range": [9, 1]}}), "slots.n: range [9, 1] is empty"),
    (_minimal(colour="red"), "colour: Extra inputs are not permitted"),
    (_minimal(name="has space"), "name: String should match pattern"),
    (_minimal(intents=[{"name": "w", "tool": "t", "templates": ["x"], "argument_types": {"a": "int"}}]),
     "intents[0].argument_types.a: not an argument of the intent"),
])
def test_invalid_specs_name_the_file_and_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as e:
        DomainSpec.from_dict(doc, "mini.yaml")
    assert str(e.value).startswith("mini.yaml: ") and message in str(e.value)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        DomainSpec.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        DomainSpec.load(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        DomainSpec.load(tmp_path / "list.yaml")


def test_yaml_numbers_become_text_and_argument_types_convert() -> None:
    spec = DomainSpec.from_dict(_minimal(
        slots={"n": {"values": [7, 8.5]}},
        intents=[{"name": "x", "tool": "t", "arguments": {"n": "{n}", "fixed": 3}, "argument_types": {"n": "float"},
                  "templates": ["item {n}"], "answer": "got {n}"}]))
    assert spec.model.slots["n"].values == ["7", "8.5"]
    rng = random.Random(0)
    for _ in range(5):
        b = spec.sample_base(rng)
        tool, args, answer = expected_for(b, b.values)
        assert tool == "t" and args == {"n": float(b.values["n"]), "fixed": 3} and answer == f"got {b.values['n']}"


def test_a_spec_from_yaml_end_to_end(tmp_path: Path) -> None:
    # the shipped spec written to a file of our own, loaded, generated from and validated
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(builtin_spec("tool_routing").read_text()), allow_unicode=True))
    spec = DomainSpec.load(path)
    ctx = GenerationContext("t", "a", specs=[spec], paraphraser=RuleParaphraser([*SYNONYMS, *spec.synonyms]),
                            long_chars=1200)
    result = generate_batch(ctx, [SpecGenerator(spec), EdgeCaseGenerator()], 120, 9, BatchValidator(ValidationConfig()))
    r = result.report
    assert r.accepted == 120 and r.quotas == {"spec:tool_routing": 60, "edge": 60}
    domain = [s for s in result.scenarios if s.family == "domain"]
    assert {t for s in domain for t in s.tags if t.startswith("intent:")} == {f"intent:{i}" for i in ("weather", "order", "refund", "faq")}
    for s in domain:
        assert s.messages[0] == {"role": "system", "content": spec.model.system}
        arg = TOOL_ARGS[s.expected_tool]  # type: ignore[index]
        value = s.expected_arguments[arg]  # type: ignore[index]
        assert value in s.messages[-1]["content"]
        assert s.expected_answer == f"Done: {s.expected_tool}({value})"
        assert not s.source_trace_ids and s.group.startswith("spec-")
    assert len(r.edge_families) == 7
