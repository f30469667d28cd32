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

