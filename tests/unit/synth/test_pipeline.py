"""One batch: determinism with a seed, quotas, exhaustion, broken plugins, the report."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.unit.synth.runs import demo_runs
from agentgym.trainers.synth.bases import bases_from_runs, collect_slot_values
from agentgym.trainers.synth.clusters import cluster_failures
from agentgym.trainers.synth.exceptions import SynthError
from agentgym.trainers.synth.generators import (
    EdgeCaseGenerator,
    FailureSeededGenerator,
    FunctionGenerator,
    GenerationContext,
    ParaphraseGenerator,
)
from agentgym.trainers.synth.pipeline import generate_batch, generator_weights
from agentgym.trainers.synth.scenario import EDGE_FAMILIES, scenario_text
from agentgym.trainers.synth.spec import DomainSpec, SpecGenerator, builtin_spec
from agentgym.trainers.synth.validation import BatchValidator, ValidationConfig


def _setup(n_runs: int = 80) -> tuple[GenerationContext, BatchValidator, list[Any]]:
    runs = demo_runs(n_runs)
    bases = bases_from_runs(runs)
    spec = DomainSpec.load(builtin_spec("tool_routing"))
    ctx = GenerationContext("t", "a", real_bases=bases, clusters=cluster_failures(bases),
                            slot_values=collect_slot_values(bases), specs=[spec], long_chars=1500, runs=runs)
    validator = BatchValidator(ValidationConfig(), real_inputs=[r.messages for r in runs])
    gens = [ParaphraseGenerator(), FailureSeededGenerator(), EdgeCaseGenerator(), SpecGenerator(spec)]
    return ctx, validator, gens


def _batch(seed: int, n: int = 150) -> list[Any]:
    ctx, validator, gens = _setup()
    return generate_batch(ctx, gens, n, seed, validator).scenarios


def test_same_seed_same_scenarios_other_seed_other_scenarios() -> None:
    a, b, c = _batch(11), _batch(11), _batch(12)
    assert [s.scenario_id for s in a] == [s.scenario_id for s in b]
    assert [s.row() for s in a] == [s.row() for s in b]
    assert len({s.scenario_id for s in a} & {s.scenario_id for s in c}) < len(a) / 2


def test_a_batch_fills_its_quotas_with_unique_valid_scenarios() -> None:
    ctx, validator, gens = _setup()
    result = generate_batch(ctx, gens, 200, 3, validator)
    r = result.report
    assert r.accepted == len(result.scenarios) == 200 and r.shortfall == 0
    assert r.quotas == {"paraphrase": 70, "failure": 50, "edge": 40, "spec:tool_routing": 40}
    assert r.by_family == {"paraphrase": 70, "failure": 50, "edge": 40, "domain": 40}
    assert set(r.edge_families) == set(EDGE_FAMILIES)
    assert len({s.key for s in result.scenarios}) == 200
    assert r.candidates == r.accepted + sum(r.rejected.values()) + r.surplus
    assert set(r.rejected) <= {"duplicate_exact", "duplicate_near", "duplicate_of_real_exact", "duplicate_of_real_near"}
    assert 0 < r.diversity["score"] <= 1 and r.diversity["n"] == 200
    assert r.timing["scenarios_per_s"] > 0 and r.paraphraser["name"] == "rules"
    text = r.format_text()
    assert "200/200 scenarios" in text and "diversity: score" in text and "scenarios/s" in text


def test_weights_follow_the_mix_and_split_within_a_family() -> None:
    gens = [ParaphraseGenerator(), EdgeCaseGenerator(), FunctionGenerator("p1", lambda c, n, r: []),
            FunctionGenerator("p2", lambda c, n, r: [])]
    assert generator_weights(gens, {"paraphrase": 0.5, "failure": 0.0, "edge": 0.3, "domain": 0.2}) == [0.5, 0.3, 0.1, 0.1]


def test_a_generator_with_nothing_to_give_hands_its_quota_to_the_others() -> None:
    runs = demo_runs(60, failure_rate=0.0)
    bases = bases_from_runs(runs)
    ctx = GenerationContext("t", "a", real_bases=bases, clusters=cluster_failures(bases),
                            slot_values=collect_slot_values(bases), long_chars=1000)
    validator = BatchValidator(ValidationConfig(), real_inputs=[r.messages for r in runs])

    def stuck(ctx: GenerationContext, count: int, rng: random.Random) -> list[dict[str, Any]]:
        return [{"prompt": "always the same request"} for _ in range(count)]

    def broken(ctx: GenerationContext, count: int, rng: random.Random) -> list[Any]:
        raise RuntimeError("plugin bug")

    gens = [ParaphraseGenerator(), FailureSeededGenerator(), FunctionGenerator("stuck", stuck),
            FunctionGenerator("broken", broken)]
    r = generate_batch(ctx, gens, 60, 1, validator).report
    assert "failure" not in r.quotas  # no failed runs: not active
    assert r.generator_errors == {"broken": "RuntimeError: plugin bug"}
    assert r.by_generator.get("stuck") == 1 and r.rejected["duplicate_exact"] >= 1
    assert r.accepted == 60 and r.by_family["paraphrase"] == 59


def test_plugin_items_that_break_the_schema_are_counted_by_field() -> None:
    ctx = GenerationContext("t", "a")

    def sloppy(ctx: GenerationContext, count: int, rng: random.Random) -> list[Any]:
        return [{"prompt": f"request {i} " + "x" * i, "colour": "red"} if i % 3 == 0 else
                {"prompt": f"request number {i} with words {rng.random()}", "family": "paraphrase"} if i % 3 == 1 else
                {"prompt": f"a valid request about item {i} {rng.random()}"} for i in range(count)]

    r = generate_batch(ctx, [FunctionGenerator("sloppy", sloppy)], 9, 0, BatchValidator(ValidationConfig()), max_rounds=1).report
    # ceil(9 * 1.5) = 14 candidates: 5 with an unknown field, 5 "paraphrase" without lineage, 4 valid
    assert r.candidates == 14
    assert r.rejected == {"schema_invalid:colour": 5, "schema_invalid:source_trace_ids": 5}
    assert r.accepted == 4 and r.shortfall == 5


def test_texts_compared_leave_out_the_system_prompt() -> None:
    s = _batch(5, n=20)[0]
    assert not scenario_text(s.messages).startswith("system:")


def test_generator_names_must_be_unique() -> None:
    with pytest.raises(SynthError, match="unique"):
        generate_batch(GenerationContext("t", "a"), [EdgeCaseGenerator(), EdgeCaseGenerator()], 5, 0,
                       BatchValidator(ValidationConfig()))
