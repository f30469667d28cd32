"""OTLP ingestion end to end, with the real clients.

A real ``openai`` client, wrapped by a real instrumentation (the official
``opentelemetry-instrumentation-openai-v2``, OpenInference's ``openinference-instrumentation-openai``),
calls a fake OpenAI-compatible server (aiohttp, here); the real OTel SDK exports through
``opentelemetry-exporter-otlp-proto-http``, configured only by the standard environment
variables, to the gateway's ``POST /v1/traces``; the otel processor runs in a real Faust
worker; the real sink writes ClickHouse, where the test reads the Experience.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.otel.mapping import map_span
from agentgym.processors.otel.processor import experience_of, merge
from agentgym.producers.admin import ensure_topics
from agentgym.producers.records import RecordProducer
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import Served, auth, call, new_key
from tests.kafka_utils import consume_all, decode_all
from tests.workers import Worker, wait_for, worker_env

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "description": "an order's status",
                                            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}]


class FakeOpenAI:
    """An OpenAI-compatible ``/v1/chat/completions``: a tool call first, then the answer."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("tools") and not any(m.get("role") == "tool" for m in body["messages"]):
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": '{"order_id": "A17"}'}}]}
            finish, usage = "tool_calls", (11, 7)
        else:
            message, finish, usage = {"role": "assistant", "content": "Your order A17 ships tomorrow."}, "stop", (30, 9)
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
            "model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}})

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    yield f
    f.close()


