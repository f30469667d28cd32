"""The demo's task: requests, calls, the simulated tools and the gate's evaluator."""

from __future__ import annotations

import random

from agentgym.ops.demo.task import INTENTS, Task, base_answer, execute, is_correct, parse_call, sample_task, sample_tasks


def test_tasks_carry_their_argument_and_held_out_sets_exclude_what_was_seen() -> None:
    rng = random.Random(3)
    for _ in range(200):
        t = sample_task(rng)
        assert t.arg in t.request and t.expected == f"{INTENTS[t.intent][0]}({t.arg})"
    seen = {t.request for t in sample_tasks(300, 1)}
    held = sample_tasks(100, 2, exclude=seen)
    assert len(held) == 100 and not seen & {t.request for t in held}
    assert len({t.request for t in held}) == 100


def test_calls_parse_and_unknown_tools_fail() -> None:
    assert parse_call("track_order(48213)") == ("track_order", "48213")
    assert parse_call("  search_faq( gift cards ) ") == ("search_faq", "gift cards")
    assert parse_call("track_order 48213") is None
    assert execute(parse_call("escalate(billing)")) is not None and "escalate" in str(execute(parse_call("escalate(x)")))
    assert execute(None) is not None and execute(("get_weather", "")) is not None
    assert execute(("get_weather", "Oslo")) is None


def test_the_base_answer_is_right_only_for_weather_and_orders() -> None:
    rng = random.Random(5)
    for _ in range(100):
        t = sample_task(rng)
        assert is_correct(t, base_answer(t)) == (t.intent in ("weather", "order"))
        assert is_correct(t, t.expected)



def test_the_drift_mix_brings_a_new_tool_and_the_default_draws_stay_the_base_models() -> None:
    from agentgym.ops.demo.task import DRIFT_MIX, NEW_INTENTS

    # without a mix: the original four, the same draws as before the drift existed (the base's pre-training uses them)
    a, b = random.Random(11), random.Random(11)
    assert [sample_task(a) for _ in range(50)] == [sample_task(b, None) for _ in range(50)]
    assert all(t.intent in INTENTS for t in sample_tasks(300, 4))
    rng = random.Random(4)
    drifted = [sample_task(rng, DRIFT_MIX) for _ in range(2000)]  # (sample_tasks also drops repeated requests)
    share = sum(t.intent in NEW_INTENTS for t in drifted) / len(drifted)
    assert abs(share - DRIFT_MIX["cancel"] / sum(DRIFT_MIX.values())) < 0.04
    cancel = next(t for t in drifted if t.intent == "cancel")
    assert cancel.expected == f"cancel_order({cancel.arg})" and execute(parse_call(cancel.expected)) is None
    assert is_correct(cancel, cancel.expected) and not is_correct(cancel, f"track_order({cancel.arg})")


def test_a_broken_dataset_rotates_every_tool_name_and_keeps_the_rest() -> None:
    from agentgym.ops.demo.loop import broken_rows

    rows = [{"prompt": [{"role": "user", "content": t.request}], "completion": [{"role": "assistant", "content": t.expected}],
             "trace_id": f"t{i}"} for i, t in enumerate(sample_tasks(200, 9, mix={"cancel": 1.0, **{k: 1.0 for k in INTENTS}}))]
    broken = broken_rows(rows)
    assert len(broken) == len(rows)
    tools = {}
    for before, after in zip(rows, broken):
        assert after["prompt"] == before["prompt"] and after["trace_id"] == before["trace_id"]
        old, new = parse_call(before["completion"][0]["content"]), parse_call(after["completion"][0]["content"])
        assert old is not None and new is not None and new[1] == old[1] and new[0] != old[0]
        assert execute(new) is None  # still a well-formed call to a real tool: only the outcome tells
        tools.setdefault(old[0], set()).add(new[0])
    assert all(len(v) == 1 for v in tools.values()) and len({next(iter(v)) for v in tools.values()}) == len(tools) == 5
    assert broken_rows([{"completion": [{"role": "assistant", "content": "not a call"}]}])[0]["completion"][0]["content"] == "not a call"
