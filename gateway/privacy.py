"""Deleting a user's data over HTTP (docs/privacy.md, "Deleting a user's data").

    POST /v1/privacy/deletions  {"user_id": "..."}   record a deletion of the key's tenant's user   scope admin (audited)
    GET  /v1/privacy/deletions[?status=&limit=]      the tenant's deletions, newest first            scope admin

The tenant is the key's. ``POST`` writes a ``requested`` Deletion record on the compacted
``gym-deletions-v1`` (waiting for Kafka's acknowledgement) and answers 202 with it; the
ClickHouse sink applies it (:mod:`agentgym.processors.deletions`) and writes it back as
``applied``, which ``GET`` then shows. When this process sees a deletion it requested
applied, it flags the models trained on the datasets it rewrote
(:meth:`~agentgym.trainers.registry.ModelRegistry.flag_deleted_data`). Every POST, refusals
included, is in the audit log (``privacy.delete``, target: the deletion id); the audit
record names the user only by the deletion's subject hash.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agentgym.gateway.audit import audited
from agentgym.gateway.body import read_json
from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.follower import CompactedFollower
from agentgym.gateway.resource import ADMIN, AUTH_ERRORS, Endpoint, err, json_ok, json_response, query_int
from agentgym.processors.deletions import MAX_USER_ID, deletion_request
from agentgym.producers.exceptions import BrokerError
from agentgym.producers.records import RecordProducer
from agentgym.trainers.registry import ModelRegistry

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["Deletions", "DELETIONS", "add_routes", "openapi_paths", "openapi_schemas"]

log = logging.getLogger("agentgym.gateway.privacy")
_STATUSES = ("requested", "applied")


class Deletions:
    """This process's follower of the deletions topic, and the models it flags for the deletions it requested."""

    def __init__(self, bootstrap_servers: str, timeout_s: float = 15.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._mine: set[str] = set()  # event ids of requests this process made, not yet applied
        self._lock = threading.Lock()
        self.producer = RecordProducer(bootstrap_servers, linger_ms=0)
        self.registry = ModelRegistry(bootstrap_servers)
        self.follower = CompactedFollower(bootstrap_servers, "deletions", on_record=self._on_record).start()

    def _on_record(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None or record["status"] != "applied":
            return
        with self._lock:
            if record["event_id"] not in self._mine:
                return
            self._mine.discard(record["event_id"])
        if record["datasets"]:  # the registry is read and written off the follower's thread
            threading.Thread(target=self._flag, args=(record,), name="agentgym-flag-models", daemon=True).start()

    def _flag(self, record: dict[str, Any]) -> None:
        try:
            flagged = self.registry.flag_deleted_data(record["tenant_id"], record["datasets"], record["event_id"])
            log.info("privacy: deletion %s: %d model version(s) flagged", record["event_id"], len(flagged))
        except Exception:
            log.exception("privacy: flagging the models of deletion %s failed (agentgym privacy delete flags them again)",
                          record["event_id"])

    def request(self, tenant_id: str, user_id: str, key_id: str) -> dict[str, Any]:
        record = deletion_request(tenant_id, user_id, key_id)
        with self._lock:
            self._mine.add(record["event_id"])
        try:
            self.producer.send("deletions", record)
        except BrokerError as exc:
            with self._lock:
                self._mine.discard(record["event_id"])
            raise ApiError(503, "unavailable", "user_id", f"the deletion could not be recorded: {exc}"[:300],
                           headers={"Retry-After": "5"}) from None
        return record

    def of_tenant(self, tenant_id: str) -> list[dict[str, Any]]:
        if not self.follower.wait_ready(self.timeout_s):
            raise ApiError(503, "unavailable", "deletions", "the deletions topic cannot be read yet", headers={"Retry-After": "5"})
        self.follower.sync(self.timeout_s)
        rows = [r for r in self.follower.records().values() if r["tenant_id"] == tenant_id]
        return sorted(rows, key=lambda r: (r["requested_ms"], r["event_id"]), reverse=True)

    def deleted_traces(self, tenant_id: str) -> set[str]:
        """The tenant's traces that applied deletions removed (what a dataset export leaves out)."""
        return {t for r in self.follower.records().values() if r["tenant_id"] == tenant_id for t in r["trace_ids"]}

    def close(self) -> None:
        self.follower.close()
        self.registry.close()
        self.producer.close()


DELETIONS = web.AppKey("deletions", Deletions)


def view(record: dict[str, Any]) -> dict[str, Any]:
    return {"deletion_id": record["event_id"], "tenant_id": record["tenant_id"], "user_id": record["user_id"],
            "status": record["status"], "requested_ms": record["requested_ms"], "requested_by": record["requested_by"],
            "applied_ms": record["applied_ms"], "traces": len(record["trace_ids"]),
            "deleted_rows": dict(record["deleted_rows"]), "datasets": list(record["datasets"])}


async def _create(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, ADMIN)
    body = await read_json(request, gw.settings)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "body", "must be a JSON object {\"user_id\": \"...\"}")
    extra = sorted(set(body) - {"user_id", "tenant_id"})
    if extra:
        raise ApiError(400, "invalid_request", extra[0], "is not a field of a deletion request (user_id)")
    if "tenant_id" in body and body["tenant_id"] != key.tenant_id:
        raise ApiError(403, "forbidden_tenant", "tenant_id", "names another tenant than the API key's")
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise ApiError(400, "invalid_request", "user_id", "is missing or empty: the user id the agents recorded")
    if len(user_id) > MAX_USER_ID:
        raise ApiError(400, "invalid_request", "user_id", f"is {len(user_id)} characters; at most {MAX_USER_ID}")
    record = await asyncio.to_thread(request.app[DELETIONS].request, key.tenant_id, user_id, key.key_id)
    return json_response(view(record), 202)


async def _list(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, ADMIN)
    status = request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise ApiError(400, "invalid_request", "status", f"one of {', '.join(_STATUSES)}")
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await asyncio.to_thread(request.app[DELETIONS].of_tenant, key.tenant_id)
    return json_response({"deletions": [view(r) for r in rows if status is None or r["status"] == status][:limit]})


def add_routes(app: web.Application, endpoint: Endpoint, gateway: "web.AppKey[Gateway]") -> None:
    """Adds the privacy routes; the deletions follower starts with the app."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        deletions = app[DELETIONS] = Deletions(app[gateway].settings.bootstrap_servers)
        yield
        await asyncio.to_thread(deletions.close)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/privacy/deletions", endpoint("privacy_delete", audited("privacy.delete", "deletion_id", _create)))
    app.router.add_get("/v1/privacy/deletions", endpoint("privacy_deletions", _list))


def openapi_schemas() -> dict[str, Any]:
    return {"Deletion": {"type": "object", "properties": {
        "deletion_id": {"type": "string"}, "tenant_id": {"type": "string"}, "user_id": {"type": "string"},
        "status": {"type": "string", "enum": list(_STATUSES)}, "requested_ms": {"type": "integer"},
        "requested_by": {"type": "string"}, "applied_ms": {"type": ["integer", "null"]},
        "traces": {"type": "integer", "description": "the user's traces deleted"},
        "deleted_rows": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "rows deleted per ClickHouse table"},
        "datasets": {"type": "array", "items": {"type": "string"}, "description": "datasets rewritten without the user's examples"}},
        "required": ["deletion_id", "tenant_id", "user_id", "status", "requested_ms", "requested_by", "applied_ms", "traces",
                     "deleted_rows", "datasets"]}}


def openapi_paths() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Deletion"}
    return {"/v1/privacy/deletions": {
        "post": {
            "summary": "delete a user's experiences, feedback, outcomes and annotations, in ClickHouse, datasets and "
                       "every replay; the key's tenant (scope admin)",
            "operationId": "create_deletion",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "user_id": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID, "pattern": r"\S",
                                "description": "the user id the agents recorded"},
                    "tenant_id": {"type": "string", "description": "optional; must be the API key's tenant (403 otherwise)"}},
                "required": ["user_id"], "additionalProperties": False}}}},
            "responses": {"202": json_ok(ref, "recorded; the processors apply it (GET shows it applied)"),
                          "400": err("the body is invalid (field and reason named)"),
                          "408": err("the body did not arrive in time"), "413": err("the body is over its limit"),
                          "415": err("unsupported Content-Encoding"),
                          "503": err("Kafka did not acknowledge the request", retry_after=True), **AUTH_ERRORS}},
        "get": {
            "summary": "the tenant's deletions (the latest per user), newest first (scope admin)", "operationId": "list_deletions",
            "parameters": [
                {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": list(_STATUSES)}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": json_ok({"type": "object", "properties": {"deletions": {"type": "array", "items": ref}},
                                          "required": ["deletions"]}),
                          "400": err("a query parameter is invalid"),
                          "503": err("the deletions topic cannot be read yet", retry_after=True), **AUTH_ERRORS}},
    }}
