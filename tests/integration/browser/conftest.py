"""A real stack for the dashboard's browser tests, and a real chromium driven by Playwright.

The stack (module-scoped, to share its start-up across the tests of a module): the session's
Kafka broker, a real Faust worker running the ClickHouse sink and the experiments processor
on an embedded (chdb) store, and the API served in the test process, reading the store
through the worker's read-only HTTP interface, as ``agentgym up`` wires them.

The browser is Debian's ``chromium`` (``ops/setup.sh`` installs it), never one Playwright
downloads: ``/usr/bin/chromium``, or the path in ``AGENTGYM_CHROMIUM``. Headless, and
``--no-sandbox`` because CI runs as root. A missing browser fails the tests (it is not a skip).

Screenshots of every page go to ``$AGENTGYM_ARTIFACTS`` when set, else to
``artifacts/screenshots/`` under the repository root (ignored by git): CI keeps them as artefacts.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from agentgym import AgentGym
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import Served, ServedGateway, new_key, test_settings
from tests.workers import Worker, wait_for, worker_env

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CODEC = AvroCodec()


def chromium_path() -> str:
    """The browser the tests drive: ``AGENTGYM_CHROMIUM``, else Debian's ``/usr/bin/chromium``."""
    path = os.environ.get("AGENTGYM_CHROMIUM") or CHROMIUM
    if not os.access(path, os.X_OK):
        raise AssertionError(f"no chromium at {path}: install Debian's chromium (`bash ops/setup.sh` does, "
                             f"or `apt-get install chromium`) or set AGENTGYM_CHROMIUM to a chromium binary")
    return path


def artifacts_dir() -> Path:
    """Where screenshots go: ``$AGENTGYM_ARTIFACTS``, else ``<repo>/artifacts/screenshots``."""
    env = os.environ.get("AGENTGYM_ARTIFACTS")
    out = Path(env) if env else REPO / "artifacts" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot of ``page`` as ``<artifacts>/<name>.png``."""
    path = artifacts_dir() / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class Stack:
    """The running stack and one tenant's keys."""

    bootstrap: str
    worker: Worker
    served: Served
    store_url: str      # chdb://<dir>: what `agentgym sql --url` is given
    http_url: str       # the worker's read-only ClickHouse HTTP interface
    tenant: str
    read_key: str
    admin_key: str
    home: Path

    @property
    def url(self) -> str:
        return self.served.url

    def gym(self, agent: str) -> AgentGym:
        """The Python SDK, writing straight to the broker as this tenant's agent."""
        return AgentGym(self.bootstrap, self.tenant, agent, spool_dir=self.home / f"spool-{agent}", linger_ms=5)

    def scalar(self, sql: str, **params: str) -> str:
        """One value from the store, through the worker's HTTP interface (tests' polling, not the checks)."""
        query = {"query": sql, **{f"param_{k}": v for k, v in params.items()}}
        with urllib.request.urlopen(f"{self.http_url}/?{urllib.parse.urlencode(query)}", timeout=10) as resp:
            return resp.read().decode().strip()


def send_outcomes(bootstrap: str, outcomes: list[dict[str, Any]]) -> None:
    """Outcomes produced to ``gym-outcomes-v1`` as the labeller writes them (these tests do not run the labeller)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for rec in outcomes:
        producer.produce(TOPICS["outcomes"].name, CODEC.encode("Outcome", rec), rec["trace_id"].encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def outcome(gym: AgentGym, trace: str, label: str, confidence: float, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"o-{trace}", "tenant_id": gym.tenant_id, "agent_id": gym.agent_id, "trace_id": trace,
            "timestamp_ms": int(time.time() * 1000), "label": label, "confidence": confidence, "labeller": "test", **extra}


@pytest.fixture(scope="module")
def stack(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("dashboard-stack")
    home = root / "home"
    tag = root.name.replace("_", "-")[-24:] + "-" + os.urandom(3).hex()
    env = worker_env(bootstrap, home, f"dash-{tag}", "sink,experiments",
                     AGENTGYM_EXPERIMENTS_SNAPSHOT_INTERVAL_S="1", AGENTGYM_SINK_GROUP=f"dash-sink-{tag}",
                     AGENTGYM_SINK_BATCH_MS="100")
    worker = Worker(env, root / "worker.log").start()
    http_url = f"http://127.0.0.1:{env['AGENTGYM_HTTP_PORT']}"
    try:
        def http_up() -> bool:
            with urllib.request.urlopen(f"{http_url}/?query=SELECT%201", timeout=3) as resp:
                return resp.read().strip() == b"1"

        wait_for(http_up, 60, "the worker's ClickHouse HTTP interface", worker)
        settings = test_settings(bootstrap, root / "gateway-spool", clickhouse_url=http_url)
        with ServedGateway(settings) as served:
            tenant = f"dash-{os.urandom(4).hex()}"
            yield Stack(bootstrap, worker, served, env["AGENTGYM_CLICKHOUSE_URL"], http_url, tenant,
                        new_key(bootstrap, served, tenant, "read"), new_key(bootstrap, served, tenant, "read,admin"), root)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in its own context (no cookies: not logged in)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    p = context.new_page()
    try:
        yield p
    finally:
        context.close()
