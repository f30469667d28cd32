"""Models over HTTP: list, show, promote and retire versions of the model registry.

The registry is the compacted ``gym-models-v1`` topic
(:class:`~agentgym.trainers.registry.ModelRegistry`). Reads come from a follower of the
topic in this process (every version's latest record); promote and retire go through
``ModelRegistry`` exactly as ``agentgym models promote|retire`` do (promoting retires the
agent's previous champion), and answer once this process's follower holds the change.
A version another process registered (the trainer, ``agentgym models register``) is found
as soon as Kafka acknowledged it: a lookup that misses first reads the topic up to its end.
A key sees its tenant's versions only; another tenant's version is 404.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agentgym.gateway.audit import audited
from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.follower import CompactedFollower
from agentgym.gateway.ids import ID_PATTERN
from agentgym.gateway.resource import (
    ADMIN,
    AUTH_ERRORS,
    READ,
    Endpoint,
    err,
    id_param,
    json_ok,
    json_response,
    not_found,
    path_id,
    query_int,
)
from agentgym.trainers.exceptions import ModelVersionNotFoundError, RegistryError
from agentgym.trainers.registry import STATUSES, ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["Models", "MODELS", "apply", "add_routes", "openapi_paths", "openapi_schemas"]


class Models:
    """The process's follower of the registry topic and its ModelRegistry (for changes)."""

    def __init__(self, bootstrap_servers: str, timeout_s: float = 15.0) -> None:
        self.timeout_s = timeout_s
        self._changed = threading.Condition()
        self.follower = CompactedFollower(bootstrap_servers, "models", on_record=self._notify).start()
        self.registry = ModelRegistry(bootstrap_servers)

    def _notify(self, key: str, record: dict[str, Any] | None) -> None:
        with self._changed:
            self._changed.notify_all()

    def versions(self, tenant_id: str) -> list[dict[str, Any]]:
        if not self.follower.wait_ready(self.timeout_s):
            raise ApiError(503, "unavailable", "models", f"the model registry cannot be read ({self.follower.last_error or 'no answer'})",
                           headers={"Retry-After": "5"})
        out = [r for r in self.follower.records().values() if r["tenant_id"] == tenant_id]
        return sorted(out, key=lambda r: (r["created_ms"], r["model_version"]), reverse=True)

    def own(self, model_version: str, tenant_id: str) -> dict[str, Any]:
        if not self.follower.wait_ready(self.timeout_s):
            raise ApiError(503, "unavailable", "models", "the model registry cannot be read yet", headers={"Retry-After": "5"})
        record = self.follower.get(model_version)
        # registered elsewhere a moment ago: read up to now (another tenant's version too: a 404 takes as long either way)
        if (record is None or record["tenant_id"] != tenant_id) and self.follower.sync(self.timeout_s):
            record = self.follower.get(model_version)
        if record is None or record["tenant_id"] != tenant_id:
            raise not_found("model_version", "model version", model_version)
        return record

    def change(self, write: Callable[[], ModelVersion]) -> ModelVersion:
        """Runs ``write`` (blocking), then waits until the follower holds the result, and, for a promotion,
        the retirement of the agent's previous champion (written after it)."""
        before = self.follower.records()
        mv = write()

        def held() -> bool:
            if int((self.follower.get(mv.model_version) or {}).get("updated_ms", -1)) < mv.updated_ms:
                return False
            return mv.status != "champion" or not any(
                (self.follower.get(v) or {}).get("status") == "champion" for v, r in before.items()
                if v != mv.model_version and r["status"] == "champion" and (r["tenant_id"], r["agent_id"]) == (mv.tenant_id, mv.agent_id))

        with self._changed:
            self._changed.wait_for(held, timeout=self.timeout_s)
        return mv

    def close(self) -> None:
        self.follower.close()
        self.registry.close()


MODELS = web.AppKey("models", Models)


def view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "event_id"}


