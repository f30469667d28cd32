"""The HTTP ingestion gateway: agents that cannot import the SDK post JSON instead.

    POST /v1/experiences   one experience object, or {"events": [...]} for a batch
    POST /v1/feedback      one feedback object (with "trace_id"), or {"events": [...]}
    GET  /healthz          liveness and the producer's spool/delivery counters

Each body field is an argument of :meth:`AgentGym.record_experience` /
:meth:`AgentGym.record_feedback`, plus ``tenant_id`` / ``agent_id`` (or the
``X-AgentGym-Tenant`` / ``X-AgentGym-Agent`` headers) when one gateway serves many
agents. Invalid input gets HTTP 400 naming the field and the reason; accepted events
get 202 with their trace / event ids. Events go through the SDK, so they share its
guarantees (idempotent produce, spool when Kafka is away).

Run with ``agentgym gateway run`` (aiohttp).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from agentgym.producers.client import AgentGym
from agentgym.producers.exceptions import InvalidEventError
from agentgym.producers.settings import ProducerSettings

__all__ = ["create_app", "run"]

log = logging.getLogger("agentgym.gateway")

_EXPERIENCE_ARGS = frozenset({
    "input", "output", "model_name", "model_version", "latency_ms", "trace_id", "steps", "prompt_tokens",
    "completion_tokens", "cost_usd", "status", "error", "session_id", "user_id", "assignment", "metadata",
    "timestamp_ms", "event_id",
})
_FEEDBACK_ARGS = frozenset({
    "trace_id", "rating", "rating_scale", "thumbs_up", "comment", "correction", "signal", "value", "source",
    "user_id", "metadata", "timestamp_ms", "event_id",
})
MAX_BATCH = 1000


class _BadRequest(Exception):
    def __init__(self, field: str, reason: str, index: int | None = None) -> None:
        self.body = {"error": "invalid event", "field": field, "reason": reason}
        if index is not None:
            self.body["index"] = index


class _Clients:
    """One SDK client per (tenant, agent), created on first use."""

    def __init__(self, settings: ProducerSettings) -> None:
        self.settings = settings
        self._clients: dict[tuple[str, str], AgentGym] = {}

    def get(self, tenant: str, agent: str) -> AgentGym:
        key = (tenant, agent)
        client = self._clients.get(key)
        if client is None:
            s = self.settings.model_copy(update={"tenant_id": tenant, "agent_id": agent,
                                                 "spool_dir": self.settings.spool_dir / f"{tenant}--{agent}"})
            client = self._clients[key] = AgentGym(settings=s)
        return client

    def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for c in self._clients.values():
            for k, v in c.stats.items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


SETTINGS = web.AppKey("settings", ProducerSettings)
CLIENTS = web.AppKey("clients", _Clients)


def _events(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "events" in body:
        events = body["events"]
        if not isinstance(events, list):
            raise _BadRequest("events", "must be a list of objects")
        if len(events) > MAX_BATCH:
            raise _BadRequest("events", f"{len(events)} events; at most {MAX_BATCH} per request")
    else:
        events = [body]
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            raise _BadRequest("events" if len(events) > 1 else "body", f"expected a JSON object, got {type(e).__name__}", i)
    return events


def _identity(request: web.Request, event: dict[str, Any], i: int) -> tuple[str, str]:
    tenant = event.pop("tenant_id", None) or request.headers.get("X-AgentGym-Tenant") or request.app[SETTINGS].tenant_id
    agent = event.pop("agent_id", None) or request.headers.get("X-AgentGym-Agent") or request.app[SETTINGS].agent_id
    for name, value in (("tenant_id", tenant), ("agent_id", agent)):
        if not isinstance(value, str) or not value:
            raise _BadRequest(name, "must be a non-empty string", i)
    return tenant, agent


async def _read_json(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest("body", f"not valid JSON: {exc}") from None


def _record(request: web.Request, events: list[dict[str, Any]], allowed: frozenset[str], kind: str) -> list[str]:
    clients: _Clients = request.app[CLIENTS]
    prepared = []
    # validate everything before producing anything: a batch is accepted whole or not at all
    for i, event in enumerate(events):
        event = dict(event)
        tenant, agent = _identity(request, event, i)
        unknown = sorted(set(event) - allowed)
        if unknown:
            raise _BadRequest(unknown[0], f"unknown field for {kind}; known: {', '.join(sorted(allowed))}", i)
        prepared.append((clients.get(tenant, agent), event))
    ids = []
    for i, (client, event) in enumerate(prepared):
        try:
            if kind == "experience":
                ids.append(client.record_experience(**event))
            else:
                if "trace_id" not in event:
                    raise _BadRequest("trace_id", "is missing (the run the feedback is about)", i)
                ids.append(client.record_feedback(event.pop("trace_id"), **event))
        except InvalidEventError as exc:
            raise _BadRequest(exc.field, exc.reason, i) from None
        except TypeError as exc:  # a missing required argument: Python names it
            missing = str(exc).rsplit(":", 1)[-1].strip().strip("'")
            raise _BadRequest(missing or "body", f"is missing ({exc})", i) from None
    return ids


def _handler(kind: str, allowed: frozenset[str], id_name: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        try:
            events = _events(await _read_json(request))
            ids = _record(request, events, allowed, kind)
        except _BadRequest as bad:
            return web.json_response(bad.body, status=400)
        return web.json_response({"accepted": len(ids), id_name: ids}, status=202)

    return handle


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", **request.app[CLIENTS].stats()})


def create_app(settings: ProducerSettings | None = None) -> web.Application:
    """The gateway's aiohttp application (clients are closed, and flushed, on cleanup)."""
    settings = settings or ProducerSettings()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[SETTINGS] = settings
    app[CLIENTS] = _Clients(settings)
    app.router.add_post("/v1/experiences", _handler("experience", _EXPERIENCE_ARGS, "trace_ids"))
    app.router.add_post("/v1/feedback", _handler("feedback", _FEEDBACK_ARGS, "event_ids"))
    app.router.add_get("/healthz", _health)

    async def _close(app: web.Application) -> None:
        app[CLIENTS].close()

    app.on_cleanup.append(_close)
    return app


def run(host: str = "127.0.0.1", port: int = 8080, settings: ProducerSettings | None = None) -> None:
    web.run_app(create_app(settings), host=host, port=port, print=lambda s: log.info(s))
