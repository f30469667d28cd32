"""Bases, failure clusters and the built-in generators, on demo-like runs."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from tests.unit.synth.runs import TOOLS, demo_runs
from agentgym.trainers.synth.bases import base_from_run, bases_from_runs, collect_slot_values, expected_for
from agentgym.trainers.synth.clusters import allocate, cluster_failures
from agentgym.trainers.synth.exceptions import GeneratorConfigError
from agentgym.trainers.synth.generators import (
    EdgeCaseGenerator,
    FailureSeededGenerator,
    GenerationContext,
    ParaphraseGenerator,
)
from agentgym.trainers.synth.scenario import EDGE_FAMILIES, SourceRun, ToolCall, schema_problems
from agentgym.trainers.synth.spec import DomainSpec, builtin_spec


def _ctx(runs: list[SourceRun], **kw: object) -> GenerationContext:
    bases = bases_from_runs(runs)
    return GenerationContext("t", "a", real_bases=bases, clusters=cluster_failures(bases),
                             slot_values=collect_slot_values(bases), long_chars=1500, runs=runs, **kw)  # type: ignore[arg-type]


def _run(trace: str, text: str, tool: str, args: dict[str, object], *, label: str | None = "success",
         output: str | None = None, error: str | None = None, status: str = "ok", correction: str | None = None) -> SourceRun:
    return SourceRun(trace, ({"role": "user", "content": text},), output, status, label, correction,
                     (ToolCall(tool, args, json.dumps(args), error),))


def test_a_successful_run_gives_a_template_with_its_tool_call_and_answer() -> None:
    b = base_from_run(_run("t1", "Where is order 4512?", "lookup_order", {"order_id": 4512}, output="Order 4512 shipped."))
    assert (b.template, dict(b.values), b.tool) == ("Where is order {order_id}?", {"order_id": "4512"}, "lookup_order")
    assert b.answer_template == "Order {order_id} shipped." and b.failure is None
    # re-filled: the integer argument stays an integer, the answer follows
    assert expected_for(b, {"order_id": "77"}) == ("lookup_order", {"order_id": 77}, "Order 77 shipped.")
    assert expected_for(b, {"order_id": "0042"}) == ("lookup_order", {"order_id": "0042"}, "Order 0042 shipped.")


def test_a_failed_run_learns_its_expectation_from_a_success_with_the_same_template() -> None:
    ok = _run("t1", "Where is order 4512?", "lookup_order", {"order_id": "4512"}, output="Done: lookup_order(4512)")
    bad = _run("t2", "Where is order 88?", "lookup_order", {"order_id": "88"}, label="failure", error="Timeout")
    other = _run("t3", "Weather in Oslo?", "get_weather", {"city": "Oslo"}, label=None, status="timeout")
    fixed = _run("t4", "Refund 9", "create_refund", {"order_id": "9"}, label="failure", correction="Refunded order 9.")
    b_ok, b_bad, b_other, b_fixed = bases_from_runs([ok, bad, other, fixed])
    assert b_bad.failure == "tool:lookup_order" and b_bad.tool == "lookup_order"
    assert expected_for(b_bad, b_bad.values) == ("lookup_order", {"order_id": "88"}, "Done: lookup_order(88)")
    assert b_other.failure == "status:timeout" and b_other.tool is None and b_other.answer_template is None
    assert b_fixed.tool is None and expected_for(b_fixed, {"order_id": "5"})[2] == "Refunded order 5."
    assert collect_slot_values([b_ok, b_bad, b_other]) == {"order_id": ["4512", "88"], "city": ["Oslo"]}


def test_failures_cluster_by_failing_tool_then_similarity() -> None:
    runs = [_run(f"w{i}", f"Where is order {1000 + i}?", "lookup_order", {"order_id": str(1000 + i)}, label="failure",
                 error="Timeout") for i in range(6)]
    runs += [_run(f"s{i}", f"Has my parcel {2000 + i} shipped already?", "lookup_order", {"order_id": str(2000 + i)},
                  label="failure", error="Timeout") for i in range(2)]
    runs += [_run("f1", "Weather in Oslo", "get_weather", {"city": "Oslo"}, label="failure", error="500")]
    runs += [_run("ok", "Where is order 1?", "lookup_order", {"order_id": "1"})]
    clusters = cluster_failures(bases_from_runs(runs))
    assert [(c.key, c.size) for c in clusters] == [("tool:lookup_order", 6), ("tool:lookup_order", 2), ("tool:get_weather", 1)]
    assert clusters[0].size == 6 and clusters[0].weight == pytest.approx(6 / 3)
    assert clusters == cluster_failures(bases_from_runs(runs))  # stable


@pytest.mark.parametrize(("total", "weights", "parts"), [
    (10, [1, 1], [5, 5]), (10, [6, 2, 1], [7, 2, 1]), (3, [1, 1, 1, 1], [1, 1, 1, 0]), (0, [1], [0]), (5, [0, 0], [0, 0]),
    (7, [0.35, 0.25, 0.2, 0.2], [3, 2, 1, 1]),
])
def test_allocate_largest_remainder(total: int, weights: list[float], parts: list[int]) -> None:
    assert allocate(total, weights) == parts
    assert sum(parts) == (total if sum(weights) > 0 else 0)


def test_paraphrase_generator_keeps_expectations_consistent_with_the_request() -> None:
    ctx = _ctx(demo_runs(60))
    out = ParaphraseGenerator().generate(ctx, 80, random.Random(1))
    assert len(out) == 80
    hows = Counter(t for s in out for t in s.tags)
    assert hows["variation:paraphrase"] and hows["variation:refill"] and hows["variation:paraphrase+refill"]
    for s in out:
        assert not schema_problems(s), s
        assert s.family == "paraphrase" and len(s.source_trace_ids) == 1
        assert s.expected_tool in {tool for tool, _ in TOOLS.values()}
        (value,) = s.expected_arguments.values()  # type: ignore[union-attr]
        assert str(value) in s.messages[-1]["content"]
        assert s.expected_answer == f"Done: {s.expected_tool}({value})"


def test_failure_seeded_generator_gives_bigger_clusters_more() -> None:
    ctx = _ctx(demo_runs(120, failure_rate=0.3))
    assert len(ctx.clusters) >= 3
    out = FailureSeededGenerator().generate(ctx, 60, random.Random(2))
    per_cluster = Counter(t for s in out for t in s.tags if t.startswith("cluster:"))
    sizes = {f"cluster:{c.cluster_id}": c.size for c in ctx.clusters}
    assert sum(per_cluster.values()) == 60
    ranked = sorted(sizes, key=lambda k: -sizes[k])
    assert per_cluster[ranked[0]] >= per_cluster[ranked[-1]]
    assert per_cluster[ranked[0]] == pytest.approx(60 * sizes[ranked[0]] / sum(sizes.values()), abs=1)
    for s in out:
        assert s.family == "failure" and s.source_trace_ids and s.weight > 0
        assert any(t.startswith("failure:tool:") for t in s.tags)
    assert not FailureSeededGenerator().available(_ctx(demo_runs(40, failure_rate=0.0)))


def test_every_edge_family_appears_with_its_expectation() -> None:
    ctx = _ctx(demo_runs(40))
    out = EdgeCaseGenerator().generate(ctx, 3 * len(EDGE_FAMILIES), random.Random(3))
    fams = Counter(s.tags[0] for s in out)
    assert set(fams) == {f"edge:{f}" for f in EDGE_FAMILIES}
    for s in out:
        assert not schema_problems(s), s
        fam = s.tags[0].split(":", 1)[1]
        request = next(m["content"] for m in s.messages if m["role"] == "user")
        if fam == "empty":
            assert not request.strip() or request.strip(".?") == "" or not request.isascii()
            assert s.expected_tool is None and s.expected_answer is None
        elif fam == "long":
            assert len(request) >= 1500 and s.expected_answer is not None
        elif fam == "malformed_tool_result":
            assert [m["role"] for m in s.messages][-2:] == ["assistant", "tool"] and s.expected_tool is None
        elif fam == "multilingual":
            assert any(t.startswith("lang:") for t in s.tags) and s.expected_tool and s.expected_answer is None
        elif fam in ("typos", "injection"):
            (value,) = s.expected_arguments.values()  # type: ignore[union-attr]
            assert str(value) in request and s.expected_answer
        elif fam == "boundary":
            (value,) = s.expected_arguments.values()  # type: ignore[union-attr]
            assert str(value) in request and s.expected_answer == f"Done: {s.expected_tool}({value})"


def test_edge_cases_work_from_a_spec_alone_and_use_its_translations_and_boundaries() -> None:
    spec = DomainSpec.load(builtin_spec("tool_routing"))
    ctx = GenerationContext("t", "a", specs=[spec], long_chars=800)
    gen = EdgeCaseGenerator(["multilingual", "boundary"])
    assert gen.available(ctx) and not EdgeCaseGenerator().available(GenerationContext("t", "a"))
    out = gen.generate(ctx, 60, random.Random(4))
    assert {s.tags[0] for s in out} == {"edge:multilingual", "edge:boundary"}
    assert any("translation:template" in s.tags for s in out)
    boundary_values = {v for slot in spec.model.slots.values() for v in slot.boundary}
    assert any(str(v) in boundary_values for s in out if s.tags[0] == "edge:boundary"
               for v in (s.expected_arguments or {}).values())
    assert all(not s.source_trace_ids for s in out)
    with pytest.raises(GeneratorConfigError, match="unknown edge families"):
        EdgeCaseGenerator(["sarcasm"])
