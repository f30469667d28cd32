"""OTLP decoding and span checks of POST /v1/traces, with requests built by the OTel SDK's own encoder."""

from __future__ import annotations

import time

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.otlp import JSON, MAX_ATTRIBUTE_BYTES, PROTOBUF, decode_request, map_request


def _sdk_spans() -> list:  # type: ignore[type-arg]
    exporter = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tp.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent support", attributes={"gen_ai.operation.name": "invoke_agent"}):
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5}) as s:
            s.set_status(Status(StatusCode.ERROR, "rate limited"))
        with tracer.start_as_current_span("GET /health", attributes={"http.request.method": "GET"}):
            pass
    tp.shutdown()
    return list(exporter.get_finished_spans())


def test_protobuf_from_the_sdk_encoder_maps_genai_spans_and_drops_the_rest() -> None:
    spans = _sdk_spans()
    raw = encode_spans(spans).SerializeToString()
    mapped = map_request(decode_request(raw, PROTOBUF), "acme", None)
    trace_id = format(spans[0].context.trace_id, "032x")
    assert (mapped.spans, mapped.genai, mapped.rejected) == (3, 2, 0)
    batch = mapped.traces[trace_id]
    assert batch["agent_id"] == "support-bot" and batch["tenant_id"] == "acme"
    by_name = {s["name"]: s for s in batch["spans"]}
    chat = by_name["chat gpt-4o"]
    assert chat["span_id"] == format(spans[0].context.span_id, "016x")  # the chat span ended first
    assert chat["parent_span_id"] == by_name["invoke_agent support"]["span_id"]
    assert (chat["model"], chat["input_tokens"], chat["error"]) == ("gpt-4o", 5, "rate limited")
    assert mapped.roots == {trace_id}
    assert map_request(decode_request(raw, PROTOBUF), "acme", "my-agent").traces[trace_id]["agent_id"] == "my-agent"


def _json_body(**span_fields: object) -> bytes:
    now = time.time_ns()
    span = {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "name": "chat m",
            "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 5_000_000), "kind": 3,
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "9"}}],
            "status": {"code": 2, "message": "bad"}, **span_fields}
    return orjson.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                                            "scopeSpans": [{"scope": {"name": "x"}, "spans": [span]}], "unknownField": 1}]})


def test_otlp_json_with_hex_ids() -> None:
    mapped = map_request(decode_request(_json_body(), JSON), "acme", None)
    (trace_id, batch), = mapped.traces.items()
    assert trace_id == "5b8efff798038103d269b633813fc60c"
    s = batch["spans"][0]
    assert (s["span_id"], s["output_tokens"], s["error"], s["kind"]) == ("eee19b7ec3c1b174", 9, "bad", "llm")


@pytest.mark.parametrize(("fields", "reason"), [
    ({"traceId": ""}, "trace_id is missing"),
    ({"traceId": "not-hex"}, "trace_id is missing"),
    ({"spanId": "00000000000000000"[:16]}, "span_id is missing"),
    ({"startTimeUnixNano": "5", "endTimeUnixNano": "6"}, "timestamps out of range"),
    ({"endTimeUnixNano": "1"}, "timestamps out of range"),
    ({"attributes": [{"key": "gen_ai.input.messages", "value": {"stringValue": "x" * (MAX_ATTRIBUTE_BYTES + 1)}}]},
     "'gen_ai.input.messages' is"),
])
def test_bad_spans_are_rejected_alone(fields: dict[str, object], reason: str) -> None:
    mapped = map_request(decode_request(_json_body(**fields), JSON), "acme", None)
    assert (mapped.rejected, mapped.traces) == (1, {})
    assert reason in mapped.reasons[0]


@pytest.mark.parametrize(("raw", "content_type", "status"), [
    (b"\xff\xff\xff\x0f garbage", PROTOBUF, 400),
    (b"{not json", JSON, 400),
    (b'{"resourceSpans": 7}', JSON, 400),
    (b"[]", JSON, 400),
    (b"x", "text/plain", 415),
])
def test_undecodable_bodies_are_400_or_415(raw: bytes, content_type: str, status: int) -> None:
    with pytest.raises(ApiError) as exc:
        decode_request(raw, content_type)
    assert exc.value.status == status


def test_feedback_span_events() -> None:
    events = [{"name": "agentgym.feedback", "timeUnixNano": "1760000000000000000", "attributes": [
        {"key": "agentgym.feedback.rating", "value": {"doubleValue": 4.5}},
        {"key": "agentgym.feedback.comment", "value": {"stringValue": "good"}}]},
        {"name": "other", "attributes": []}]
    mapped = map_request(decode_request(_json_body(events=events), JSON), "acme", "bot")
    (fb,) = mapped.feedback
    assert fb["trace_id"] == "5b8efff798038103d269b633813fc60c" and fb["agent_id"] == "bot"
    assert (fb["rating"], fb["comment"], fb["timestamp_ms"]) == (4.5, "good", 1_760_000_000_000)
    again = map_request(decode_request(_json_body(events=events), JSON), "acme", "bot").feedback[0]
    assert again["event_id"] == fb["event_id"]  # a retried export is the same feedback event


def test_a_feedback_event_with_an_absurd_time_takes_the_span_end() -> None:
    events = [{"name": "agentgym.feedback", "timeUnixNano": str(2**63 - 1), "attributes": [
        {"key": "agentgym.feedback.thumbs_up", "value": {"boolValue": False}}]}]
    body = orjson.loads(_json_body(events=events))
    end_ns = int(body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"])
    (fb,) = map_request(decode_request(orjson.dumps(body), JSON), "acme", None).feedback
    assert fb["timestamp_ms"] == end_ns // 1_000_000 and fb["thumbs_up"] is False
