"""Every program under ``examples/`` runs as its README says, against the real stack.

Each example runs as a subprocess with the command and environment ``examples/README.md``
gives; the test then reads what it wrote from the real broker (``gym-experiences-v1``,
``gym-feedback-v1``, from the offsets taken before the module's first example ran). The
Python SDK examples produce to Kafka themselves; curl and TypeScript go through a gateway
served here, with keys made through the key store. The OpenAI-compatible server is a
fake (aiohttp); the ``openai`` client and LangChain's ``ChatOpenAI`` talking to it are
real; LlamaIndex runs on its own ``MockLLM``. ``examples/otel`` is run by
``tests/integration/gateway/test_otlp.py`` (it needs the otel worker and the sink).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from agentgym.producers.records import watermarks
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import Served, ServedGateway, auth, call, new_key, test_settings
from tests.workers import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXPERIENCES, FEEDBACK = TOPICS["experiences"].name, TOPICS["feedback"].name
ANSWER = "Your order A17 ships tomorrow."


class FakeOpenAI:
    """An OpenAI-compatible ``POST /v1/chat/completions`` that always answers ``ANSWER``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
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
        self.requests.append({"authorization": request.headers.get("Authorization"), **await request.json()})
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}})

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Arrivals:
    """What reached the experiences and feedback topics since the module started, decoded."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"examples-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False})
        start = []
        for topic in (EXPERIENCES, FEEDBACK):
            partitions = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
            start += [TopicPartition(topic, p, watermarks(self.consumer, topic, p)[1]) for p in partitions]
        self.consumer.assign(start)
        self.codec = AvroCodec()
        self.seen: dict[str, list[dict[str, Any]]] = {EXPERIENCES: [], FEEDBACK: []}

    def of(self, topic: str, tenant: str, n: int = 1) -> list[dict[str, Any]]:
        """The ``n`` records of ``tenant`` on ``topic``, once they arrived."""
        def arrived() -> list[dict[str, Any]] | None:
            for m in self.consumer.consume(500, 0.3):
                if m.error() is None:
                    self.seen[str(m.topic())].append(self.codec.decode(m.value()).record)
            mine = [r for r in self.seen[topic] if r["tenant_id"] == tenant]
            return mine if len(mine) >= n else None

        mine = wait_for(arrived, 30, f"{n} record(s) of tenant {tenant} on {topic}", every=0)
        assert len(mine) == n, f"more records than the example wrote: {mine}"
        return mine

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture(scope="module")
def arrivals(bootstrap: str) -> Iterator[Arrivals]:
    a = Arrivals(bootstrap)
    yield a
    a.close()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    yield f
    f.close()


@pytest.fixture(scope="module")
def gateway(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("examples-gateway")
    with ServedGateway(test_settings(bootstrap, base / "spool", home=base / "home")) as served:
        yield served


def run_example(command: list[str], env: dict[str, str]) -> str:
    """Runs an example from the repository root as its README says; returns its stdout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGYM_", "OPENAI_", "OTEL_"))}
    for var in ("AGENTGYM_HOME", "AGENTGYM_SPOOL_DIR"):  # this test's own, not ~/.agentgym
        clean[var] = os.environ[var]
    out = subprocess.run(command, env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{command} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def trace_id_of(stdout: str) -> str:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("trace_id="), stdout
    return last.removeprefix("trace_id=")


def sdk_env(bootstrap: str, tenant: str, **extra: str) -> dict[str, str]:
    return {"AGENTGYM_BOOTSTRAP_SERVERS": bootstrap, "AGENTGYM_TENANT_ID": tenant, "AGENTGYM_AGENT_ID": "support-bot", **extra}


def test_sdk_example(bootstrap: str, arrivals: Arrivals, unique: str) -> None:
    tenant = f"ex-sdk-{unique}"
    trace_id = trace_id_of(run_example([sys.executable, "examples/sdk/agent.py", "Where is my order A17?"], sdk_env(bootstrap, tenant)))
    [e] = arrivals.of(EXPERIENCES, tenant)
    assert (e["trace_id"], e["agent_id"], e["user_id"], e["output"]) == (trace_id, "support-bot", "user-42", ANSWER)
    assert [(s["kind"], s["name"]) for s in e["steps"]] == [("tool", "lookup_order"), ("llm", "answer")]
    assert '"ships tomorrow"' in e["steps"][0]["output"]
    assert (e["prompt_tokens"], e["completion_tokens"], e["status"]) == (42, 9, "ok")
    [f] = arrivals.of(FEEDBACK, tenant)
    assert (f["trace_id"], f["kind"], f["thumbs_up"], f["comment"]) == (trace_id, "thumbs", True, "quick and right")


def test_openai_example(bootstrap: str, arrivals: Arrivals, fake_openai: FakeOpenAI, unique: str) -> None:
    tenant = f"ex-openai-{unique}"
    env = sdk_env(bootstrap, tenant, OPENAI_BASE_URL=fake_openai.url, OPENAI_API_KEY=f"sk-{unique}")
    out = run_example([sys.executable, "examples/openai/agent.py", "Where is my order A17?"], env)
    assert ANSWER in out
    request = next(r for r in fake_openai.requests if r["authorization"] == f"Bearer sk-{unique}")  # the real client's call
    assert "agentgym_user_id" not in request and request["messages"][-1]["content"] == "Where is my order A17?"
    [e] = arrivals.of(EXPERIENCES, tenant)
    assert e["trace_id"] == trace_id_of(out)
    assert (e["model_name"], e["model_version"], e["user_id"], e["output"]) == ("gpt-4o-mini", "prompt-v3", "user-42", ANSWER)
    assert (e["prompt_tokens"], e["completion_tokens"]) == (30, 9)
    assert [m["role"] for m in e["input"]] == ["system", "user"] and e["input"][1]["content"] == "Where is my order A17?"
    [f] = arrivals.of(FEEDBACK, tenant)
    assert (f["trace_id"], f["kind"], f["rating"]) == (e["trace_id"], "rating", 4.5)


def test_langchain_example(bootstrap: str, arrivals: Arrivals, fake_openai: FakeOpenAI, unique: str) -> None:
    tenant = f"ex-lc-{unique}"
    env = sdk_env(bootstrap, tenant, OPENAI_BASE_URL=fake_openai.url, OPENAI_API_KEY=f"sk-{unique}")
    out = run_example([sys.executable, "examples/langchain/agent.py", "Where is my order A17?"], env)
    assert ANSWER in out
    assert any(r["authorization"] == f"Bearer sk-{unique}" for r in fake_openai.requests)
    [e] = arrivals.of(EXPERIENCES, tenant)
    assert e["trace_id"] == trace_id_of(out)
    assert (e["model_name"], e["model_version"], e["user_id"], e["output"]) == ("gpt-4o-mini", "prompt-v3", "user-42", ANSWER)
    assert [(s["kind"], s["prompt_tokens"], s["completion_tokens"]) for s in e["steps"]] == [("llm", 30, 9)]
    assert "Where is my order A17?" in e["steps"][0]["input"]
    [f] = arrivals.of(FEEDBACK, tenant)
    assert (f["trace_id"], f["kind"], f["thumbs_up"]) == (e["trace_id"], "thumbs", True)


def test_llamaindex_example(bootstrap: str, arrivals: Arrivals, unique: str) -> None:
    tenant = f"ex-li-{unique}"
    out = run_example([sys.executable, "examples/llamaindex/agent.py", "Where is my order A17?"], sdk_env(bootstrap, tenant))
    [e] = arrivals.of(EXPERIENCES, tenant)  # the query only: building the index is not a run
    assert (e["trace_id"], e["model_name"], e["model_version"]) == (trace_id_of(out), "mock-llm", "rag-v1")
    assert e["input"][0]["content"] == "Where is my order A17?" and e["output"] == out.strip().splitlines()[-2]
    assert [s["kind"] for s in e["steps"]] == ["retrieval", "llm"]
    assert "Order A17 ships tomorrow." in e["steps"][0]["output"] and "Where is my order A17?" in e["steps"][1]["input"]
    [f] = arrivals.of(FEEDBACK, tenant)
    assert (f["trace_id"], f["kind"], f["signal"]) == (e["trace_id"], "implicit", "task_completed")


def test_curl_example(bootstrap: str, gateway: Served, arrivals: Arrivals, unique: str) -> None:
    assert shutil.which("curl"), "curl is not on PATH: the curl example needs it (apt-get install curl)"
    tenant = f"ex-curl-{unique}"
    key = new_key(bootstrap, gateway, tenant)
    trace_id = trace_id_of(run_example(["bash", "examples/curl/send.sh"], {"AGENTGYM_URL": gateway.url, "AGENTGYM_KEY": key}))
    [e] = arrivals.of(EXPERIENCES, tenant)
    assert (e["trace_id"], e["agent_id"], e["model_version"], e["latency_ms"]) == (trace_id, "support-bot", "v3", 812.5)
    assert [(s["kind"], s["name"]) for s in e["steps"]] == [("tool", "lookup_order")]
    [f] = arrivals.of(FEEDBACK, tenant)
    assert (f["trace_id"], f["agent_id"], f["kind"], f["rating"]) == (trace_id, "support-bot", "rating", 5.0)


def test_typescript_example_with_an_ab_assignment(bootstrap: str, gateway: Served, arrivals: Arrivals, unique: str) -> None:
    node = shutil.which("node")
    assert node, "node is not on PATH: the TypeScript example needs Node.js 18+ (ops/setup.sh installs Debian's nodejs)"
    tenant = f"ex-ts-{unique}"
    admin, key = new_key(bootstrap, gateway, tenant, "read,admin"), new_key(bootstrap, gateway, tenant)
    status, exp, _ = call("POST", f"{gateway.url}/v1/experiments", {
        "experiment_id": "checkout", "agent_id": "support-bot", "primary_metric": "success_rate",
        "variants": [{"name": "control", "model_version": "v3", "weight": 0.5}, {"name": "candidate", "model_version": "v4", "weight": 0.5}],
    }, auth(admin))
    assert status == 201, exp
    experiment_id = exp["experiment_id"]  # namespaced by the tenant: <tenant>:checkout
    status, want, _ = call("GET", f"{gateway.url}/v1/experiments/{experiment_id}/assignment?unit_id=user-123", headers=auth(key))
    assert status == 200 and want["assignment"] is not None, want
    want = want["assignment"]

    out = run_example([node, "examples/typescript/agent.mjs", "user-123", "Where is my order A17?"],
                      {"AGENTGYM_URL": gateway.url, "AGENTGYM_KEY": key, "EXPERIMENT_ID": experiment_id})
    assert f"variant={want['variant']} model_version={want['model_version']}" in out
    [e] = arrivals.of(EXPERIENCES, tenant)
    assert (e["trace_id"], e["user_id"], e["model_version"]) == (trace_id_of(out), "user-123", want["model_version"])
    assert e["assignment"] == {"experiment_id": experiment_id, "variant": want["variant"], "unit_type": "user", "unit_id": "user-123",
                               "config_version": want["config_version"], "experiment_status": "running"}
    [f] = arrivals.of(FEEDBACK, tenant)
    assert (f["trace_id"], f["kind"], f["thumbs_up"], f["user_id"]) == (e["trace_id"], "thumbs", True, "user-123")
