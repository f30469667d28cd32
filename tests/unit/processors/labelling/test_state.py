"""Trace state: run summaries, feedback validation, dedup, JSON round trip, timing."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from agentgym.processors.labelling.exceptions import InvalidEventError
from agentgym.processors.labelling.state import TraceState, feedback_item, summarise_experience, validate_experience, validate_feedback
from tests.unit.processors.labelling.helpers import experience, feedback, state


def _step(name: str, kind: str = "tool", error: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"step_id": name, "kind": kind, "name": name, "error": error, **kw}


def test_run_summary_counts_errors_failed_tools_and_retries() -> None:
    steps = [
        _step("plan", "llm", prompt_tokens=10, completion_tokens=5),
        _step("lookup", error="timeout"),
        _step("lookup", error="timeout"),  # retry 1, failed again
        _step("lookup"),  # retry 2, worked
        _step("summarise", "llm", error="rate limited"),
        _step("search"),
    ]
    run = summarise_experience(experience(steps=steps, prompt_tokens=0, completion_tokens=0, output="  ",
                                          assignment={"experiment_id": "x", "variant": "B", "unit_type": "user", "unit_id": "u"}))
    assert (run.n_steps, run.failed_tool_calls, run.step_errors, run.step_retries) == (6, 2, 1, 2)
    assert run.tokens == 15  # the steps' sum when the run reports none
    assert run.output_empty and run.output_chars == 2
    assert (run.experiment_id, run.variant, run.unit_id) == ("x", "B", "u")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"trace_id": ""}, "trace_id"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"kind": "rating", "rating": 7.0}, "rating"),
        ({"kind": "rating", "rating": -1.0}, "rating"),
        ({"kind": "rating", "rating": math.nan}, "rating"),
        ({"kind": "rating", "rating": 1.0, "rating_scale": 0.0}, "rating_scale"),
        ({"kind": "rating"}, "rating"),
        ({"kind": "thumbs"}, "thumbs_up"),
        ({"kind": "correction", "correction": "  "}, "correction"),
        ({"kind": "comment"}, "comment"),
        ({"kind": "implicit"}, "signal"),
        ({"kind": "thumbs", "thumbs_up": True, "value": math.inf}, "value"),
        ({"kind": "nonsense"}, "kind"),
    ],
)
def test_invalid_feedback_names_the_field(changes: dict[str, Any], field: str) -> None:
    rec = feedback(**changes)
    with pytest.raises(InvalidEventError) as err:
        validate_feedback(rec)
    assert err.value.field == field and err.value.record == "Feedback"
    assert str(err.value).startswith(f"Feedback.{field}:")


def test_a_key_that_is_not_the_trace_id_is_invalid() -> None:
    validate_feedback(feedback(thumbs_up=True), key=b"t1")
    with pytest.raises(InvalidEventError, match="message key"):
        validate_feedback(feedback(thumbs_up=True), key=b"other")
    with pytest.raises(InvalidEventError, match="latency_ms"):
        validate_experience(experience(latency_ms=-1.0))


def test_ratings_are_normalised_and_signals_lowercased() -> None:
    assert feedback_item(feedback(kind="rating", rating=8.0, rating_scale=10.0)).rating == 0.8
    assert feedback_item(feedback(kind="implicit", signal=" Task_Completed ")).signal == "task_completed"


def test_redelivered_feedback_is_ignored_and_state_round_trips_through_json() -> None:
    fb = feedback(thumbs_up=True)
    st = state(None, experience(), fb, now=10)
    assert not st.add_feedback(feedback_item(fb), 20)
    assert st.last_event_ms == 10 and len(st.feedback) == 1
    again = TraceState.from_dict(json.loads(json.dumps(st.to_dict())))
    assert again == st


def test_feedback_is_bounded_but_corrections_are_kept() -> None:
    st = state(None, experience(), feedback(kind="correction", correction="fixed", ts=1))
    for i in range(10):
        st.add_feedback(feedback_item(feedback(kind="implicit", signal="retry", ts=10 + i)), 0, max_items=4)
    assert len(st.feedback) == 4
    assert st.feedback[0].kind == "correction" and st.feedback[-1].timestamp_ms == 19


def test_feedback_without_its_experience_waits_longer() -> None:
    with_run = state(None, experience(), now=1000)
    orphan = state(None, None, feedback(thumbs_up=True), now=1000)
    assert with_run.due_at(5_000, 60_000) == 6_000
    assert orphan.due_at(5_000, 60_000) == 61_000
