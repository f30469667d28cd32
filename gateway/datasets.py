"""Datasets over HTTP: list, show and export (streamed JSONL), from the dataset store.

The store (``AGENTGYM_DATASET_STORE``, :class:`~agentgym.processors.datasets.store.DatasetStore`)
holds every tenant's datasets, each with a manifest naming its ``tenant_id``; these
routes show a key only its tenant's (another tenant's dataset is 404, as an unknown
one). Storage locations (``uri``) and the per-run lineage (every trace id) are not
served; the manifest's counts, shards, checksum and labeller versions are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.ids import ID_PATTERN
from agentgym.gateway.privacy import DELETIONS
from agentgym.gateway.resource import AUTH_ERRORS, READ, Endpoint, err, id_param, json_ok, json_response, not_found, path_id, query_int
from agentgym.processors.datasets.exceptions import DatasetError, DatasetNotFoundError
from agentgym.processors.datasets.store import SPLITS, DatasetStore, Manifest

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["add_routes", "openapi_paths", "openapi_schemas", "DATASETS", "summary"]

DATASETS = web.AppKey("datasets", DatasetStore)
_KINDS = ("sft", "preference", "eval", "synthetic")


def summary(m: Manifest) -> dict[str, Any]:
    """What a list shows of a dataset."""
    return {"dataset_id": m.dataset_id, "tenant_id": m.tenant_id, "agent_id": m.agent_id, "kind": m.kind,
            "created_ms": m.created_ms, "splits": dict(m.splits), "num_examples": m.num_examples, "checksum": m.checksum}


def _detail(m: Manifest) -> dict[str, Any]:
    lineage = {k: v for k, v in m.lineage.items() if k != "trace_ids"}
    lineage.setdefault("source_trace_count", len(m.trace_ids))
    return {**summary(m), "format": m.format, "counts": m.counts, "lineage": lineage,
            "shards": {s: [{"path": x.path, "rows": x.rows, "bytes": x.bytes, "sha256": x.sha256} for x in xs]
                       for s, xs in m.shards.items()}}


def _own(store: DatasetStore, dataset_id: str, tenant_id: str) -> Manifest:
    try:
        m = store.manifest(dataset_id)
    except DatasetNotFoundError:
        raise not_found("dataset_id", "dataset", dataset_id) from None
    except DatasetError as exc:
        raise ApiError(503, "unavailable", "dataset_id", f"the dataset's manifest cannot be read: {exc}"[:300]) from None
    if m.tenant_id != tenant_id:
        raise not_found("dataset_id", "dataset", dataset_id)
    return m


def own_dataset(request: web.Request, dataset_id: str, tenant_id: str) -> Manifest:
    """The tenant's dataset (blocking: run it in a thread), or 404."""
    return _own(request.app[DATASETS], dataset_id, tenant_id)