async def _list(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    agent, status = request.query.get("agent_id"), request.query.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_request", "status", f"one of {', '.join(STATUSES)}")
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await asyncio.to_thread(request.app[MODELS].versions, key.tenant_id)
    rows = [view(r) for r in rows if (agent is None or r["agent_id"] == agent) and (status is None or r["status"] == status)]
    return json_response({"models": rows[:limit]})


async def _show(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    version = path_id(request, "model_version")
    return json_response(view(await asyncio.to_thread(request.app[MODELS].own, version, key.tenant_id)))


async def apply(models: Models, verb: str, version: str, tenant_id: str) -> ModelVersion:
    """Promotes or retires (``verb``) the tenant's ``version``, as ``POST /v1/models/{version}/{verb}`` and the
    dashboard's buttons do; ApiError 404 (not the tenant's), 409 (the gate rejected it) or 503."""
    await asyncio.to_thread(models.own, version, tenant_id)
    write = {"promote": models.registry.promote, "retire": models.registry.retire}[verb]
    try:
        return await asyncio.to_thread(models.change, lambda: write(version))
    except ModelVersionNotFoundError:
        raise not_found("model_version", "model version", version) from None
    except RegistryError as exc:
        status, code = (409, "conflict") if "rejected" in str(exc) else (503, "unavailable")
        raise ApiError(status, code, "model_version", str(exc)[:300]) from None


def _action(verb: str) -> Callable[[web.Request, "Gateway"], Any]:
    async def handle(request: web.Request, gw: "Gateway") -> web.StreamResponse:
        key = gw.authenticate(request, ADMIN)
        version = path_id(request, "model_version")
        mv = await apply(request.app[MODELS], verb, version, key.tenant_id)
        return json_response(view(mv.record()))

    return handle


def add_routes(app: web.Application, endpoint: Endpoint, gateway: "web.AppKey[Gateway]") -> None:
    """Adds the model routes; the registry's follower starts with the app."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        models = app[MODELS] = Models(app[gateway].settings.bootstrap_servers)
        yield
        await asyncio.to_thread(models.close)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/models", endpoint("models_list", _list))
    app.router.add_get("/v1/models/{model_version}", endpoint("models_show", _show))
    app.router.add_post("/v1/models/{model_version}/promote", endpoint("models_promote", audited("model.promote", "model_version", _action("promote"))))
    app.router.add_post("/v1/models/{model_version}/retire", endpoint("models_retire", audited("model.retire", "model_version", _action("retire"))))


def openapi_schemas() -> dict[str, Any]:
    return {"ModelVersion": {"type": "object", "properties": {
        "tenant_id": {"type": "string"}, "model_version": {"type": "string"}, "agent_id": {"type": "string"},
        "base_model": {"type": "string"}, "status": {"type": "string", "enum": list(STATUSES)},
        "adapter_uri": {"type": ["string", "null"]}, "dataset_id": {"type": ["string", "null"]},
        "parent_version": {"type": ["string", "null"]},
        "hyperparameters": {"type": "object", "additionalProperties": {"type": "string"}},
        "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
        "created_ms": {"type": "integer"}, "updated_ms": {"type": "integer"}},
        "required": ["tenant_id", "model_version", "agent_id", "base_model", "status", "created_ms", "updated_ms"]}}


def openapi_paths() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ModelVersion"}
    param = id_param("model_version", "the model version")
    bad, gone = err("the id is not a valid id"), err("no such model version for this tenant")
    unavailable = err("the registry cannot be read or written", retry_after=True)
    out: dict[str, Any] = {
        "/v1/models": {"get": {
            "summary": "the tenant's model versions, newest first (scope read)", "operationId": "list_models",
            "parameters": [
                {"name": "agent_id", "in": "query", "required": False, "schema": {"type": "string", "pattern": ID_PATTERN}},
                {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": list(STATUSES)}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": json_ok({"type": "object", "properties": {"models": {"type": "array", "items": ref}},
                                          "required": ["models"]}),
                          "400": err("a query parameter is invalid"), "503": unavailable, **AUTH_ERRORS}}},
        "/v1/models/{model_version}": {"get": {
            "summary": "one model version (scope read)", "operationId": "get_model", "parameters": [param],
            "responses": {"200": json_ok(ref), "400": bad, "404": gone, "503": unavailable, **AUTH_ERRORS}}},
    }
    for verb, what in (("promote", "make it its agent's champion (the previous champion retires)"), ("retire", "retire it")):
        out[f"/v1/models/{{model_version}}/{verb}"] = {"post": {
            "summary": f"{what} (scope admin)", "operationId": f"{verb}_model", "parameters": [param],
            "responses": {"200": json_ok(ref, "the version's new record"), "400": bad, "404": gone,
                          "409": err("a version the gate rejected cannot be promoted"), "503": unavailable, **AUTH_ERRORS}}}
    return out
