"""An OpenTelemetry-instrumented agent that Agent Gym learns from, with no Agent Gym code in it.

It is an ordinary OpenAI tool-calling agent traced by the official
``opentelemetry-instrumentation-openai-v2``; the OTel SDK exports its spans over OTLP/HTTP.
Agent Gym needs only the standard exporter variables:

    export OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:8080/v1/traces
    export OTEL_EXPORTER_OTLP_TRACES_HEADERS="Authorization=Bearer%20<an ingest key>"
    export OTEL_SERVICE_NAME=support-bot          # the agent id in Agent Gym
    export OPENAI_BASE_URL=... OPENAI_API_KEY=...  # any OpenAI-compatible server
    python examples/otel/agent.py "Where is my order A17?"

It prints the run's trace id, which is the Experience's ``trace_id`` in Agent Gym; the
user's thumbs-up travels as an ``agentgym.feedback`` span event (docs/otel.md).
"""

from __future__ import annotations

import json
import os
import sys

# message content on the spans (the instrumentation's default keeps it out)
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")

import openai  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

TOOLS = [{"type": "function", "function": {
    "name": "lookup_order", "description": "the shipping status of an order",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]


def lookup_order(order_id: str) -> str:
    return json.dumps({"order_id": order_id, "status": "ships tomorrow"})


def run(question: str, model: str = "gpt-4o-mini") -> str:
    """One agent run: chat, call the tools the model asks for, chat again; returns the trace id."""
    tracer = trace.get_tracer("support-agent")
    client = openai.OpenAI()
    messages: list[dict] = [{"role": "user", "content": question}]
    with tracer.start_as_current_span("invoke_agent support", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": question}]}])}) as span:
        for _ in range(5):
            reply = client.chat.completions.create(model=model, messages=messages, tools=TOOLS).choices[0].message
            messages.append(reply.model_dump(exclude_none=True))
            if not reply.tool_calls:
                break
            for call in reply.tool_calls:
                with tracer.start_as_current_span(f"execute_tool {call.function.name}", attributes={
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.function.name,
                        "gen_ai.tool.call.id": call.id, "gen_ai.tool.call.arguments": call.function.arguments}) as tool:
                    result = lookup_order(**json.loads(call.function.arguments))
                    tool.set_attribute("gen_ai.tool.call.result", result)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        span.set_attribute("gen_ai.output.messages", json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": reply.content or ""}]}]))
        print(reply.content)
        # the user liked the answer: feedback as a span event (or POST /v1/feedback with the trace id)
        span.add_event("agentgym.feedback", {"agentgym.feedback.thumbs_up": True})
        return format(span.get_span_context().trace_id, "032x")


def main() -> None:
    provider = TracerProvider()  # service.name from OTEL_SERVICE_NAME
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint and headers from the environment
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    trace_id = run(" ".join(sys.argv[1:]) or "Where is my order A17?")
    provider.shutdown()  # flushes the last spans
    print(f"trace_id={trace_id}")


if __name__ == "__main__":
    main()
