"""OTLP ingestion benchmark (not a test): ``python -m agentgym.ops.bench.otlp``.

Export requests as an instrumented agent sends them (built by the OTel SDK and its
OTLP protobuf encoder: per trace an ``invoke_agent`` span, two ``chat`` spans with
input/output messages and usage, an ``execute_tool`` span and one non-GenAI HTTP span),
measured in the same run, in one process:

* **decode**: ``ExportTraceServiceRequest.ParseFromString`` alone, the floor any
  OTLP receiver pays;
* **ingest**: what ``POST /v1/traces`` does per request after reading the body: decode,
  check and map every span (:func:`agentgym.gateway.otlp.map_request`), encode one
  ``OtelSpans`` Avro record per trace (split under the event size limit).

Prints spans/s of both and their ratio (target: ingest >= 20,000 spans/s per process),
and, for the otel processor's side, **assemble**: decode each ``OtelSpans`` record, merge it
into a new trace state, assemble and encode the Experience (per GenAI span; Kafka and the
Faust table not included).
HTTP handling and producing (one Kafka message per trace, not per span) come on top;
``ops/bench/gateway.py`` measures those for the API as a whole.
"""

from __future__ import annotations

import argparse
import json
import time

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentgym.gateway.otlp import _records, map_request
from agentgym.processors.otel.processor import experience_of, merge
from agentgym.schemas.codec import AvroCodec

__all__ = ["build_request", "main"]


def build_request(traces: int) -> bytes:
    """A serialized export request of ``traces`` agent runs (5 spans each, 4 of them GenAI)."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tp.get_tracer("bench")
    question = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Where is my order A17? " * 8}]}])
    answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "It ships tomorrow. " * 10}],
                          "finish_reason": "stop"}])
    for _ in range(traces):
        with tracer.start_as_current_span("invoke_agent support", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support", "gen_ai.input.messages": question}):
            for _ in range(2):
                with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-1",
                        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 120,
                        "gen_ai.usage.output_tokens": 40, "gen_ai.input.messages": question, "gen_ai.output.messages": answer}):
                    with tracer.start_as_current_span("POST", attributes={"http.request.method": "POST", "server.port": 443}):
                        pass
            with tracer.start_as_current_span("execute_tool lookup_order", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
                    "gen_ai.tool.call.arguments": '{"order_id": "A17"}', "gen_ai.tool.call.result": '{"eta": "tomorrow"}'}):
                pass
    tp.shutdown()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _rate(fn, spans: int, seconds: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(spans/s of wall time, spans/s of this process's CPU time): on a shared machine the
    second is the capacity of one process, the first what it got."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n * spans / elapsed, n * spans / max(1e-9, time.process_time() - c0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=100, help="agent runs per export request (default 100)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time of each phase (default 3)")
    args = ap.parse_args(argv)
    raw = build_request(args.traces)
    req = ExportTraceServiceRequest.FromString(raw)
    spans = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    codec = AvroCodec()

    def decode() -> None:
        ExportTraceServiceRequest.FromString(raw)

    def ingest() -> None:
        mapped = map_request(ExportTraceServiceRequest.FromString(raw), "bench", None)
        for batch in mapped.traces.values():
            _records(codec, batch, 512 * 1024, mapped.reject)

    values: list[bytes] = []
    for batch in map_request(req, "bench", None).traces.values():
        values += _records(codec, batch, 512 * 1024, lambda reason: None)

    def assemble() -> None:
        for value in values:
            state, _ = merge(None, codec.decode(value, expected="OtelSpans").record, 0, 0)
            codec.encode("Experience", experience_of(state))

    ingest()  # warm-up, and a check that nothing is rejected
    mapped = map_request(req, "bench", None)
    assert mapped.rejected == 0 and len(mapped.traces) == args.traces, (mapped.rejected, mapped.reasons)
    print(f"request: {len(raw)} bytes, {spans} spans ({mapped.genai} GenAI) in {args.traces} traces")
    (d, dc), (i, ic) = _rate(decode, spans, args.seconds), _rate(ingest, spans, args.seconds)
    a, ac = _rate(assemble, mapped.genai, args.seconds)
    print(f"decode only : {d:12,.0f} spans/s wall, {dc:12,.0f} spans/s of CPU time")
    print(f"ingest      : {i:12,.0f} spans/s wall, {ic:12,.0f} spans/s of CPU time  "
          f"({ic / dc:.3f} of decode; target >= 20,000 spans/s per process)")
    print(f"assemble    : {a:12,.0f} GenAI spans/s wall, {ac:12,.0f} of CPU time (the otel processor's work per batch)")


if __name__ == "__main__":
    main()
