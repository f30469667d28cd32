"""Synthetic generation jobs over HTTP: queue one, status.

A job is a record queued in the synthetic job store (``AGENTGYM_SYNTH_JOBS_DIR``,
:mod:`agentgym.trainers.synth.jobs`); ``agentgym synth serve`` runs it through the same
service as ``agentgym synth generate`` and writes its outcome back (the dataset id once
written). The gateway never generates. Only the built-in generators and the specs
shipped with Agent Gym can be named here: plugin references and spec paths would let a
request import code or read files on the runner. A key sees its tenant's jobs only;
another tenant's job is 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, get_args

from aiohttp import web

from agentgym.gateway.audit import audited
from agentgym.gateway.body import read_json
from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.ids import ID_PATTERN, check_id
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
from agentgym.trainers.synth.generators import BUILTIN_GENERATORS
from agentgym.trainers.synth.jobs import SynthJob, SynthJobStatus, SynthJobStore, new_synth_job_id
from agentgym.trainers.synth.service import DEFAULT_GENERATORS
from agentgym.trainers.synth.settings import SynthSettings
from agentgym.trainers.synth.spec import SPECS_DIR

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["SYNTH_JOBS", "add_routes", "openapi_paths", "openapi_schemas", "MAX_N"]

SYNTH_JOBS = web.AppKey("synth_jobs", SynthJobStore)
MAX_N = 10_000
_STATUSES: tuple[str, ...] = get_args(SynthJobStatus)
_FIELDS = frozenset({"agent_id", "n", "seed", "generators", "specs", "tenant_id"})


def _shipped_specs() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))


def _names(body: dict[str, Any], field: str, allowed: list[str], default: tuple[str, ...]) -> tuple[str, ...]:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, list) or len(value) > 16 or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "invalid_request", field, "expected an array of at most 16 names")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ApiError(400, "invalid_request", field, f"{unknown[0][:60]!r} is not one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(value))


def job_from_body(body: Any, tenant_id: str) -> SynthJob:
    """The job a request describes (400/403 naming the field otherwise)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "body", 'expected {"agent_id": ..., "n": ...}')
    extra = sorted(set(body) - _FIELDS)
    if extra:
        raise ApiError(400, "invalid_request", extra[0], "unknown field")
    if "tenant_id" in body and body["tenant_id"] != tenant_id:
        raise ApiError(403, "forbidden_tenant", "tenant_id", "names another tenant than the API key's")
    try:
        agent_id = check_id("agent_id", body.get("agent_id"))
    except InvalidIdError as exc:
        raise ApiError(400, "invalid_request", exc.field, exc.reason) from None
    n, seed = body.get("n"), body.get("seed", 0)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise ApiError(400, "invalid_request", "n", f"scenarios to generate: an integer 1-{MAX_N}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise ApiError(400, "invalid_request", "seed", "an integer 0 to 2^31-1")
    generators = _names(body, "generators", sorted(BUILTIN_GENERATORS), DEFAULT_GENERATORS)
    specs = _names(body, "specs", _shipped_specs(), ())
    if not generators and not specs:
        raise ApiError(400, "invalid_request", "generators", "name at least one generator or spec")
    now = int(time.time() * 1000)
    return SynthJob(job_id=new_synth_job_id(now), tenant_id=tenant_id, agent_id=agent_id, n=n, seed=seed, generators=generators,
                    specs=specs, status="queued", reason="requested through the API; run by agentgym synth serve",
                    created_ms=now, updated_ms=now)


def _own(store: SynthJobStore, job_id: str, tenant_id: str) -> SynthJob:
    job = store.get(job_id)
    if job is None or job.tenant_id != tenant_id:
        raise not_found("job_id", "synthetic job", job_id)
    return job


async def _start(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, ADMIN)
    job = job_from_body(await read_json(request, gw.settings), key.tenant_id)
    await asyncio.to_thread(request.app[SYNTH_JOBS].save, job)
    return json_response(asdict(job), 202)


async def _list(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    agent, status = request.query.get("agent_id"), request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise ApiError(400, "invalid_request", "status", f"one of {', '.join(_STATUSES)}")
    limit = query_int(request, "limit", 100, 1, 1000)
    jobs = await asyncio.to_thread(request.app[SYNTH_JOBS].list)
    rows = [asdict(j) for j in jobs if j.tenant_id == key.tenant_id and (agent is None or j.agent_id == agent)
            and (status is None or j.status == status)]
    return json_response({"jobs": rows[:limit]})


async def _show(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    job_id = path_id(request, "job_id")
    return json_response(asdict(await asyncio.to_thread(_own, request.app[SYNTH_JOBS], job_id, key.tenant_id)))


def add_routes(app: web.Application, endpoint: Endpoint, gateway: "web.AppKey[Gateway]") -> None:
    """Adds the synthetic job routes; the job store is opened on startup."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        s = app[gateway].settings
        app[SYNTH_JOBS] = SynthJobStore(SynthSettings(home=s.home, bootstrap_servers=s.bootstrap_servers).jobs_dir)
        yield

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/synthetic-jobs", endpoint("synthetic_jobs_start", audited("synthetic_job.start", "job_id", _start)))
    app.router.add_get("/v1/synthetic-jobs", endpoint("synthetic_jobs_list", _list))
    app.router.add_get("/v1/synthetic-jobs/{job_id}", endpoint("synthetic_jobs_show", _show))


def openapi_schemas() -> dict[str, Any]:
    return {"SyntheticJob": {"type": "object", "properties": {
        "job_id": {"type": "string"}, "tenant_id": {"type": "string"}, "agent_id": {"type": "string"}, "n": {"type": "integer"},
        "seed": {"type": "integer"}, "generators": {"type": "array", "items": {"type": "string"}},
        "specs": {"type": "array", "items": {"type": "string"}}, "status": {"type": "string", "enum": list(_STATUSES)},
        "reason": {"type": "string"}, "dataset_id": {"type": "string", "description": "the synthetic dataset, once written"},
        "scenarios": {"type": "integer"}, "splits": {"type": "object", "additionalProperties": {"type": "integer"}},
        "created_ms": {"type": "integer"}, "updated_ms": {"type": "integer"}, "started_ms": {"type": "integer"}},
        "required": ["job_id", "tenant_id", "agent_id", "n", "status", "reason", "dataset_id", "created_ms", "updated_ms"]}}


def openapi_paths() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/SyntheticJob"}
    names = {"type": "array", "maxItems": 16, "items": {"type": "string"}}
    return {
        "/v1/synthetic-jobs": {
            "post": {"summary": "queue a synthetic generation job for one of the tenant's agents; agentgym synth serve runs it (scope admin)",
                     "operationId": "start_synthetic_job",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "additionalProperties": False, "required": ["agent_id", "n"], "properties": {
                             "agent_id": {"type": "string", "pattern": ID_PATTERN},
                             "n": {"type": "integer", "minimum": 1, "maximum": MAX_N},
                             "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                             "generators": {**names, "items": {"type": "string", "enum": sorted(BUILTIN_GENERATORS)},
                                            "description": f"default {', '.join(DEFAULT_GENERATORS)}"},
                             "specs": {**names, "items": {"type": "string", "enum": _shipped_specs()},
                                       "description": "domain specs shipped with Agent Gym"},
                             "tenant_id": {"type": "string", "description": "optional; must be the API key's tenant"}}}}}},
                     "responses": {"202": json_ok(ref, "queued"), "400": err("the body is invalid (field named)"),
                                   "408": err("the body did not arrive in time"), "413": err("body too large"),
                                   "415": err("unsupported Content-Encoding"), **AUTH_ERRORS}},
            "get": {"summary": "the tenant's synthetic jobs, newest first (scope read)", "operationId": "list_synthetic_jobs",
                    "parameters": [
                        {"name": "agent_id", "in": "query", "required": False, "schema": {"type": "string", "pattern": ID_PATTERN}},
                        {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": list(_STATUSES)}},
                        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                    "responses": {"200": json_ok({"type": "object", "properties": {"jobs": {"type": "array", "items": ref}},
                                                  "required": ["jobs"]}),
                                  "400": err("a query parameter is invalid"), **AUTH_ERRORS}},
        },
        "/v1/synthetic-jobs/{job_id}": {"get": {
            "summary": "a synthetic job's status and outcome (scope read)", "operationId": "get_synthetic_job",
            "parameters": [id_param("job_id", "the job's id")],
            "responses": {"200": json_ok(ref), "400": err("the id is not a valid id"), "404": err("no such job for this tenant"),
                          **AUTH_ERRORS}}},
    }
