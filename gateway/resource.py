"""What the resource route groups (experiments, datasets, models, jobs) share.

Each group is a module with ``add_routes(app, endpoint)`` and ``openapi_paths()``;
``endpoint`` is :func:`agentgym.gateway.app._endpoint` (errors as JSON, metrics), passed
in so that these modules do not import the app module that imports them. Handlers take
``(request, gw)``, call ``gw.authenticate(request, READ or ADMIN)`` first and raise
:class:`~agentgym.gateway.exceptions.ApiError`. A resource of another tenant is answered
exactly like one that does not exist (404), so a key learns nothing about other tenants.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.ids import ID_PATTERN, check_id

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["READ", "ADMIN", "Handler", "Endpoint", "json_response", "path_id", "not_found", "err", "AUTH_ERRORS",
           "id_param", "json_ok", "query_int"]

READ = frozenset({"read", "admin"})
"""Reads: a key with ``read`` (or ``admin``, which may change, so may also look)."""
ADMIN = frozenset({"admin"})
"""Changes."""

Handler = Callable[[web.Request, "Gateway"], Awaitable[web.StreamResponse]]
Endpoint = Callable[[str, Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def path_id(request: web.Request, name: str) -> str:
    """The path parameter ``name``, passed through the shared id rule (400 naming it)."""
    value = request.match_info[name]
    try:
        return check_id(name, value)
    except InvalidIdError as exc:
        raise ApiError(400, "invalid_request", exc.field, exc.reason) from None


def not_found(field: str, what: str, value: str) -> ApiError:
    """The one answer for "unknown" and "another tenant's"."""
    return ApiError(404, "not_found", field, f"no {what} {value[:80]!r} for this tenant")


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", name, f"{raw[:40]!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "invalid_request", name, f"must be {lo}-{hi}, got {value}")
    return value


# -- OpenAPI pieces ------------------------------------------------------------------
def err(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


AUTH_ERRORS = {
    "401": err("missing, malformed, unknown or revoked API key"),
    "403": err("the key lacks the scope, or the request names another tenant"),
    "429": err("rate limit (per key); Retry-After says when to retry", retry_after=True),
}


def id_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": ID_PATTERN}}


def json_ok(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
