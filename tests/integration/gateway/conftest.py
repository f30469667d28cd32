"""A gateway served in the test process (its own event loop thread) on the session's broker, and API keys for it."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentgym.gateway.app import GATEWAY, Gateway, create_app, make_runner, make_site
from agentgym.gateway.keys import create_key
from agentgym.gateway.settings import GatewaySettings
from agentgym.ops.kafka.broker import free_port
from tests.workers import wait_for


@dataclass
class Served:
    url: str
    gateway: Gateway
    settings: GatewaySettings


class ServedGateway:
    """Runs ``create_app(settings)`` with the gateway's runner on a free port, in a thread."""

    def __init__(self, settings: GatewaySettings, client_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings.model_copy(update={"port": free_port()})
        self.client_context = client_context  # trusts the test CA when the settings serve https
        self.app = create_app(self.settings)
        self.loop = asyncio.new_event_loop()
        self.runner = make_runner(self.app)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._ready = threading.Event()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(make_site(self.runner, self.settings, host="127.0.0.1").start())
        self._ready.set()
        self.loop.run_forever()
        pending = asyncio.all_tasks(self.loop)  # connection handlers the shutdown left behind
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def __enter__(self) -> Served:
        self._thread.start()
        assert self._ready.wait(60), "the gateway did not start"
        url = f"{self.settings.scheme}://127.0.0.1:{self.settings.port}"
        wait_for(lambda: call("GET", f"{url}/readyz", context=self.client_context)[0] == 200, 60, "the gateway's readiness")
        return Served(url, self.app[GATEWAY], self.settings)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)  # flushes the producer
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def test_settings(bootstrap: str, spool: Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(**{
        "bootstrap_servers": bootstrap, "spool_dir": spool, "max_body_bytes": 64 * 1024, "max_decompressed_bytes": 256 * 1024,
        "max_events": 20, "max_event_bytes": 16 * 1024, "body_timeout_s": 1.0, "header_timeout_s": 2.0, "rate_per_s": 1000.0, "burst": 1000.0,
        "default_plan": "enterprise", "usage_report_s": 0.2, **overrides})


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="module")
def served(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with ServedGateway(test_settings(bootstrap, tmp_path_factory.mktemp("gateway-spool"))) as s:
        yield s


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout_s: float = 15.0, context: ssl.SSLContext | None = None) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body or text, headers) of one request (``context``: the client's TLS, for https)."""
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=context) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), dict(exc.headers)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


def new_key(bootstrap: str, served: Served | list[Served], tenant: str, scopes: str = "ingest") -> str:
    """A fresh key, once every given gateway knows it."""
    key, _ = create_key(bootstrap, tenant, scopes.split(","))
    for s in served if isinstance(served, list) else [served]:
        wait_for(lambda: s.gateway.keys.verify(key) is not None, 30, "the gateway to learn the new key")
    return key


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def experience(i: int = 0, **fields: Any) -> dict[str, Any]:
    return {"input": f"q{i}", "output": "a", "model_name": "m", "model_version": "v1", "latency_ms": 12.5, **fields}
