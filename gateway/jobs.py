"""Training jobs over HTTP: start, status and progress.

The trainer service (``agentgym trainer run``) owns training: it keeps one JSON record per
job in its job store (``AGENTGYM_TRAINER_JOBS_DIR``, :class:`~agentgym.trainers.jobs.JobStore`)
and runs every ``deferred`` record whose agent's cool-down is over and which has no
candidate still in its A/B experiment. Starting a job through the API is a request the
service picks up: the gateway applies the service's own admission policy (a kind it
trains on, enough examples, no job for the dataset yet) to one of the tenant's datasets
and writes a ``deferred`` record with the cool-down's due time; the service then runs it
(the gateway never runs Ray). A requested job goes before the agent's automatic jobs and a
newer dataset arriving while it waits does not supersede it (``requested`` in the record). Status is the record; progress is
what the job's Ray Train controller last wrote (step, loss), as ``agentgym trainer jobs``
shows it. A key sees its tenant's jobs only; another tenant's job is 404.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, get_args

from aiohttp import web

from agentgym.gateway.audit import audited
from agentgym.gateway.body import read_json
from agentgym.gateway.datasets import own_dataset
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
from agentgym.processors.datasets.store import Manifest
from agentgym.trainers.jobs import JobRecord, JobRequestError, JobStatus, JobStore, request_job
from agentgym.trainers.settings import TrainerServiceSettings, TrainSettings

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["TrainingJobs", "TRAINING_JOBS", "add_routes", "openapi_paths", "openapi_schemas"]

_STATUSES: tuple[str, ...] = get_args(JobStatus)


class TrainingJobs:
    """The trainer service's job store and policy, as the gateway's environment configures them."""

    def __init__(self, gw: "Gateway") -> None:
        shared = {"home": gw.settings.home, "bootstrap_servers": gw.settings.bootstrap_servers}
        self.settings = TrainerServiceSettings(**shared)
        self.checkpoints = TrainSettings(**shared).train_checkpoint_store
        self.store = JobStore(self.settings.trainer_jobs_dir)
        self._admitting = threading.Lock()  # two requests for one dataset in this process: one job

    def request(self, request: web.Request, dataset_id: str, tenant_id: str) -> JobRecord:
        """Admits a job for the tenant's dataset as the service would, or refuses naming why (blocking)."""
        with self._admitting:
            return self._request(own_dataset(request, dataset_id, tenant_id))

    def _request(self, m: Manifest) -> JobRecord:
        s = self.settings
        try:
            return request_job(self.store, m, kinds=s.kinds, min_examples=s.trainer_min_examples,
                               cooldown_s=s.trainer_cooldown_s, reason="requested through the API")
        except JobRequestError as exc:
            raise ApiError(409, exc.code, "dataset_id", exc.reason) from None

    def own(self, job_id: str, tenant_id: str) -> JobRecord:
        rec = self.store.get(job_id)
        if rec is None or rec.tenant_id != tenant_id:
            raise not_found("job_id", "training job", job_id)
        return rec

    def view(self, rec: JobRecord, progress: bool) -> dict[str, Any]:
        out = {k: v for k, v in asdict(rec).items() if k != "dataset_uri"}
        if progress:
            out["progress"] = self.store.progress(rec, self.checkpoints)
        return out


TRAINING_JOBS = web.AppKey("training_jobs", TrainingJobs)


async def _start(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, ADMIN)
    body = await read_json(request, gw.settings)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "body", 'expected {"dataset_id": "..."}')
    extra = sorted(set(body) - {"dataset_id", "tenant_id"})
    if extra:
        raise ApiError(400, "invalid_request", extra[0], "unknown field")
    if "tenant_id" in body and body["tenant_id"] != key.tenant_id:
        raise ApiError(403, "forbidden_tenant", "tenant_id", "names another tenant than the API key's")
    if not isinstance(body.get("dataset_id"), str):
        raise ApiError(400, "invalid_request", "dataset_id", "is required: a dataset id of this tenant (GET /v1/datasets)")
    try:
        dataset_id = check_id("dataset_id", body["dataset_id"])
    except InvalidIdError as exc:
        raise ApiError(400, "invalid_request", exc.field, exc.reason) from None
    jobs = request.app[TRAINING_JOBS]
    rec = await asyncio.to_thread(jobs.request, request, dataset_id, key.tenant_id)
    return json_response(jobs.view(rec, progress=False), 202)


