"""Experiments over HTTP: create, list, get, start, pause, resume, stop, rollback, and the live stream.

The same path as ``agentgym experiments ...``: configurations are validated by
:class:`~agentgym.processors.experiments.config.ExperimentConfig` and written through
:class:`~agentgym.processors.experiments.admin.ExperimentAdmin` to the compacted
``gym-experiments-v1`` topic, whose key is the ``experiment_id``. That key is global, so
the API namespaces it by tenant: an experiment created by tenant ``acme`` as ``checkout``
is ``acme:checkout`` (the id agents, the SDK, the statistics and every route use), and
its record's ``tenant_id`` is ``acme``. The name part may not hold ``:``, so two tenants
can never produce the same id. Reads come from the process's follower of the topic and
show only the key's tenant's experiments (``tenant_id`` of the record); another tenant's
experiment is 404, as an unknown one. Experiments made with the CLI keep the id they were
given and are equally visible to their tenant.

A change answers once the broker acknowledged it and this process's follower holds it,
so a read right after a write sees it. The stream is :mod:`agentgym.gateway.streams`.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agentgym.gateway.audit import audited
from agentgym.gateway.body import read_json
from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.ids import check_id
from agentgym.gateway.resource import (
    ADMIN,
    AUTH_ERRORS,
    READ,
    Endpoint,
    err,
    json_ok,
    json_response,
    not_found,
    path_id,
)
from agentgym.gateway.streams import LiveStreams, stream_response
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.processors.experiments.config import TERMINAL, ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.exceptions import (
    ExperimentConfigError,
    ExperimentError,
    PublishError,
    TransitionError,
)
from agentgym.processors.experiments.metrics import METRICS

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["add_routes", "openapi_paths", "scoped_id", "EXPERIMENTS"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CREATE_FIELDS = frozenset({"experiment_id", "agent_id", "variants", "primary_metric", "guardrails", "alpha",
                            "min_samples_per_arm", "unit_type", "salt", "name", "draft", "tenant_id",
                            "audit_rate", "cuped_metrics", "cuped_lookback_days"})
_ACTIONS: dict[str, Callable[[ExperimentConfig, str], ExperimentConfig]] = {
    "start": lambda c, by: c.start(by),
    "pause": lambda c, by: c.pause(by),
    "resume": lambda c, by: c.resume(by),
    "stop": lambda c, by: c.stop(by),
    "rollback": lambda c, by: c.rollback(by),
}


def scoped_id(tenant_id: str, name: str) -> str:
    """The experiment id of tenant ``tenant_id``'s experiment ``name``: ``<tenant>:<name>``."""
    return f"{tenant_id}:{name}"


class Experiments:
    """What one process holds for these routes: the admin (its producer) and read-your-writes."""

    def __init__(self, gw: "Gateway") -> None:
        self.gw = gw
        self.admin = ExperimentAdmin(gw.settings.bootstrap_servers, follower=gw.experiments)
        self.streams = LiveStreams(gw.settings.bootstrap_servers, gw.settings.max_streams)
        self._changed = threading.Condition()
        gw.experiments.on_change(self._notify)

    def _notify(self, experiment_id: str, record: dict[str, Any] | None) -> None:
        with self._changed:
            self._changed.notify_all()

    def publish(self, write: Callable[[], ExperimentConfig]) -> ExperimentConfig:
        """Runs ``write`` (blocking), then waits until the follower holds its version."""
        config = write()
        with self._changed:
            self._changed.wait_for(lambda: int((self.gw.experiments.get(config.experiment_id) or {}).get("config_version", 0))
                                   >= config.config_version, timeout=self.admin.timeout_s)
        return config

    def own(self, experiment_id: str, tenant_id: str) -> ExperimentConfig:
        record = self.gw.experiments.get(experiment_id)
        if record is None or record.get("tenant_id") != tenant_id:
            raise not_found("experiment_id", "experiment", experiment_id)
        return ExperimentConfig.from_record(record)

    def close(self) -> None:
        self.streams.close()
        self.admin.close()


EXPERIMENTS = web.AppKey("experiments", Experiments)


def _view(c: ExperimentConfig) -> dict[str, Any]:
    return c.to_record()


