"""The audit log: every admin action and analytics query through the API, to ``gym-audit-v1``.

An :data:`AuditEvent` record says who (the API key id and its tenant), what (an
``action`` such as ``analytics.query``, ``experiment.pause``, ``model.promote``, and its
``target``), when (``timestamp_ms``) and the outcome (``ok``, ``refused``, ``error``, with
the HTTP status). The gateway sends it with its one producer (never blocking the request;
spooled while Kafka is away) keyed by tenant; the ClickHouse sink materialises the topic
into ``audit_log`` (``v_audit_log``, and per tenant ``pv_audit_log``).

Handlers call :func:`audit` after deciding, or wrap themselves with :func:`audited`,
which records the outcome of every call, refusals included::

    app.router.add_post("/v1/models/{version}/promote", _endpoint("promote", audited("model.promote", "version", _promote)))

The caller's key is the one :meth:`Gateway.authenticate` found (it leaves it on the
request under :data:`KEY_SLOT`, before the scope check, so a key refused for its scope is
still named). A request without a valid key (401) is not recorded: it has no tenant, and
an anonymous caller must not be able to fill the log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from agentgym.gateway.exceptions import ApiError, AuditError
from agentgym.gateway.keys import ApiKey
from agentgym.producers.client import AgentGym
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS

__all__ = ["AUDIT_TOPIC", "KEY_SLOT", "AUDITOR", "OUTCOMES", "Auditor", "audit_record", "outcome_of", "audit", "audited"]

AUDIT_TOPIC = TOPICS["audit"].name
KEY_SLOT = web.RequestKey("agentgym_api_key", ApiKey)
"""Where :meth:`Gateway.authenticate` leaves the caller's :class:`ApiKey` on the request."""
OUTCOMES = ("ok", "refused", "error")
_DETAIL_MAX = 2000


def outcome_of(status: int) -> str:
    """``ok`` below 400, ``refused`` for a 4xx, ``error`` for a 5xx."""
    return "ok" if status < 400 else "refused" if status < 500 else "error"


def audit_record(*, tenant_id: str, key_id: str, action: str, target: str, outcome: str, status: int = 0,
                 detail: str | None = None, request_id: str | None = None, timestamp_ms: int | None = None) -> dict[str, Any]:
    """An ``AuditEvent`` record (a fresh ``event_id``; ``detail`` cut to 2,000 characters).

    Raises:
        AuditError: ``outcome`` is not one of :data:`OUTCOMES` or ``action`` is empty.
    """
    if outcome not in OUTCOMES:
        raise AuditError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    if not action:
        raise AuditError("action is empty")
    return {
        "event_id": os.urandom(16).hex(), "tenant_id": tenant_id, "key_id": key_id,
        "timestamp_ms": timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000,
        "action": action, "target": target[:512], "outcome": outcome, "status": int(status),
        "detail": None if detail is None else detail[:_DETAIL_MAX],
        "request_id": None if request_id is None else request_id[:128],
    }


class Auditor:
    """Sends audit records with a gateway process's producer (never blocks; spools while Kafka is away)."""

    def __init__(self, client: AgentGym, codec: AvroCodec | None = None) -> None:
        self.client = client
        self.codec = codec or AvroCodec()
        self.sent = 0

    def send(self, record: dict[str, Any]) -> None:
        self.client.send_encoded("AuditEvent", AUDIT_TOPIC, record["tenant_id"],
                                 self.codec.encode("AuditEvent", record, AUDIT_TOPIC))
        self.sent += 1


AUDITOR = web.AppKey("agentgym_auditor", Auditor)


def audit(request: web.Request, action: str, target: str, outcome: str | int, *, detail: str | None = None,
          key: ApiKey | None = None) -> dict[str, Any]:
    """Records one admin action or query of ``request``'s caller; returns the record sent.

    Args:
        request: the request (its app holds the :class:`Auditor`; the key comes from :data:`KEY_SLOT`).
        action: what was done, dotted (``model.promote``).
        target: what it was done to (a model version, an experiment id, a query name).
        outcome: ``ok``/``refused``/``error``, or the HTTP status answered (mapped by :func:`outcome_of`).
        detail: parameters or the reason, as short text.
        key: the caller's key, when the handler has it and the request does not.
    """
    key = key or request.get(KEY_SLOT)
    status = outcome if isinstance(outcome, int) else 0
    record = audit_record(
        tenant_id=key.tenant_id if key is not None else "", key_id=key.key_id if key is not None else "",
        action=action, target=target, outcome=outcome_of(outcome) if isinstance(outcome, int) else outcome,
        status=status, detail=detail, request_id=request.headers.get("X-Request-Id"))
    request.app[AUDITOR].send(record)
    return record


Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


def audited(action: str, target: str | Callable[[web.Request], str], handler: Handler) -> Handler:
    """``handler`` with its every outcome audited: ok, refused (its :class:`ApiError`) or error.

    Args:
        action: the action's name (``experiment.pause``).
        target: the ``match_info`` name holding the target (``experiment_id``), or a function of the request;
            for a resource the request creates (no such path parameter), the field of that name in the
            JSON response is the target of a successful call.
        handler: ``async def handler(request, gw)``.
    """

    def target_of(request: web.Request, resp: web.StreamResponse | None = None) -> str:
        if callable(target):
            return target(request)
        if target in request.match_info:
            return request.match_info[target]
        body = getattr(resp, "body", None)
        if isinstance(body, bytes):
            try:
                found = orjson.loads(body)
            except orjson.JSONDecodeError:
                return ""
            return str(found.get(target, "")) if isinstance(found, dict) else ""
        return ""

    async def handle(request: web.Request, gw: Any) -> web.StreamResponse:
        try:
            resp = await handler(request, gw)
        except ApiError as exc:
            if exc.status != 401:  # no key, no tenant: an anonymous caller cannot fill the log
                audit(request, action, target_of(request), exc.status, detail=f"{exc.field}: {exc.reason}")
            raise
        except Exception as exc:
            audit(request, action, target_of(request), 500, detail=f"{type(exc).__name__}: {exc}")
            raise
        audit(request, action, target_of(request, resp), resp.status)
        return resp

    return handle