@pytest.fixture(scope="module")
def otel_worker(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    ensure_topics(bootstrap, [TOPICS["otel-spans"], TOPICS["experiences"], TOPICS["feedback"], TOPICS["outcomes"],
                              TOPICS["deadletter"]])
    home = tmp_path_factory.mktemp("otel-worker")
    # the labeller too: an OTel run is labelled like any other, its outcome carrying the run's experiment assignment
    w = Worker(worker_env(bootstrap, home, f"otel-{uuid.uuid4().hex[:8]}", "otel,labeller", AGENTGYM_LABELLER_QUIET_PERIOD_S="2"),
               home / "worker.log").start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('otel-ch') / 'ch'}")
    migrate(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def sink(bootstrap: str, store: Store) -> Iterator[ClickHouseSink]:
    s = ClickHouseSink(bootstrap, store, group=f"otel-sink-{uuid.uuid4().hex[:8]}", batch_size=5000, batch_ms=200,
                       specs=[TOPICS["experiences"], TOPICS["feedback"], TOPICS["deadletter"]])
    yield s
    s.close()


_ROW = ("SELECT model_name, model_version, prompt_tokens, completion_tokens, latency_ms, status, input.content, output, "
        "steps.kind, steps.name, steps.prompt_tokens, metadata['otel.revision'], agent_id "
        "FROM v_experiences WHERE tenant_id = {t:String} AND trace_id = {tr:String}")


def _experience(sink: ClickHouseSink, store: Store, worker: Worker, tenant: str, trace_id: str, steps: int) -> dict[str, Any]:
    """The run's row once it holds ``steps`` steps (a revision may land after a partial first emission)."""
    def landed() -> Any:
        sink.process_batch()
        rows = store.query(_ROW, {"t": tenant, "tr": trace_id}).rows
        assert len(rows) <= 1, rows  # never a duplicate
        return rows[0] if rows and len(rows[0][8]) == steps else None

    row = wait_for(landed, 120, f"the experience of trace {trace_id}", worker, every=0.1)
    keys = ["model_name", "model_version", "prompt_tokens", "completion_tokens", "latency_ms", "status", "input", "output",
            "step_kinds", "step_names", "step_prompt_tokens", "revision", "agent_id"]
    return dict(zip(keys, row))


def _agent_run(tp: TracerProvider, base_url: str, flush_midway: bool, run_attributes: dict[str, Any] | None = None) -> str:
    """An agent: an invoke_agent span around a chat call (a tool call comes back), the tool, a second chat call."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="not-a-key", max_retries=0)
    tracer = tp.get_tracer("support-agent")
    messages: list[Any] = [{"role": "user", "content": "Where is my order A17?"}]
    question = json.dumps([{"role": "user", "parts": [{"type": "text", "content": messages[0]["content"]}]}])
    with tracer.start_as_current_span("invoke_agent support", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support", "gen_ai.input.messages": question,
            **(run_attributes or {})}) as run:
        first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        if flush_midway:
            assert tp.force_flush(10_000)  # the first chat span goes in a batch of its own
        call = first.choices[0].message.tool_calls[0]
        with tracer.start_as_current_span("execute_tool lookup_order", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order", "gen_ai.tool.call.id": call.id,
                "gen_ai.tool.call.arguments": call.function.arguments}) as tool:
            result = '{"status": "ships tomorrow"}'
            tool.set_attribute("gen_ai.tool.call.result", result)
        messages += [first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": result}]
        final = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        run.add_event("agentgym.feedback", {"agentgym.feedback.thumbs_up": True, "agentgym.feedback.comment": "quick"})
        run.set_attribute("gen_ai.output.messages", json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": final.choices[0].message.content}]}]))
        trace_id = format(run.get_span_context().trace_id, "032x")
    assert tp.force_flush(10_000)
    return trace_id


def _provider(monkeypatch: pytest.MonkeyPatch, served: Served, key: str) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # the standard variables, as an operator sets them: endpoint, Authorization header, gzip
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{served.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"Authorization=Bearer%20{key}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    tp = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return tp


def _check_run(e: dict[str, Any]) -> None:
    assert e["agent_id"] == "support-bot" and e["status"] == "ok"
    assert e["model_version"] == "gpt-4o-mini-2024-07-18"
    assert (e["prompt_tokens"], e["completion_tokens"]) == (41, 16)
    assert e["step_kinds"] == ["llm", "tool", "llm"] and e["step_names"][1] == "lookup_order"
    assert e["step_prompt_tokens"] == [11, 0, 30]
    assert e["latency_ms"] > 0
    assert e["input"] == ["Where is my order A17?"] and e["output"] == "Your order A17 ships tomorrow."


@pytest.mark.timeout(240)
def test_official_openai_instrumentation_in_two_batches(served: Served, bootstrap: str, fake_openai: FakeOpenAI,
                                                        otel_worker: Worker, sink: ClickHouseSink, store: Store,
                                                        monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    tenant = f"otel-{unique}"
    key = new_key(bootstrap, served, tenant)
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    tp = _provider(monkeypatch, served, key)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    try:
        trace_id = _agent_run(tp, fake_openai.url, flush_midway=True)
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
    e = _experience(sink, store, otel_worker, tenant, trace_id, steps=3)
    _check_run(e)
    assert e["model_name"] == "gpt-4o-mini"  # the requested model (gen_ai.request.model)
    assert int(e["revision"]) >= 2  # the second batch revised the run emitted from the first


@pytest.mark.timeout(240)
def test_openinference_instrumentation(served: Served, bootstrap: str, fake_openai: FakeOpenAI, otel_worker: Worker,
                                       sink: ClickHouseSink, store: Store, monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    tenant = f"oi-{unique}"
    key = new_key(bootstrap, served, tenant)
    tp = _provider(monkeypatch, served, key)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    try:
        trace_id = _agent_run(tp, fake_openai.url, flush_midway=False)
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
    e = _experience(sink, store, otel_worker, tenant, trace_id, steps=3)
    _check_run(e)
    assert e["model_name"] == "gpt-4o-mini-2024-07-18"  # OpenInference records the served model (llm.model_name)
    # the agentgym.feedback span event became Feedback on the run (the same trace id as the Experience)
    q = "SELECT trace_id, agent_id, kind, comment FROM v_feedback WHERE tenant_id = {t:String}"
    rows = wait_for(lambda: sink.process_batch() is not None and store.query(q, {"t": tenant}).rows, 60, "the span event's feedback")
    assert rows == [(trace_id, "support-bot", "thumbs", "quick")]


@pytest.mark.timeout(240)
def test_openllmetry_instrumentation(served: Served, bootstrap: str, fake_openai: FakeOpenAI, otel_worker: Worker,
                                     sink: ClickHouseSink, store: Store, monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    """OpenLLMetry's opentelemetry-instrumentation-openai (its current releases speak the GenAI conventions)."""
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    tenant = f"ll-{unique}"
    key = new_key(bootstrap, served, tenant)
    tp = _provider(monkeypatch, served, key)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    try:
        trace_id = _agent_run(tp, fake_openai.url, flush_midway=False)
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
    e = _experience(sink, store, otel_worker, tenant, trace_id, steps=3)
    _check_run(e)
    assert e["model_name"] == "gpt-4o-mini"


@pytest.mark.timeout(240)
def test_langchain_agent_with_openinference(served: Served, bootstrap: str, fake_openai: FakeOpenAI, otel_worker: Worker,
                                            sink: ClickHouseSink, store: Store, monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    """An agent framework: a LangChain runnable (ChatOpenAI with a bound tool) traced by openinference-instrumentation-langchain."""
    from langchain_core.messages import BaseMessage, HumanMessage
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from openinference.instrumentation.langchain import LangChainInstrumentor

    @tool
    def lookup_order(order_id: str) -> str:
        """An order's shipping status."""
        return "ships tomorrow"

    tenant = f"lc-{unique}"
    key = new_key(bootstrap, served, tenant)
    tp = _provider(monkeypatch, served, key)
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=fake_openai.url, api_key="not-a-key", max_retries=0).bind_tools([lookup_order])

    def agent(question: str) -> str:
        messages: list[BaseMessage] = [HumanMessage(question)]
        reply = llm.invoke(messages)
        messages.append(reply)
        messages += [lookup_order.invoke(call) for call in reply.tool_calls]  # type: ignore[attr-defined]
        return str(llm.invoke(messages).content)

    try:
        with tp.get_tracer("t").start_as_current_span("request") as outer:  # to learn the trace id; not a GenAI span
            answer = RunnableLambda(agent).with_config(run_name="support_agent").invoke("Where is my order A17?")
            trace_id = format(outer.get_span_context().trace_id, "032x")
        assert answer == "Your order A17 ships tomorrow."
        assert tp.force_flush(10_000)
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
    e = _experience(sink, store, otel_worker, tenant, trace_id, steps=3)
    _check_run(e)
    assert e["model_name"] == "gpt-4o-mini-2024-07-18"


def test_json_partial_success_and_errors_over_http(served: Served, bootstrap: str, unique: str) -> None:
    key = new_key(bootstrap, served, f"oj-{unique}")
    now = time.time_ns()
    good = {"traceId": uuid.uuid4().hex, "spanId": "eee19b7ec3c1b174", "name": "chat m", "startTimeUnixNano": str(now),
            "endTimeUnixNano": str(now + 1000), "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}
    bad = {**good, "spanId": "eee19b7ec3c1b175", "traceId": ""}
    good["events"] = [{"name": "agentgym.feedback", "attributes": [{"key": "agentgym.feedback.rating", "value": {"doubleValue": 99}}]}]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [good, bad]}]}]}
    status, answer, headers = call("POST", f"{served.url}/v1/traces", gzip.compress(orjson.dumps(body)),
                                   auth(key, **{"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert int(answer["partialSuccess"]["rejectedSpans"]) == 1 and "trace_id" in answer["partialSuccess"]["errorMessage"]
    assert "agentgym.feedback event" in answer["partialSuccess"]["errorMessage"] and "rating" in answer["partialSuccess"]["errorMessage"]
    # malformed protobuf: 400 with a google.rpc.Status in protobuf
    status, raw, headers = call("POST", f"{served.url}/v1/traces", b"\xff\xff\xff\x0f garbage",
                                auth(key, **{"Content-Type": "application/x-protobuf"}))
    assert status == 400 and headers["Content-Type"] == "application/x-protobuf"
    status, answer, _ = call("POST", f"{served.url}/v1/traces", b"{}", {"Content-Type": "application/json"})
    assert status == 401 and answer["code"] == 16 and "Authorization" in answer["message"]
    status, answer, _ = call("POST", f"{served.url}/v1/traces", b"{}", auth(key, **{"Content-Type": "application/json"}))
    assert status == 200 and answer == {}  # an empty export: full success
    assert ExportTraceServiceResponse().SerializeToString() == b""


def test_a_revision_replaces_the_run_in_clickhouse(bootstrap: str, sink: ClickHouseSink, store: Store, unique: str) -> None:
    """Two emissions of one run produced back to back (the sink likely inserts them in one batch): the later one is the row."""
    tenant, trace_id, t0 = f"rev-{unique}", uuid.uuid4().hex, time.time_ns()
    spans = [map_span(f"{i:016x}", "", "chat m", t0 + i * 10**6, t0 + (i + 1) * 10**6, False, "",
                      {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1}) for i in range(1, 4)]
    batch = {"tenant_id": tenant, "agent_id": "a", "trace_id": trace_id, "service_name": None}
    st, _ = merge(None, {**batch, "spans": spans[:1]}, 0, 0)
    first = experience_of(st)
    st["emitted_ts_ms"], st["revision"] = first["timestamp_ms"], 1
    st, _ = merge(st, {**batch, "spans": spans[1:]}, 0, 1)
    with RecordProducer(bootstrap) as producer:
        producer.send_many("experiences", [first, experience_of(st)])
    q = "SELECT length(steps), prompt_tokens FROM v_experiences WHERE tenant_id = {t:String}"

    def landed() -> Any:
        sink.process_batch()
        rows = store.query(q, {"t": tenant}).rows
        return rows if rows and rows[0][0] == 3 else None

    assert wait_for(landed, 60, "the revision in ClickHouse", every=0.1) == [(3, 3)]


def test_undecodable_span_batches_are_dead_lettered_by_the_processor(bootstrap: str, otel_worker: Worker, sink: ClickHouseSink,
                                                                     store: Store, unique: str) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(TOPICS["otel-spans"].name, b"not avro", f"bad-{unique}".encode())
    assert p.flush(30) == 0
    q = "SELECT processor, error_type FROM v_dead_letters WHERE source_topic = {s:String} AND key = {k:String}"

    def landed() -> Any:
        sink.process_batch()
        return store.query(q, {"s": TOPICS["otel-spans"].name, "k": f"bad-{unique}"}).rows

    rows = wait_for(landed, 60, "the dead letter", otel_worker, every=0.1)
    assert rows[0][0] == "otel" and otel_worker.alive()


@pytest.mark.timeout(180)
def test_the_otel_example_runs(served: Served, bootstrap: str, fake_openai: FakeOpenAI, otel_worker: Worker,
                               sink: ClickHouseSink, store: Store, unique: str) -> None:
    """examples/otel/agent.py, configured as its README says, shows up as an Experience with its feedback."""
    import os
    import subprocess
    import sys

    tenant = f"ex-{unique}"
    key = new_key(bootstrap, served, tenant)
    root = Path(__file__).resolve().parents[3]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AGENTGYM_", "OTEL_"))},
           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{served.url}/v1/traces",
           "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"Authorization=Bearer%20{key}", "OTEL_SERVICE_NAME": "support-bot",
           "OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "not-a-key"}
    out = subprocess.run([sys.executable, str(root / "examples" / "otel" / "agent.py"), "Where is my order A17?"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    trace_id = out.stdout.strip().splitlines()[-1].removeprefix("trace_id=")
    _check_run(_experience(sink, store, otel_worker, tenant, trace_id, steps=3))
    q = "SELECT trace_id, kind FROM v_feedback WHERE tenant_id = {t:String}"
    rows = wait_for(lambda: sink.process_batch() is not None and store.query(q, {"t": tenant}).rows, 60, "the example's feedback")
    assert rows == [(trace_id, "thumbs")]


@pytest.mark.timeout(240)
def test_an_otel_run_in_an_ab_test_carries_its_assignment_to_clickhouse_and_the_labeller(
        served: Served, bootstrap: str, fake_openai: FakeOpenAI, otel_worker: Worker, sink: ClickHouseSink, store: Store,
        monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    tenant = f"ab-{unique}"
    key = new_key(bootstrap, served, tenant)
    experiment = f"{tenant}:support-ab"
    # the assignment as the API's assignment endpoint gives it, carried on the agent's span
    tp = _provider(monkeypatch, served, key)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    try:
        trace_id = _agent_run(tp, fake_openai.url, flush_midway=False, run_attributes={
            "agentgym.experiment.id": experiment, "agentgym.experiment.variant": "treatment",
            "agentgym.experiment.unit_id": "user-42", "agentgym.experiment.config_version": 2,
            "agentgym.experiment.status": "running"})
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
    _experience(sink, store, otel_worker, tenant, trace_id, steps=3)
    q = ("SELECT experiment_id, variant, unit_id, config_version "
         "FROM v_experiences WHERE tenant_id = {t:String} AND trace_id = {tr:String}")
    assert store.query(q, {"t": tenant, "tr": trace_id}).rows == [(experiment, "treatment", "user-42", 2)]
    # the labeller labels the run (its thumbs-up span event is explicit feedback) and the outcome carries the
    # assignment: what the experiments processor counts units and successes by
    outcomes = decode_all(consume_all(bootstrap, TOPICS["outcomes"].name, 1, timeout_s=90,
                                      match=lambda m: trace_id.encode() in (m.value() or b"")))
    mine = [o for o in outcomes if o["trace_id"] == trace_id]
    assert mine, outcomes
    assert {(o["experiment_id"], o["variant"], o["unit_id"], o["config_version"]) for o in mine} == {
        (experiment, "treatment", "user-42", 2)}


def test_an_inconsistent_assignment_rejects_its_span_alone(served: Served, bootstrap: str, unique: str) -> None:
    key = new_key(bootstrap, served, f"bad-ab-{unique}")
    tid = uuid.uuid4().hex
    now = time.time_ns()
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bot"}}]},
                               "scopeSpans": [{"spans": [
        {"traceId": tid, "spanId": "00000000000000a1", "name": "invoke_agent", "startTimeUnixNano": str(now),
         "endTimeUnixNano": str(now + 1000), "attributes": [
             {"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}},
             {"key": "agentgym.experiment.id", "value": {"stringValue": "x"}},
             {"key": "agentgym.experiment.variant", "value": {"stringValue": "a"}}]},
        {"traceId": tid, "spanId": "00000000000000a2", "parentSpanId": "00000000000000a1", "name": "chat m",
         "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 500), "attributes": [
             {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}]}]}]}
    status, resp, _ = call("POST", f"{served.url}/v1/traces", body, auth(key))
    assert status == 200, resp
    assert int(resp["partialSuccess"]["rejectedSpans"]) == 1
    assert "agentgym.experiment.unit_id" in resp["partialSuccess"]["errorMessage"]