# -- body -> configuration -------------------------------------------------------------
def _field(body: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "invalid_request", name, "is required")
        return default
    value = body[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ApiError(400, "invalid_request", name, f"has {type(value).__name__}, expected {' or '.join(k.__name__ for k in kinds)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(400, "invalid_request", name, "must be a finite number")
    return value


def _id(field: str, value: str) -> str:
    try:
        return check_id(field, value)
    except InvalidIdError as exc:
        raise ApiError(400, "invalid_request", exc.field, exc.reason) from None


def _metric(value: Any, where: str, guardrail: bool) -> MetricSpec:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_request", where, "expected a metric name or an object with name, direction, cap, limit")
    extra = sorted(set(value) - {"name", "direction", "cap", "limit"})
    if extra:
        raise ApiError(400, "invalid_request", f"{where}.{extra[0]}", "unknown field")
    name = _field(value, "name", (str,), required=True)
    if name not in METRICS:
        raise ApiError(400, "invalid_request", f"{where}.name", f"unknown metric {name[:60]!r}; known: {', '.join(sorted(METRICS))}")
    direction = _field(value, "direction", (str,))
    if direction is not None and direction not in ("increase", "decrease"):
        raise ApiError(400, "invalid_request", f"{where}.direction", "must be increase or decrease")
    cap = _field(value, "cap", (int, float))
    limit = _field(value, "limit", (int, float))
    if guardrail and limit is None:
        raise ApiError(400, "invalid_request", f"{where}.limit", "a guardrail needs a limit (largest tolerated relative degradation)")
    return MetricSpec.of(name, direction=direction, cap=None if cap is None else float(cap),
                         limit=None if limit is None else float(limit))


def _variants(value: Any) -> tuple[VariantSpec, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= 16:
        raise ApiError(400, "invalid_request", "variants", "expected an array of 2-16 variants")
    out = []
    for i, v in enumerate(value):
        where = f"variants[{i}]"
        if not isinstance(v, dict):
            raise ApiError(400, "invalid_request", where, "expected an object with name, model_version, weight, is_control")
        extra = sorted(set(v) - {"name", "model_version", "weight", "is_control"})
        if extra:
            raise ApiError(400, "invalid_request", f"{where}.{extra[0]}", "unknown field")
        name = _field(v, "name", (str,), required=True)
        model = _id(f"{where}.model_version", _field(v, "model_version", (str,), required=True))
        weight = _field(v, "weight", (int, float), 1.0)
        out.append(VariantSpec(name[:128], model[:200], float(weight), bool(_field(v, "is_control", (bool,), False))))
    if not any(v.is_control for v in out) and not any("is_control" in v for v in value):
        out[0] = VariantSpec(out[0].name, out[0].model_version, out[0].weight, True)  # the first, unless said otherwise
    return tuple(out)


def config_from_body(body: Any, tenant_id: str, by: str) -> ExperimentConfig:
    """The configuration a create request describes (400 naming the field otherwise)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "body", "expected a JSON object")
    extra = sorted(set(body) - _CREATE_FIELDS)
    if extra:
        raise ApiError(400, "invalid_request", extra[0], "unknown field")
    named = _field(body, "tenant_id", (str,))
    if named is not None and named != tenant_id:
        raise ApiError(403, "forbidden_tenant", "tenant_id", "names another tenant than the API key's")
    name = _field(body, "experiment_id", (str,), required=True)
    if not _NAME.match(name):
        raise ApiError(400, "invalid_request", "experiment_id",
                       f"{name[:40]!r}: 1-64 letters, digits, '.', '_' or '-' (the id becomes '<tenant>:<experiment_id>')")
    unit_type = _field(body, "unit_type", (str,), "user")
    if unit_type not in ("user", "session", "trace"):
        raise ApiError(400, "invalid_request", "unit_type", "must be user, session or trace")
    guardrails = _field(body, "guardrails", (list,), [])
    if len(guardrails) > 16:
        raise ApiError(400, "invalid_request", "guardrails", "at most 16")
    lookback = _field(body, "cuped_lookback_days", (int,), 28)
    if not 1 <= lookback <= 120:
        raise ApiError(400, "invalid_request", "cuped_lookback_days", f"must be 1-120 (the days of history the processor keeps), got {lookback}")
    cuped = _field(body, "cuped_metrics", (list,), [])
    if len(cuped) > 17 or not all(isinstance(m, str) for m in cuped):
        raise ApiError(400, "invalid_request", "cuped_metrics", "expected an array of at most 17 metric names")
    try:
        config = ExperimentConfig(
            experiment_id=scoped_id(tenant_id, name), tenant_id=tenant_id,
            agent_id=_id("agent_id", _field(body, "agent_id", (str,), required=True)),
            variants=_variants(body.get("variants")),
            primary_metric=_metric(_field(body, "primary_metric", (str, dict), "success_rate"), "primary_metric", False),
            guardrails=tuple(_metric(g, f"guardrails[{i}]", True) for i, g in enumerate(guardrails)),
            alpha=float(_field(body, "alpha", (int, float), 0.05)),
            min_samples_per_arm=int(_field(body, "min_samples_per_arm", (int,), 100)),
            salt=_field(body, "salt", (str,), "")[:200], unit_type=unit_type, name=_field(body, "name", (str,), "")[:500],
            status="draft" if _field(body, "draft", (bool,), False) else "running", updated_by=by,
            audit_rate=float(_field(body, "audit_rate", (int, float), 0.0)), cuped_metrics=tuple(cuped),
            cuped_lookback_days=int(lookback),
        )
        return config.validate()
    except ExperimentConfigError as exc:
        raise ApiError(400, "invalid_request", exc.field, exc.reason) from None


def _by(key_id: str) -> str:
    return f"api-key:{key_id}"


# -- handlers ----------------------------------------------------------------------------
async def _create(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, ADMIN)
    config = config_from_body(await read_json(request, gw.settings), key.tenant_id, _by(key.key_id))
    ex = request.app[EXPERIMENTS]
    try:
        created = await asyncio.to_thread(ex.publish, lambda: ex.admin.create(config))
    except ExperimentConfigError as exc:  # the id exists (the tenant's own: ids are namespaced)
        raise ApiError(409, "conflict", exc.field, exc.reason) from None
    except PublishError as exc:
        raise ApiError(503, "unavailable", "experiments", str(exc)) from None
    return json_response(_view(created), 201)


async def _list(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    status = request.query.get("status")
    if status is not None and status not in ("draft", "running", "paused", "stopped", "rolled_back", "concluded", "active", "all"):
        raise ApiError(400, "invalid_request", "status", "one of draft, running, paused, stopped, rolled_back, concluded, active, all")
    rows = []
    for record in gw.experiments.configs().values():
        if record.get("tenant_id") != key.tenant_id:
            continue
        s = record.get("status")
        if status in (None, "all") or s == status or (status == "active" and s not in TERMINAL):
            rows.append(record)
    rows.sort(key=lambda r: r["experiment_id"])
    return json_response({"experiments": rows})


async def _get(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    return json_response(_view(request.app[EXPERIMENTS].own(path_id(request, "experiment_id"), key.tenant_id)))


def _action(verb: str) -> Callable[[web.Request, "Gateway"], Any]:
    change = _ACTIONS[verb]

    async def handle(request: web.Request, gw: "Gateway") -> web.StreamResponse:
        key = gw.authenticate(request, ADMIN)
        ex = request.app[EXPERIMENTS]
        current = ex.own(path_id(request, "experiment_id"), key.tenant_id)
        try:
            nxt = change(current, _by(key.key_id))
        except TransitionError as exc:
            raise ApiError(409, "conflict", "status", str(exc)) from None
        except ExperimentError as exc:
            raise ApiError(409, "conflict", "experiment", str(exc)) from None
        try:
            published = await asyncio.to_thread(ex.publish, lambda: ex.admin.publish(nxt))
        except PublishError as exc:
            raise ApiError(503, "unavailable", "experiments", str(exc)) from None
        return json_response(_view(published))

    return handle


async def _stream(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, READ)
    ex = request.app[EXPERIMENTS]
    config = ex.own(path_id(request, "experiment_id"), key.tenant_id)
    return await stream_response(request, ex.streams, config.experiment_id)


def add_routes(app: web.Application, endpoint: Endpoint, gateway: "web.AppKey[Gateway]") -> None:
    """Adds the experiment routes, and the process's :class:`Experiments` built on startup from ``app[gateway]``."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        ex = app[EXPERIMENTS] = Experiments(app[gateway])
        yield
        await asyncio.to_thread(ex.close)

    async def end_streams(app: web.Application) -> None:  # before the server waits for its handlers to finish
        if EXPERIMENTS in app:
            app[EXPERIMENTS].streams.end_all()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_streams)
    app.router.add_post("/v1/experiments", endpoint("experiments_create", audited("experiment.create", "experiment_id", _create)))
    app.router.add_get("/v1/experiments", endpoint("experiments_list", _list))
    app.router.add_get("/v1/experiments/{experiment_id}", endpoint("experiments_get", _get))
    for verb in _ACTIONS:
        app.router.add_post(f"/v1/experiments/{{experiment_id}}/{verb}", endpoint(f"experiments_{verb}", audited(f"experiment.{verb}", "experiment_id", _action(verb))))
    app.router.add_get("/v1/experiments/{experiment_id}/stream", endpoint("experiments_stream", _stream))


# -- OpenAPI -------------------------------------------------------------------------------
def openapi_schemas() -> dict[str, Any]:
    metric = {"type": "object", "properties": {
        "name": {"type": "string", "enum": sorted(METRICS)}, "kind": {"type": "string"},
        "direction": {"type": "string", "enum": ["increase", "decrease"]},
        "cap": {"type": ["number", "null"]}, "limit": {"type": ["number", "null"]}}, "required": ["name"]}
    variant = {"type": "object", "properties": {
        "name": {"type": "string"}, "model_version": {"type": "string"}, "weight": {"type": "number"},
        "is_control": {"type": "boolean"}}, "required": ["name", "model_version"]}
    experiment = {"type": "object", "properties": {
        "experiment_id": {"type": "string"}, "tenant_id": {"type": "string"}, "agent_id": {"type": "string"},
        "name": {"type": "string"}, "salt": {"type": "string"}, "unit_type": {"type": "string"},
        "variants": {"type": "array", "items": {"$ref": "#/components/schemas/ExperimentVariant"}},
        "primary_metric": {"$ref": "#/components/schemas/ExperimentMetric"},
        "guardrails": {"type": "array", "items": {"$ref": "#/components/schemas/ExperimentMetric"}},
        "alpha": {"type": "number"}, "min_samples_per_arm": {"type": "integer"},
        "status": {"type": "string", "enum": ["draft", "running", "paused", "stopped", "rolled_back", "concluded"]},
        "config_version": {"type": "integer"}, "updated_ms": {"type": "integer"}, "updated_by": {"type": "string"},
        "event_id": {"type": "string"}, "audit_rate": {"type": "number"},
        "cuped_metrics": {"type": "array", "items": {"type": "string"}}, "cuped_lookback_days": {"type": "integer"}},
        "required": ["experiment_id", "tenant_id", "agent_id", "variants", "primary_metric", "status", "config_version"]}
    create = {"type": "object", "additionalProperties": False, "required": ["experiment_id", "agent_id", "variants"], "properties": {
        "experiment_id": {"type": "string", "pattern": _NAME.pattern,
                          "description": "the name; the experiment's id becomes '<tenant>:<experiment_id>'"},
        "agent_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "variants": {"type": "array", "minItems": 2, "maxItems": 16, "items": {"type": "object", "additionalProperties": False,
                     "required": ["name", "model_version"], "properties": {
                         "name": {"type": "string", "minLength": 1, "maxLength": 128},
                         "model_version": {"type": "string", "minLength": 1, "maxLength": 200},
                         "weight": {"type": "number", "minimum": 0}, "is_control": {"type": "boolean"}}},
                     "description": "the arms; the first is the control unless is_control says otherwise"},
        "primary_metric": {"anyOf": [{"type": "string", "enum": sorted(METRICS)}, {"type": "object"}]},
        "guardrails": {"type": "array", "maxItems": 16, "items": {"type": "object"}},
        "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
        "min_samples_per_arm": {"type": "integer", "minimum": 1},
        "unit_type": {"type": "string", "enum": ["user", "session", "trace"]},
        "salt": {"type": "string"}, "name": {"type": "string"},
        "draft": {"type": "boolean", "description": "create it as a draft (POST .../start later); default: running"},
        "audit_rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                       "description": "fraction of units in the audit sample, whose gold labels (POST /v1/annotations/{trace_id}) "
                                      "correct success_rate (prediction-powered estimate); default 0: off"},
        "cuped_metrics": {"type": "array", "maxItems": 17, "items": {"type": "string", "enum": sorted(METRICS)},
                          "description": "metrics of the experiment adjusted with CUPED by each unit's pre-experiment mean"},
        "cuped_lookback_days": {"type": "integer", "minimum": 1, "maximum": 120,
                                "description": "CUPED's pre-experiment window in days (default 28)"},
        "tenant_id": {"type": "string", "description": "optional; must be the API key's tenant (403 otherwise)"}}}
    return {"ExperimentMetric": metric, "ExperimentVariant": variant, "Experiment": experiment, "ExperimentCreate": create}


