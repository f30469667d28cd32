"""The HTTP gateway against the real broker: accepted events arrive; bad ones get a 400 naming the field."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agentgym.ops.kafka.broker import free_port
from agentgym.gateway.app import create_app
from agentgym.producers.settings import ProducerSettings
from tests.kafka_utils import consume_all, decode_all


@pytest.fixture
def gateway(bootstrap: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    settings = ProducerSettings(bootstrap_servers=bootstrap, spool_dir=tmp_path / "spool")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(settings))
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)  # flushes the SDK clients
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_experiences_and_feedback_over_http(gateway: str, bootstrap: str, unique: str) -> None:
    tenant = f"t-{unique}"
    status, body = _post(f"{gateway}/v1/experiences", {
        "events": [{"input": f"q{i}", "output": "a", "model_name": "m", "model_version": "v1", "latency_ms": 12.5,
                    "steps": [{"name": "search", "kind": "tool", "input": {"q": i}}], "metadata": {"n": i}}
                   for i in range(5)]}, headers={"X-AgentGym-Tenant": tenant, "X-AgentGym-Agent": "http-agent"})
    assert status == 202 and body["accepted"] == 5
    traces = body["trace_ids"]
    status, fb = _post(f"{gateway}/v1/feedback", {"trace_id": traces[0], "rating": 4, "tenant_id": tenant, "agent_id": "http-agent"})
    assert status == 202 and len(fb["event_ids"]) == 1
    with urllib.request.urlopen(f"{gateway}/healthz", timeout=10) as resp:
        assert json.loads(resp.read())["status"] == "ok"

    recs = decode_all(consume_all(bootstrap, "gym-experiences-v1", 5, match=lambda m: m.key().decode() in traces))
    assert sorted(r["trace_id"] for r in recs) == sorted(traces)
    assert {(r["tenant_id"], r["agent_id"]) for r in recs} == {(tenant, "http-agent")}
    assert sorted(r["metadata"]["n"] for r in recs) == ["0", "1", "2", "3", "4"]
    assert recs[0]["steps"][0]["input"].startswith('{"q": ')
    fbs = decode_all(consume_all(bootstrap, "gym-feedback-v1", 1, match=lambda m: m.key().decode() == traces[0]))
    assert [(f["kind"], f["rating"], f["tenant_id"]) for f in fbs] == [("rating", 4.0, tenant)]


@pytest.mark.parametrize(
    ("path", "body", "field", "text"),
    [
        ("/v1/experiences", {"input": "q", "output": "a", "model_name": "m", "model_version": "v", "latency_ms": "slow"},
         "latency_ms", "expected double"),
        ("/v1/experiences", {"input": "q", "output": "a", "model_name": "m", "latency_ms": 1.0}, "model_version", "missing"),
        ("/v1/experiences", {"input": "q", "output": "a", "model_name": "m", "model_version": "v", "latency_ms": 1.0,
                             "colour": "red"}, "colour", "unknown field"),
        ("/v1/feedback", {"rating": 3}, "trace_id", "missing"),
        ("/v1/feedback", {"trace_id": "t", "rating": 9}, "rating", "outside"),
        ("/v1/experiences", b"{not json", "body", "not valid JSON"),
        ("/v1/experiences", [1, 2], "body", "expected a JSON object"),
    ],
)
def test_bad_input_gets_400_naming_the_field(gateway: str, path: str, body: Any, field: str, text: str) -> None:
    status, resp = _post(f"{gateway}{path}", body)
    assert status == 400
    assert resp["field"] == field
    assert text in resp["reason"]


def test_a_batch_is_accepted_whole_or_not_at_all(gateway: str, bootstrap: str, unique: str) -> None:
    good = {"input": "q", "output": "a", "model_name": "m", "model_version": "v", "latency_ms": 1.0, "trace_id": f"{unique}-ok"}
    bad = dict(good, trace_id=f"{unique}-bad", surprise=1)
    status, resp = _post(f"{gateway}/v1/experiences", {"events": [good, bad]})
    assert status == 400 and resp["index"] == 1 and resp["field"] == "surprise"
    assert consume_all(bootstrap, "gym-experiences-v1", 1, timeout_s=3, match=lambda m: m.key().decode().startswith(unique)) == []
