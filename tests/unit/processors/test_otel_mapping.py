"""The GenAI span mapping, one hand-built span per dialect, and the assembly of a run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentgym.processors.otel.mapping import assemble, experience_event_id, is_genai, map_span
from agentgym.processors.otel.processor import experience_of, merge
from agentgym.schemas.codec import AvroCodec

T0 = 1_760_000_000_000_000_000  # ns


def span(sid: str, parent: str, name: str, attrs: dict[str, Any], start_ms: float = 0, end_ms: float = 100,
         error: bool = False, message: str = "", events: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    return map_span(sid, parent, name, T0 + int(start_ms * 1e6), T0 + int(end_ms * 1e6), error, message, attrs, events or [])


def test_genai_semantic_conventions_with_message_attributes() -> None:
    s = span("a1", "", "chat gpt-4o", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 7,
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "be brief"}]),
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "where is A17?"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "tool_call", "id": "call_1", "name": "lookup_order", "arguments": {"order_id": "A17"}}],
            "finish_reason": "tool_calls"}]),
        "gen_ai.conversation.id": "conv-9",
    })
    assert (s["kind"], s["model"], s["response_model"], s["system"]) == ("llm", "gpt-4o", "gpt-4o-2024-08-06", "openai")
    assert (s["input_tokens"], s["output_tokens"], s["session_id"]) == (11, 7, "conv-9")
    assert [(m["role"], m["content"]) for m in s["input_messages"]] == [("system", "be brief"), ("user", "where is A17?")]
    call = json.loads(s["output_messages"][0]["content"])
    assert call == [{"id": "call_1", "name": "lookup_order", "arguments": {"order_id": "A17"}}]


def test_genai_tool_span_and_older_message_events() -> None:
    tool = span("t1", "r", "execute_tool lookup_order", {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order", "gen_ai.tool.call.id": "call_1",
        "gen_ai.tool.call.arguments": '{"order_id": "A17"}', "gen_ai.tool.call.result": '{"eta": "tomorrow"}'}, error=True,
        message="timeout")
    assert (tool["kind"], tool["name"], tool["tool_call_id"], tool["error"]) == ("tool", "lookup_order", "call_1", "timeout")
    assert json.loads(tool["input"]) == {"order_id": "A17"} and json.loads(tool["output"]) == {"eta": "tomorrow"}
    llm = span("l1", "r", "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, events=[
        ("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps([{"role": "user", "content": "hi"}])}),
        ("gen_ai.content.completion", {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "hello"}])}),
    ])
    assert [(m["role"], m["content"]) for m in llm["input_messages"] + llm["output_messages"]] == [("user", "hi"), ("assistant", "hello")]


def test_openinference_dialect() -> None:
    s = span("o1", "", "ChatCompletion", {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini-2024-07-18", "llm.system": "openai",
        "llm.token_count.prompt": 11, "llm.token_count.completion": 7,
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "be brief",
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "where is A17?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup_order",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"order_id": "A17"}',
        "session.id": "s-1", "user.id": "u-1",
    })
    assert (s["kind"], s["model"], s["input_tokens"], s["output_tokens"]) == ("llm", "gpt-4o-mini-2024-07-18", 11, 7)
    assert (s["session_id"], s["user_id"]) == ("s-1", "u-1")
    assert [m["content"] for m in s["input_messages"]] == ["be brief", "where is A17?"]
    assert json.loads(s["output_messages"][0]["content"]) == [{"name": "lookup_order", "arguments": '{"order_id": "A17"}'}]
    tool = span("o2", "o0", "lookup_order", {"openinference.span.kind": "TOOL", "tool.name": "lookup_order",
                                              "input.value": '{"order_id": "A17"}', "output.value": "tomorrow"})
    assert (tool["kind"], tool["name"], tool["output"]) == ("tool", "lookup_order", "tomorrow")
    agent = span("o0", "", "agent", {"openinference.span.kind": "AGENT", "input.value": "where is A17?"})
    assert agent["kind"] == "agent"


def test_openllmetry_legacy_dialect() -> None:
    s = span("p1", "", "openai.chat", {
        "llm.request.type": "chat", "gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.prompt_tokens": 20, "gen_ai.usage.completion_tokens": 5,
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hi",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "hello",
        "traceloop.span.kind": "task",
    })
    assert (s["kind"], s["model"], s["input_tokens"], s["output_tokens"], s["system"]) == ("llm", "gpt-4o", 20, 5, "OpenAI")
    assert [(m["role"], m["content"]) for m in s["input_messages"] + s["output_messages"]] == [("user", "hi"), ("assistant", "hello")]


def test_non_genai_spans_are_recognised() -> None:
    assert not is_genai({"http.method": "GET", "url.full": "http://x"})
    assert is_genai({"openinference.span.kind": "CHAIN"}) and is_genai({"gen_ai.operation.name": "chat"})


def _agent_run() -> list[dict[str, Any]]:
    return [
        span("r0", "", "invoke_agent support", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
                                                "gen_ai.input.messages": json.dumps([{"role": "user", "content": "where is A17?"}]),
                                                "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": "tomorrow"}])},
             0, 1000),
        span("l1", "r0", "chat m", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.response.model": "m-1",
                                    "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 3}, 10, 300),
        span("t1", "r0", "execute_tool lookup_order", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
             310, 500, error=True, message="boom"),
        span("l2", "r0", "chat m", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 20,
                                    "gen_ai.usage.output_tokens": 4}, 510, 990),
    ]


def test_assemble_one_run() -> None:
    spans = _agent_run()
    rec = assemble("acme", "support", "ab" * 16, reversed(spans))
    assert rec["event_id"] == experience_event_id("acme", "ab" * 16)
    assert [(s["kind"], s["name"]) for s in rec["steps"]] == [("llm", "m-1"), ("tool", "lookup_order"), ("llm", "m")]
    assert rec["steps"][1]["error"] == "boom" and rec["status"] == "ok"  # a tool error the agent recovered from
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (30, 7)
    assert rec["latency_ms"] == pytest.approx(1000.0) and rec["steps"][0]["latency_ms"] == pytest.approx(290.0)
    assert (rec["input"][0]["content"], rec["output"]) == ("where is A17?", "tomorrow")
    assert (rec["model_name"], rec["model_version"]) == ("m", "m-1")
    assert rec["metadata"]["gen_ai.agent.name"] == "support"
    AvroCodec().encode("Experience", rec)  # a valid Experience


def test_root_error_is_the_run_status() -> None:
    spans = _agent_run()
    spans[0] = span("r0", "", "invoke_agent", {"gen_ai.operation.name": "invoke_agent"}, 0, 1000, error=True, message="agent crashed")
    rec = assemble("acme", "support", "cd" * 16, spans)
    assert (rec["status"], rec["error"]) == ("error", "agent crashed")


def test_batches_merge_and_a_revision_keeps_its_identity() -> None:
    spans = _agent_run()
    batch = {"tenant_id": "acme", "agent_id": "support", "trace_id": "ef" * 16, "service_name": "svc"}
    st, changed = merge(None, {**batch, "spans": spans[1:3]}, 2, 1)
    assert changed
    first = experience_of(st)
    st["emitted_ts_ms"], st["revision"] = first["timestamp_ms"], 1
    st, changed = merge(st, {**batch, "spans": spans[1:3]}, 2, 2)
    assert not changed  # a redelivered batch
    st, changed = merge(st, {**batch, "spans": [spans[0], spans[3]]}, 2, 3)
    second = experience_of(st)
    assert changed and second["event_id"] == first["event_id"]
    assert len(first["steps"]) == 2 and len(second["steps"]) == 3
    assert second["metadata"]["otel.revision"] == "2" and second["output"] == "tomorrow"


def test_the_labeller_takes_a_revision_with_the_same_event_id() -> None:
    from agentgym.processors.labelling.engine import LabellingEngine
    from agentgym.processors.labelling.settings import LabellerSettings
    from agentgym.processors.labelling.state import summarise_experience

    spans = _agent_run()
    trace = "12" * 16
    first = assemble("acme", "support", trace, spans[1:2])
    second = assemble("acme", "support", trace, spans)
    assert first["event_id"] == second["event_id"]
    engine = LabellingEngine(settings=LabellerSettings())
    st = engine.ingest_experience(None, first, 0, 1, key=trace.encode())
    st = engine.ingest_experience(st, second, 0, 2, key=trace.encode())
    assert st.run == summarise_experience(second) and st.run != summarise_experience(first)
    assert st.last_event_ms == 2
    st = engine.ingest_experience(st, second, 0, 3, key=trace.encode())  # a redelivery changes nothing
    assert st.last_event_ms == 2


def test_token_counts_stay_within_the_experience_schema() -> None:
    huge = span("h1", "", "chat", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 2**40,
                                   "gen_ai.usage.output_tokens": float("inf")})
    assert (huge["input_tokens"], huge["output_tokens"]) == (2**31 - 1, 0)
    rec = assemble("acme", "a", "34" * 16, [huge, {**huge, "span_id": "h2"}])
    assert rec["prompt_tokens"] == 2**31 - 1
    AvroCodec().encode("Experience", rec)


_ASSIGNED = {"agentgym.experiment.id": "acme:support-ab", "agentgym.experiment.variant": "treatment",
             "agentgym.experiment.unit_id": "user-7", "agentgym.experiment.config_version": 3,
             "agentgym.experiment.status": "running"}


def test_an_experiment_assignment_on_the_agent_span_becomes_the_runs() -> None:
    spans = _agent_run()
    spans[0] = span("r0", "", "handle_request", dict(_ASSIGNED), 0, 1000)  # a plain agent span: only agentgym.* attributes
    assert is_genai(dict(_ASSIGNED)) and spans[0]["kind"] == "other"
    rec = assemble("acme", "support", "ef" * 16, spans)
    assert rec["assignment"] == {"experiment_id": "acme:support-ab", "variant": "treatment", "unit_type": "user",
                                 "unit_id": "user-7", "config_version": 3, "experiment_status": "running"}
    decoded = AvroCodec().decode(AvroCodec().encode("Experience", rec), expected="Experience").record
    assert decoded["assignment"]["variant"] == "treatment" and decoded["assignment"]["config_version"] == 3
    assert assemble("acme", "support", "ef" * 16, _agent_run())["assignment"] is None


def test_spans_with_an_assignment_travel_as_otel_spans_v2_and_v1_batches_still_assemble() -> None:
    codec = AvroCodec()
    s = span("r0", "", "invoke_agent", {"gen_ai.operation.name": "invoke_agent", "agentgym.experiment.unit_type": "session",
                                        **_ASSIGNED})
    batch = {"event_id": "e", "tenant_id": "acme", "agent_id": "support", "trace_id": "ab" * 16, "timestamp_ms": 1,
             "service_name": None, "spans": [s]}
    back = codec.decode(codec.encode("OtelSpans", batch), expected="OtelSpans").record
    assert back["spans"][0]["assignment"]["unit_type"] == "session"
    state, _ = merge(None, back, 0, 1)
    assert experience_of(state)["assignment"]["unit_id"] == "user-7"
    # a batch written before v2 (no assignment field) assembles as before
    old = {k: v for k, v in span("l1", "", "chat m", {"gen_ai.operation.name": "chat"}).items() if k != "assignment"}
    state, _ = merge(None, dict(batch, spans=[old]), 0, 1)
    assert experience_of(state)["assignment"] is None


@pytest.mark.parametrize("attrs, named", [
    ({"agentgym.experiment.id": "x", "agentgym.experiment.variant": "a"}, "agentgym.experiment.unit_id"),
    ({**_ASSIGNED, "agentgym.experiment.unit_type": "tenant"}, "agentgym.experiment.unit_type"),
    ({**_ASSIGNED, "agentgym.experiment.config_version": -1}, "agentgym.experiment.config_version"),
    ({**_ASSIGNED, "agentgym.experiment.config_version": "three"}, "agentgym.experiment.config_version"),
])
def test_an_inconsistent_assignment_is_refused_naming_the_attribute(attrs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        span("r0", "", "invoke_agent", {"gen_ai.operation.name": "invoke_agent", **attrs})
