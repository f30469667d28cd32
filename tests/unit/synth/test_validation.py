"""Batch validation: schema, length, held-out leaks, duplicates; the diversity score."""

from __future__ import annotations

import pytest

from agentgym.trainers.synth.exceptions import ScenarioSchemaError
from agentgym.trainers.synth.scenario import Scenario, coerce_scenario, schema_problems
from agentgym.trainers.synth.validation import BatchValidator, ValidationConfig, diversity

SYSTEM = {"role": "system", "content": "You route requests to tools."}


def sc(text: str, *, family: str = "edge", system: bool = True, **kw: object) -> Scenario:
    msgs = ([SYSTEM] if system else []) + [{"role": "user", "content": text}]
    return Scenario(messages=msgs, family=family, generator="test", **kw)  # type: ignore[arg-type]


LONG_REQUEST = "I ordered a blue jacket in size medium three weeks ago and it still has not arrived, where is order 4512?"


@pytest.mark.parametrize(("scenario", "reason"), [
    (sc("ok"), None),
    (Scenario(messages=[], family="edge", generator="g"), "schema_invalid:messages"),
    (Scenario(messages=[{"role": "robot", "content": "x"}], family="edge", generator="g"), "schema_invalid:messages"),
    (Scenario(messages=[SYSTEM], family="edge", generator="g"), "schema_invalid:messages"),  # no user message
    (sc("x", family="mystery"), "schema_invalid:family"),
    (sc("x", family="paraphrase"), "schema_invalid:source_trace_ids"),  # made from real runs: needs lineage
    (sc("x", source_trace_ids=[""]), "schema_invalid:source_trace_ids"),
    (sc("x", expected_arguments={"a": 1}), "schema_invalid:expected_arguments"),  # arguments without a tool
    (sc("x", expected_tool="t", expected_arguments={"a": object()}), "schema_invalid:expected_arguments"),
    (sc("x", weight=0.0), "schema_invalid:weight"),
    (sc("x", weight=float("nan")), "schema_invalid:weight"),
    (sc("x" * 20001), "too_long"),
])
def test_schema_and_length(scenario: Scenario, reason: str | None) -> None:
    assert BatchValidator(ValidationConfig()).check(scenario) == reason


def test_exact_and_near_duplicates_within_the_batch_are_rejected() -> None:
    v = BatchValidator(ValidationConfig(near_threshold=0.9))
    assert v.check(sc(LONG_REQUEST)) is None
    # case and whitespace do not make a new scenario; nor does another system prompt
    assert v.check(sc("  " + LONG_REQUEST.upper() + " ")) == "duplicate_exact"
    assert v.check(Scenario(messages=[{"role": "system", "content": "other"}, {"role": "user", "content": LONG_REQUEST}],
                            family="edge", generator="g")) == "duplicate_exact"
    assert v.check(sc(LONG_REQUEST.replace("blue", "blue,"))) == "duplicate_near"
    assert v.check(sc("What's the weather in Oslo tomorrow?")) is None
    assert v.accepted == 2 and dict(v.rejected) == {"duplicate_exact": 2, "duplicate_near": 1}
    assert v.examples["duplicate_near"][0].startswith("user: I ordered")


def test_duplicates_of_real_inputs_are_rejected() -> None:
    real = [[SYSTEM, {"role": "user", "content": LONG_REQUEST}], [{"role": "user", "content": "Where is order 7?"}]]
    v = BatchValidator(ValidationConfig(), real_inputs=real)
    assert v.real_count == 2
    assert v.check(sc("where is ORDER 7?")) == "duplicate_of_real_exact"
    assert v.check(sc(LONG_REQUEST + "!")) == "duplicate_of_real_near"
    assert v.check(sc("Where is order 8?")) is None  # short texts differ enough below 0.9


def test_held_out_prompts_are_never_leaked() -> None:
    held = [[{"role": "user", "content": LONG_REQUEST}]]
    v = BatchValidator(ValidationConfig(leak_threshold=0.8), real_inputs=held, held_out=held)
    assert v.held_out_count == 1
    assert v.check(sc(LONG_REQUEST)) == "eval_leak_exact"  # before it counts as a copy of a real input
    assert v.check(sc(LONG_REQUEST.replace("three weeks", "two weeks"))) == "eval_leak_near"
    assert v.check(sc("Where is my parcel?")) is None
    assert dict(v.rejected) == {"eval_leak_exact": 1, "eval_leak_near": 1}


def test_exact_only_thresholds() -> None:
    v = BatchValidator(ValidationConfig(near_threshold=1.0, leak_threshold=1.0), held_out=[[{"role": "user", "content": "a b c"}]])
    assert v.check(sc(LONG_REQUEST)) is None
    assert v.check(sc(LONG_REQUEST + ".")) is None
    assert v.check(sc("A B  C")) == "eval_leak_exact"


def test_coerce_scenario_from_mappings() -> None:
    s = coerce_scenario({"prompt": "hi", "expected_tool": "t", "tags": ["x"]}, "domain", "plug")
    assert (s.messages, s.family, s.generator, s.tags) == ([{"role": "user", "content": "hi"}], "domain", "plug", ["x"])
    assert not schema_problems(s)
    for bad, field in [({"prompt": "x", "colour": 1}, "colour"), ({"tags": []}, "messages"), (42, "scenario"),
                       ({"prompt": [{"role": "user"}]}, "messages"), ({"prompt": "x", "weight": "heavy"}, "weight")]:
        with pytest.raises(ScenarioSchemaError) as e:
            coerce_scenario(bad, "domain", "plug")
        assert e.value.field == field


def test_scenario_ids_and_rows_round_trip() -> None:
    s = sc("Where is order 4512?", expected_tool="lookup_order", expected_arguments={"order_id": 4512},
           expected_answer="Done", tags=["edge:typos"], source_trace_ids=["t1"], group="g1")
    assert s.scenario_id.startswith("sc-") and len(s.scenario_id) == 19
    assert sc("WHERE is order 4512?", expected_tool="lookup_order", expected_arguments={"order_id": 4512},
              expected_answer="done").scenario_id == s.scenario_id
    assert sc("Where is order 4512?").scenario_id != s.scenario_id
    row = s.row()
    assert row["completion"] == [{"role": "assistant", "content": "Done"}] and row["trace_id"] == "t1"
    back = Scenario.from_row(row)
    assert back == s


def test_diversity() -> None:
    same = diversity(["where is order 42"] * 5)
    assert same.minhash_spread == 0.0 and same.distinct_1 == pytest.approx(4 / 20)
    varied = diversity(["where is order 42", "what's the weather in Oslo", "refund my broken jacket please",
                        "how do I reset my password", "cancel the subscription today"])
    assert varied.minhash_spread > 0.8 and varied.distinct_1 > 0.8 and varied.distinct_2 == 1.0
    assert 0 <= varied.score <= 1 and varied.score > same.score
    assert diversity([]).n == 0 and diversity(["one"]).minhash_spread == 0.0
    # sampled pairs for large sets: deterministic, close to the exact value
    texts = [f"request number {i} about topic {i % 7} and item {i * 31 % 101}" for i in range(120)]
    exact = diversity(texts, max_pairs=10_000).minhash_spread
    sampled = diversity(texts, max_pairs=1000)
    assert sampled == diversity(texts, max_pairs=1000)
    assert sampled.minhash_spread == pytest.approx(exact, abs=0.03)