async def _list(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    agent, kind = request.query.get("agent_id"), request.query.get("kind")
    if kind is not None and kind not in _KINDS:
        raise ApiError(400, "invalid_request", "kind", f"one of {', '.join(_KINDS)}")
    limit = query_int(request, "limit", 100, 1, 1000)
    manifests = await asyncio.to_thread(request.app[DATASETS].list)
    rows = [summary(m) for m in manifests if m.tenant_id == key.tenant_id
            and (agent is None or m.agent_id == agent) and (kind is None or m.kind == kind)]
    return json_response({"datasets": rows[:limit]})


async def _show(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    dataset_id = path_id(request, "dataset_id")
    return json_response(_detail(await asyncio.to_thread(own_dataset, request, dataset_id, key.tenant_id)))


async def _export(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    dataset_id = path_id(request, "dataset_id")
    split = request.query.get("split")
    if split is not None and split not in SPLITS:
        raise ApiError(400, "invalid_request", "split", f"one of {', '.join(SPLITS)} (default: both)")
    store = request.app[DATASETS]
    m = await asyncio.to_thread(own_dataset, request, dataset_id, key.tenant_id)
    splits = [split] if split else [s for s in SPLITS if s in m.shards]
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                       "Content-Disposition": f'attachment; filename="{m.dataset_id}.jsonl"',
                                       "X-AgentGym-Examples": str(sum(m.splits.get(s, 0) for s in splits))})
    # a deletion rewrites the datasets of the store its worker writes; this leaves its traces out of any other copy too
    gone = request.app[DELETIONS].deleted_traces(key.tenant_id) if DELETIONS in request.app else set()
    await resp.prepare(request)
    for s in splits:
        shards: Iterator[list[dict[str, Any]]] = store.batches(m, s)
        while (rows := await asyncio.to_thread(next, shards, None)) is not None:  # one shard in memory at a time
            await resp.write(b"".join(orjson.dumps({"split": s, **r}) + b"\n" for r in rows
                                      if r.get("trace_id") not in gone and r.get("chosen_trace_id") not in gone))
    await resp.write_eof()
    return resp


def add_routes(app: web.Application, endpoint: Endpoint, gateway: "web.AppKey[Gateway]") -> None:
    """Adds the dataset routes; the store is opened on startup from the gateway's settings."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[DATASETS] = DatasetStore(app[gateway].settings.dataset_store)
        yield

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/datasets", endpoint("datasets_list", _list))
    app.router.add_get("/v1/datasets/{dataset_id}", endpoint("datasets_show", _show))
    app.router.add_get("/v1/datasets/{dataset_id}/export", endpoint("datasets_export", _export))


def openapi_schemas() -> dict[str, Any]:
    summary_schema = {"type": "object", "properties": {
        "dataset_id": {"type": "string"}, "tenant_id": {"type": "string"}, "agent_id": {"type": "string"},
        "kind": {"type": "string"}, "created_ms": {"type": "integer"},
        "splits": {"type": "object", "additionalProperties": {"type": "integer"}}, "num_examples": {"type": "integer"},
        "checksum": {"type": "string"}},
        "required": ["dataset_id", "tenant_id", "agent_id", "kind", "created_ms", "splits", "num_examples", "checksum"]}
    detail = {"allOf": [{"$ref": "#/components/schemas/DatasetSummary"}, {"type": "object", "properties": {
        "format": {"type": "string"}, "counts": {"type": "object"}, "lineage": {"type": "object"},
        "shards": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}}},
        "required": ["format", "counts", "lineage", "shards"]}]}
    return {"DatasetSummary": summary_schema, "Dataset": detail}


def openapi_paths() -> dict[str, Any]:
    param = id_param("dataset_id", "the dataset's id")
    bad, gone = err("the id is not a valid id"), err("no such dataset for this tenant")
    unreadable = err("the dataset store cannot be read")
    return {
        "/v1/datasets": {"get": {
            "summary": "the tenant's finished datasets, newest first (scope read)", "operationId": "list_datasets",
            "parameters": [
                {"name": "agent_id", "in": "query", "required": False, "schema": {"type": "string", "pattern": ID_PATTERN}},
                {"name": "kind", "in": "query", "required": False, "schema": {"type": "string", "enum": list(_KINDS)}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": json_ok({"type": "object", "properties": {"datasets": {"type": "array", "items": {
                "$ref": "#/components/schemas/DatasetSummary"}}}, "required": ["datasets"]}),
                "400": err("a query parameter is invalid"), **AUTH_ERRORS}}},
        "/v1/datasets/{dataset_id}": {"get": {
            "summary": "a dataset's manifest: counts, shards, checksum, labeller versions (scope read)", "operationId": "get_dataset",
            "parameters": [param],
            "responses": {"200": json_ok({"$ref": "#/components/schemas/Dataset"}), "400": bad, "404": gone, "503": unreadable,
                          **AUTH_ERRORS}}},
        "/v1/datasets/{dataset_id}/export": {"get": {
            "summary": "the dataset's rows as JSON lines, streamed, each with its split (scope read)", "operationId": "export_dataset",
            "parameters": [param, {"name": "split", "in": "query", "required": False, "schema": {"type": "string", "enum": list(SPLITS)}}],
            "responses": {"200": {"description": "one JSON object per line: split, prompt, completion (or chosen/rejected), lineage",
                                  "headers": {"X-AgentGym-Examples": {"description": "rows that follow", "schema": {"type": "integer"}}},
                                  "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                          "400": err("the id or the split is invalid"), "404": gone, "503": unreadable, **AUTH_ERRORS}}},
    }