def openapi_paths() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Experiment"}
    exp_param = {"name": "experiment_id", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "the experiment's id ('<tenant>:<name>' for experiments created through the API)"}
    bad_id = err("the id is not a valid id")
    gone = err("no such experiment for this tenant")
    out: dict[str, Any] = {
        "/v1/experiments": {
            "post": {"summary": "create an experiment (scope admin)", "operationId": "create_experiment",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExperimentCreate"}}}},
                     "responses": {"201": json_ok(ref, "created (acknowledged by Kafka)"),
                                   "400": err("a field is invalid (named)"), "408": err("the body did not arrive in time"),
                                   "409": err("an experiment with that id exists"), "413": err("body too large"),
                                   "415": err("unsupported Content-Encoding"), "503": err("Kafka did not acknowledge the change"),
                                   **AUTH_ERRORS}},
            "get": {"summary": "the tenant's experiments (scope read)", "operationId": "list_experiments",
                    "parameters": [{"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": [
                        "draft", "running", "paused", "stopped", "rolled_back", "concluded", "active", "all"]},
                        "description": "active: draft, running or paused; default all"}],
                    "responses": {"200": json_ok({"type": "object", "properties": {"experiments": {"type": "array", "items": ref}},
                                                  "required": ["experiments"]}),
                                  "400": err("unknown status"), **AUTH_ERRORS}},
        },
        "/v1/experiments/{experiment_id}": {"get": {
            "summary": "one experiment's live configuration (scope read)", "operationId": "get_experiment", "parameters": [exp_param],
            "responses": {"200": json_ok(ref), "400": bad_id, "404": gone, **AUTH_ERRORS}}},
        "/v1/experiments/{experiment_id}/stream": {"get": {
            "summary": "Server-Sent Events: live statistics snapshots (event: stats) and decisions (event: decision) (scope read)",
            "operationId": "stream_experiment", "parameters": [exp_param],
            "responses": {"200": {"description": "an event stream: first `event: ready`, then `stats` and `decision` events "
                                  "(data: the StatsSnapshot / Decision record as JSON), `: keep-alive` comments in between",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          "400": bad_id, "404": gone, "503": err("too many open streams in this process; retry later", retry_after=True),
                          **AUTH_ERRORS}}},
    }
    for verb, what in (("start", "start a draft"), ("pause", "pause: everyone gets the control"), ("resume", "resume a paused experiment"),
                       ("stop", "stop (final)"), ("rollback", "roll back: all traffic to the control (final)")):
        out[f"/v1/experiments/{{experiment_id}}/{verb}"] = {"post": {
            "summary": f"{what} (scope admin)", "operationId": f"{verb}_experiment", "parameters": [exp_param],
            "responses": {"200": json_ok(ref, "the new configuration"), "400": bad_id, "404": gone,
                          "409": err("the experiment's status does not allow it"), "503": err("Kafka did not acknowledge the change"),
                          **AUTH_ERRORS}}}
    return out