async def _list(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    dataset, status = request.query.get("dataset_id"), request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise ApiError(400, "invalid_request", "status", f"one of {', '.join(_STATUSES)}")
    limit = query_int(request, "limit", 100, 1, 1000)
    jobs = request.app[TRAINING_JOBS]
    records = await asyncio.to_thread(jobs.store.list)
    rows = [jobs.view(r, progress=False) for r in records if r.tenant_id == key.tenant_id
            and (dataset is None or r.dataset_id == dataset) and (status is None or r.status == status)]
    return json_response({"jobs": rows[:limit]})


async def _show(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    job_id = path_id(request, "job_id")
    jobs = request.app[TRAINING_JOBS]

    def read() -> dict[str, Any]:
        return jobs.view(jobs.own(job_id, key.tenant_id), progress=True)

    return json_response(await asyncio.to_thread(read))


def add_routes(app: web.Application, endpoint: Endpoint, gateway: "web.AppKey[Gateway]") -> None:
    """Adds the training job routes (the dataset routes must be added too: a job names a dataset)."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[TRAINING_JOBS] = TrainingJobs(app[gateway])
        yield

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/training-jobs", endpoint("training_jobs_start", audited("training_job.start", "job_id", _start)))
    app.router.add_get("/v1/training-jobs", endpoint("training_jobs_list", _list))
    app.router.add_get("/v1/training-jobs/{job_id}", endpoint("training_jobs_show", _show))


def openapi_schemas() -> dict[str, Any]:
    return {"TrainingJob": {"type": "object", "properties": {
        "job_id": {"type": "string"}, "dataset_id": {"type": "string"}, "tenant_id": {"type": "string"},
        "agent_id": {"type": "string"}, "kind": {"type": "string"}, "status": {"type": "string", "enum": list(_STATUSES)},
        "reason": {"type": "string"}, "num_examples": {"type": "integer"}, "base_model": {"type": "string"},
        "model_version": {"type": "string"}, "verdict": {"type": "string"}, "experiment_id": {"type": "string"},
        "metrics": {"type": "object", "additionalProperties": {"type": "number"}}, "created_ms": {"type": "integer"},
        "updated_ms": {"type": "integer"}, "started_ms": {"type": "integer"}, "due_ms": {"type": "integer"},
        "requested": {"type": "boolean", "description": "asked for explicitly (this API, an operator): runs before the "
                      "agent's automatic jobs and is never superseded by a newer dataset"},
        "progress": {"description": "the latest progress of its Ray Train run (step, loss, ...); null before it reports",
                     "anyOf": [{"type": "object"}, {"type": "null"}]}},
        "required": ["job_id", "dataset_id", "tenant_id", "agent_id", "kind", "status", "reason", "created_ms", "updated_ms"]}}


def openapi_paths() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/TrainingJob"}
    return {
        "/v1/training-jobs": {
            "post": {"summary": "request a fine-tuning job on one of the tenant's datasets; the trainer service runs it (scope admin)",
                     "operationId": "start_training_job",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "additionalProperties": False, "required": ["dataset_id"], "properties": {
                             "dataset_id": {"type": "string", "pattern": ID_PATTERN},
                             "tenant_id": {"type": "string", "description": "optional; must be the API key's tenant"}}}}}},
                     "responses": {"202": json_ok(ref, "the job, deferred until the trainer service runs it"),
                                   "400": err("the body is invalid (field named)"), "404": err("no such dataset for this tenant"),
                                   "408": err("the body did not arrive in time"),
                                   "409": err("the policy refuses it (kind, size) or a job for the dataset exists"),
                                   "413": err("body too large"), "415": err("unsupported Content-Encoding"),
                                   "503": err("the dataset store cannot be read"), **AUTH_ERRORS}},
            "get": {"summary": "the tenant's training jobs, newest first (scope read)", "operationId": "list_training_jobs",
                    "parameters": [
                        {"name": "dataset_id", "in": "query", "required": False, "schema": {"type": "string", "pattern": ID_PATTERN}},
                        {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": list(_STATUSES)}},
                        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                    "responses": {"200": json_ok({"type": "object", "properties": {"jobs": {"type": "array", "items": ref}},
                                                  "required": ["jobs"]}),
                                  "400": err("a query parameter is invalid"), **AUTH_ERRORS}},
        },
        "/v1/training-jobs/{job_id}": {"get": {
            "summary": "a job's status and progress (scope read)", "operationId": "get_training_job",
            "parameters": [id_param("job_id", "the job's id")],
            "responses": {"200": json_ok(ref), "400": err("the id is not a valid id"), "404": err("no such job for this tenant"),
                          **AUTH_ERRORS}}},
    }
