"""Generators by reference: built-ins, shipped specs, YAML paths, module:attr, and entry points."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentgym.trainers.synth.exceptions import GeneratorLoadError, SpecError
from agentgym.trainers.synth.generators import (
    EdgeCaseGenerator,
    FailureSeededGenerator,
    FunctionGenerator,
    GenerationContext,
    ParaphraseGenerator,
)
from agentgym.trainers.synth.plugins import ENTRY_POINT_GROUP, as_generator, installed_generators, load_generator
from agentgym.trainers.synth.spec import SpecGenerator, builtin_spec

PLUGIN_SOURCE = '''
import random


def faq(ctx, count, rng):
    """A function plugin: yields mappings."""
    return [{"prompt": f"How do I change setting {rng.randint(1, 10**6)}?", "expected_tool": "search_faq",
             "tags": ["plugin:faq"]} for _ in range(count)]


class BillingGenerator:
    """A class plugin (instantiated without arguments)."""

    name = "billing"
    family = "domain"

    def generate(self, ctx, count, rng):
        return [{"prompt": f"Why was I charged {rng.randint(1, 999)} EUR twice?"} for _ in range(count)]


NOT_A_GENERATOR = 42
'''


def test_builtin_names_and_shipped_specs() -> None:
    assert isinstance(load_generator("paraphrase"), ParaphraseGenerator)
    assert isinstance(load_generator("failure"), FailureSeededGenerator)
    assert isinstance(load_generator(" edge "), EdgeCaseGenerator)
    g = load_generator("tool_routing")
    assert isinstance(g, SpecGenerator) and g.name == "spec:tool_routing" and g.family == "domain"
    assert isinstance(load_generator(str(builtin_spec("tool_routing"))), SpecGenerator)


def test_module_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _write_plugin(tmp_path, monkeypatch)
    fn = load_generator(f"{module}:faq")
    assert isinstance(fn, FunctionGenerator) and fn.name == f"{module}:faq" and fn.family == "domain"
    items = list(fn.generate(GenerationContext("t", "a"), 3, random.Random(0)))
    assert len(items) == 3 and items[0]["expected_tool"] == "search_faq"
    cls = load_generator(f"{module}:BillingGenerator")
    assert cls.name == "billing" and len(list(cls.generate(GenerationContext("t", "a"), 2, random.Random(0)))) == 2
    with pytest.raises(GeneratorLoadError, match="is a int"):
        load_generator(f"{module}:NOT_A_GENERATOR")
    with pytest.raises(GeneratorLoadError, match="cannot be loaded"):
        load_generator(f"{module}:missing")
    with pytest.raises(GeneratorLoadError, match="cannot be loaded"):
        load_generator("no_such_module_xyz:thing")


def test_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _write_plugin(tmp_path, monkeypatch)
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{module}-billing = {module}:BillingGenerator\n{module}-faq = {module}:faq\n"
        f"{module}-broken = {module}_missing:thing\n")
    installed = installed_generators()
    assert {f"{module}-billing", f"{module}-faq"} <= set(installed)
    assert load_generator(f"{module}-billing").name == "billing"
    faq = load_generator(f"{module}-faq")
    assert isinstance(faq, FunctionGenerator) and faq.name == f"{module}-faq"
    with pytest.raises(GeneratorLoadError, match="entry point"):
        load_generator(f"{module}-broken")


def test_unknown_references_list_what_exists() -> None:
    with pytest.raises(GeneratorLoadError) as e:
        load_generator("nonsense")
    assert "paraphrase" in str(e.value) and "tool_routing" in str(e.value)
    with pytest.raises(GeneratorLoadError, match="package.module:attr"):
        load_generator(":x")
    with pytest.raises(SpecError):
        load_generator("/no/such/spec.yaml")


def test_as_generator_rejects_classes_that_need_arguments() -> None:
    class NeedsArgs:
        name, family = "x", "domain"

        def __init__(self, required: Any) -> None:
            pass

        def generate(self, ctx: Any, count: int, rng: Any) -> list[Any]:
            return []

    with pytest.raises(GeneratorLoadError, match="without arguments"):
        as_generator(NeedsArgs, "x")


def _write_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    module = f"synth_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return module
