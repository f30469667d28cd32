"""The annotation queue: reviewers label the runs of an experiment's audit sample.

    GET  /v1/annotations/next?experiment_id=...[&lease_s=600]   the next run of the audit sample without a gold label,
                                                               leased to the caller                        scope annotate or admin
    POST /v1/annotations/{trace_id}  {"success": bool, "comment": str, "experiment_id": str}
                                     the reviewer's gold label: Feedback, source human, metadata audit=true  scope annotate or admin

**What the queue holds.** An experiment with ``audit_rate > 0`` has an audit sample of
units chosen by the hash of the unit
(:func:`agentgym.processors.experiments.engine.in_audit_sample`). The experiments engine
corrects ``success_rate`` with the gold label of each audited unit's *first labelled
trace*, so the queue offers, per unit of the sample, its earliest run (by start time)
that the labeller has labelled (``success`` or ``failure``), until that run has an audit
label. Oldest units first. The run is shown with its input, steps, output, status and
the feedback users gave; **not** its variant, model version or the labeller's label: the
reviewer labels blind, so the gold label does not lean towards the label it corrects.

**Where the runs come from.** ClickHouse, through the same tenant-scoped reader as the
analytics routes (:class:`agentgym.gateway.analytics.AnalyticsReader`): fixed SQL over the
parameterised views ``pv_experiences``, ``pv_outcomes_latest`` and ``pv_feedback`` with ``tenant``
bound to the API key's tenant, under the analytics query limits. The store already holds
every run, its latest outcome and its feedback; a processor-maintained copy would be a
second copy of the same rows with its own lag and restart story. The audit hash is not a
ClickHouse function, so the query answers the experiment's labelled units without an
audit label (at most :data:`CANDIDATES` of them, oldest first) and the gateway keeps those
of the sample.

**Leases.** ``next`` leases the run it answers to the caller's key for ``lease_s`` seconds
(default 600): no other key gets that run from this gateway process until the lease ends
or the run is labelled, and a POST by another key on it is 409. Labelled runs stay out of
this process's queue (:data:`LABELLED_HOLD_S`) until the sink has stored their label.
Leases live in the gateway process: with several replicas behind a balancer, route a
reviewer team to one replica (or accept that two replicas may hand out the same run; the
engine then counts the trace's latest gold label).

**Labels.** ``POST`` looks the trace up in the key's tenant (404 otherwise), checks that its
unit is in the audit sample of its experiment (404 otherwise: a label outside the random
sample must never be used as one) and produces, through the gateway's producer, one
Feedback: ``thumbs_up = success``, the comment, ``source = "human"``, ``metadata = {"audit":
"true", "experiment_id": ..., "reviewer": <key id>}``. Posting again replaces the label (the
engine counts a trace's latest gold label). Every label is audited (``annotation.label``).

**Scope.** ``annotate``: reviewers see the runs of the audit sample (inputs and outputs) and
write gold labels, nothing else; ``admin`` may do the same. ``read`` may not: a gold label
changes the experiment's decision.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agentgym.gateway.analytics import ANALYTICS, QueryLimits
from agentgym.gateway.audit import audited
from agentgym.gateway.body import read_json
from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.ids import check_id
from agentgym.gateway.ingest import FEEDBACK, prepare
from agentgym.gateway.resource import AUTH_ERRORS, Endpoint, err, json_ok, json_response, not_found, path_id, query_int
from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.processors.experiments.engine import in_audit_sample
from agentgym.processors.experiments.metrics import AUDIT_MARKER, AUDITED_METRIC
from agentgym.processors.store.exceptions import QueryError, StoreError

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["ANNOTATE", "Leases", "LEASES", "CANDIDATES", "LABELLED_HOLD_S", "add_routes", "openapi_paths", "openapi_schemas"]

ANNOTATE = frozenset({"annotate", "admin"})
"""Reviewers: a key with ``annotate`` (or ``admin``)."""
CANDIDATES = 5000  # labelled units without an audit label read per ``next`` (the sample is kept of them)
LABELLED_HOLD_S = 3600.0  # a labelled run stays out of this process's queue this long (until the sink stored its label)
_DEFAULT_LEASE_S, _MIN_LEASE_S, _MAX_LEASE_S = 600, 10, 3600
_MAX_COMMENT = 10_000
_BODY_FIELDS = frozenset({"success", "comment", "experiment_id"})
_IS_AUDIT = f"(source = 'human' AND lower(metadata['{AUDIT_MARKER}']) IN ('true', '1', 'yes'))"

_CANDIDATES_SQL = f"""
SELECT unit_id, first_trace AS trace_id FROM
(
    SELECT unit_id, argMin(trace_id, ts) AS first_trace, min(ts) AS first_ts
    FROM pv_experiences(tenant = {{tenant:String}})
    WHERE experiment_id = {{experiment_id:String}} AND unit_id IS NOT NULL
        AND trace_id IN (SELECT trace_id FROM pv_outcomes_latest(tenant = {{tenant:String}})
                         WHERE experiment_id = {{experiment_id:String}} AND label IN ('success', 'failure'))
    GROUP BY unit_id
)
WHERE first_trace NOT IN (SELECT trace_id FROM pv_feedback(tenant = {{tenant:String}}) WHERE {_IS_AUDIT})
ORDER BY first_ts, unit_id
LIMIT {{limit:UInt32}}"""

_RUN_SQL = """
SELECT trace_id, agent_id, ts, input, steps, output, status, error, experiment_id, unit_id
FROM pv_experiences(tenant = {tenant:String})
WHERE trace_id = {trace_id:String}
ORDER BY ts
LIMIT 1"""

_FEEDBACK_SQL = f"""
SELECT ts, kind, source, rating, rating_scale, thumbs_up, comment, correction, signal, value
FROM pv_feedback(tenant = {{tenant:String}})
WHERE trace_id = {{trace_id:String}} AND NOT {_IS_AUDIT}
ORDER BY ts
LIMIT 50"""


class Leases:
    """Who holds which run of the queue, in one gateway process (thread-safe).

    A key is ``(tenant, trace_id)``; a holder is an API key id.

    Args:
        clock: seconds (default ``time.monotonic``); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[tuple[str, str], tuple[str, float]] = {}
        self._labelled: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for k in [k for k, (_, until) in self._held.items() if until <= now]:
            del self._held[k]
        for k in [k for k, until in self._labelled.items() if until <= now]:
            del self._labelled[k]

    def claim(self, tenant: str, traces: Iterable[str], holder: str, lease_s: float) -> tuple[str, float] | None:
        """Leases the first of ``traces`` that nobody holds and nobody labelled here: (trace, seconds left), or None."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            for trace in traces:
                k = (tenant, trace)
                if k in self._held or k in self._labelled:
                    continue
                self._held[k] = (holder, now + lease_s)
                return trace, float(lease_s)
            return None

    def holder(self, tenant: str, trace: str) -> tuple[str, float] | None:
        """The holder of a live lease on the run and its seconds left, or None."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            got = self._held.get((tenant, trace))
            return None if got is None else (got[0], got[1] - now)

    def labelled(self, tenant: str, trace: str, hold_s: float = LABELLED_HOLD_S) -> None:
        """The run got its label: its lease ends, and it stays out of the queue for ``hold_s``."""
        with self._lock:
            now = self._clock()
            self._held.pop((tenant, trace), None)
            self._labelled[(tenant, trace)] = now + hold_s

    def open_leases(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._held)


LEASES = web.AppKey("agentgym_annotation_leases", Leases)


# -- reads --------------------------------------------------------------------------------
async def _query(request: web.Request, gw: "Gateway", sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    reader = request.app[ANALYTICS]
    try:
        result = await asyncio.to_thread(reader.run, sql, params, QueryLimits.of(gw.settings))
    except StoreError as exc:
        raise ApiError(503, "annotations_unavailable", "", f"the store is not reachable: {str(exc)[:300]}") from None
    except QueryError as exc:
        raise ApiError(503, "annotations_unavailable", "", f"the store refused the queue's query: {str(exc)[:300]}") from None
    return list(result.get("data", []))


def _experiment(gw: "Gateway", experiment_id: str, tenant_id: str) -> ExperimentConfig:
    record = gw.experiments.get(experiment_id)
    if record is None or record.get("tenant_id") != tenant_id:
        raise not_found("experiment_id", "experiment", experiment_id)
    return ExperimentConfig.from_record(record)


def _audited_experiment(config: ExperimentConfig) -> None:
    if config.audit_rate <= 0 or all(m.name != AUDITED_METRIC for m in config.metrics):
        raise ApiError(409, "no_audit_sample", "experiment_id",
                       f"experiment {config.experiment_id[:80]!r} has no audit sample (audit_rate {config.audit_rate:g}, "
                       f"metrics {', '.join(m.name for m in config.metrics)}): create it with audit_rate > 0 and {AUDITED_METRIC}")


def _check_id(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", field, "is missing or not a string")
    try:
        return check_id(field, value)
    except InvalidIdError as exc:
        raise ApiError(400, "invalid_request", exc.field, exc.reason) from None


def _run_view(row: dict[str, Any], feedback: list[dict[str, Any]], experiment_id: str) -> dict[str, Any]:
    def named(value: Any, names: tuple[str, ...]) -> Any:  # a tuple as an object whichever way the engine wrote it
        return dict(zip(names, value)) if isinstance(value, list) else value

    return {
        "trace_id": row["trace_id"], "experiment_id": experiment_id, "agent_id": row["agent_id"], "started_at": row["ts"],
        "input": [named(m, ("role", "content", "name", "tool_call_id")) for m in row.get("input") or []],
        "steps": [named(s, ("step_id", "kind", "name", "input", "output", "error", "latency_ms", "prompt_tokens",
                            "completion_tokens")) for s in row.get("steps") or []],
        "output": row.get("output"), "status": row.get("status"), "error": row.get("error"),
        "feedback": feedback,
    }


# -- handlers ------------------------------------------------------------------------------
async def _next(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, ANNOTATE)
    experiment_id = _check_id("experiment_id", request.query.get("experiment_id"))
    lease_s = query_int(request, "lease_s", _DEFAULT_LEASE_S, _MIN_LEASE_S, _MAX_LEASE_S)
    config = _experiment(gw, experiment_id, key.tenant_id)
    _audited_experiment(config)
    tenant = key.tenant_id
    rows = await _query(request, gw, _CANDIDATES_SQL, {"tenant": tenant, "experiment_id": experiment_id, "limit": CANDIDATES})
    sample = [r["trace_id"] for r in rows if in_audit_sample(config, str(r["unit_id"]))]
    leases = request.app[LEASES]
    while True:
        claimed = leases.claim(tenant, sample, key.key_id, lease_s)
        if claimed is None:
            return json_response({"experiment_id": experiment_id, "run": None, "lease_expires_in_s": None,
                                  "message": "no run of the audit sample waits for a label (or every waiting one is leased)"})
        trace, left = claimed
        found = await _query(request, gw, _RUN_SQL, {"tenant": tenant, "trace_id": trace})
        if found:
            break
        leases.labelled(tenant, trace, hold_s=60.0)  # not readable (yet): skip it for a minute
        sample = sample[sample.index(trace) + 1:]
    feedback = await _query(request, gw, _FEEDBACK_SQL, {"tenant": tenant, "trace_id": trace})
    return json_response({"experiment_id": experiment_id, "run": _run_view(found[0], feedback, experiment_id),
                          "lease_expires_in_s": left})


async def _label(request: web.Request, gw: "Gateway") -> web.StreamResponse:
    key = gw.authenticate(request, ANNOTATE)
    trace_id = path_id(request, "trace_id")
    body = await read_json(request, gw.settings)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "body", 'expected a JSON object: {"success": true|false, "comment": "..."}')
    extra = sorted(set(body) - _BODY_FIELDS)
    if extra:
        raise ApiError(400, "invalid_request", extra[0], f"unknown field; known: {', '.join(sorted(_BODY_FIELDS))}")
    success = body.get("success")
    if not isinstance(success, bool):
        raise ApiError(400, "invalid_request", "success", "is required: true (the run succeeded) or false")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > _MAX_COMMENT):
        raise ApiError(400, "invalid_request", "comment", f"must be a string of at most {_MAX_COMMENT} characters")
    tenant = key.tenant_id
    named = None
    if body.get("experiment_id") is not None:  # checked first: another tenant's experiment is 404 before any read
        named = _experiment(gw, _check_id("experiment_id", body["experiment_id"]), tenant)
    found = await _query(request, gw, _RUN_SQL, {"tenant": tenant, "trace_id": trace_id})
    if not found:
        raise not_found("trace_id", "run", trace_id)
    run = found[0]
    experiment_id, unit_id = run.get("experiment_id"), run.get("unit_id")
    outside = ApiError(404, "not_in_audit_sample", "trace_id",
                       f"run {trace_id[:80]!r} is not in the audit sample of an experiment of this tenant: only runs of "
                       "the audit sample take gold labels (GET /v1/annotations/next gives them)")
    if not experiment_id or not unit_id or (named is not None and named.experiment_id != experiment_id):
        raise outside
    record = gw.experiments.get(experiment_id)
    if record is None or record.get("tenant_id") != tenant:
        raise outside
    config = named or ExperimentConfig.from_record(record)
    if config.audit_rate <= 0 or not in_audit_sample(config, str(unit_id)):
        raise outside
    leases = request.app[LEASES]
    held = leases.holder(tenant, trace_id)
    if held is not None and held[0] != key.key_id:
        raise ApiError(409, "leased", "trace_id", f"run {trace_id[:80]!r} is leased to another reviewer for {held[1]:.0f} s more")
    event = {"trace_id": trace_id, "agent_id": run["agent_id"], "thumbs_up": success, "source": "human",
             "metadata": {AUDIT_MARKER: "true", "experiment_id": experiment_id, "reviewer": key.key_id},
             **({"comment": comment} if comment else {})}
    prepared = prepare(gw.client, FEEDBACK, [event], tenant, None, gw.settings.max_event_bytes, False,
                       masking=lambda agent: gw.maskers.policy(tenant, agent))  # the reviewer's comment, as any feedback
    for p in prepared:
        gw.client.send_encoded(FEEDBACK.record, FEEDBACK.topic, p.key, p.value)
    gw.metrics.count_events(FEEDBACK.record, len(prepared))
    leases.labelled(tenant, trace_id)
    return json_response({"accepted": 1, "event_id": prepared[0].event_id, "trace_id": trace_id, "experiment_id": experiment_id,
                          "success": success}, 202)


def add_routes(app: web.Application, endpoint: Endpoint) -> None:
    """Adds the annotation routes and the process's :class:`Leases` (reads go through ``app[ANALYTICS]``)."""
    app[LEASES] = Leases()
    app.router.add_get("/v1/annotations/next", endpoint("annotations_next", _next))
    app.router.add_post("/v1/annotations/{trace_id}", endpoint("annotations_label", audited("annotation.label", "trace_id", _label)))


# -- OpenAPI -----------------------------------------------------------------------------------
def openapi_schemas() -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    run = {"type": "object", "required": ["trace_id", "experiment_id", "agent_id", "input", "steps", "output", "feedback"], "properties": {
        "trace_id": {"type": "string"}, "experiment_id": {"type": "string"}, "agent_id": {"type": "string"},
        "started_at": {"type": "string"},
        "input": {"type": "array", "items": {"type": "object"}, "description": "the messages (role, content, name, tool_call_id)"},
        "steps": {"type": "array", "items": {"type": "object"}, "description": "tool calls, retrievals, model calls"},
        "output": nullable_str, "status": nullable_str, "error": nullable_str,
        "feedback": {"type": "array", "items": {"type": "object"}, "description": "the feedback users gave (not other reviewers' labels)"}},
        "description": "one run of the audit sample; its variant, model version and the labeller's label are not shown"}
    nxt = {"type": "object", "required": ["experiment_id", "run", "lease_expires_in_s"], "properties": {
        "experiment_id": {"type": "string"}, "run": {"anyOf": [{"$ref": "#/components/schemas/AnnotationRun"}, {"type": "null"}]},
        "lease_expires_in_s": {"type": ["number", "null"]}, "message": {"type": "string"}}}
    label = {"type": "object", "additionalProperties": False, "required": ["success"], "properties": {
        "success": {"type": "boolean", "description": "the reviewer's verdict: did the run succeed"},
        "comment": {"type": "string", "maxLength": _MAX_COMMENT},
        "experiment_id": {"type": "string", "description": "optional: the experiment the run was leased from (checked)"}}}
    accepted = {"type": "object", "required": ["accepted", "event_id", "trace_id", "experiment_id", "success"], "properties": {
        "accepted": {"type": "integer"}, "event_id": {"type": "string"}, "trace_id": {"type": "string"},
        "experiment_id": {"type": "string"}, "success": {"type": "boolean"}}}
    return {"AnnotationRun": run, "AnnotationNext": nxt, "AnnotationLabel": label, "AnnotationAccepted": accepted}


def openapi_paths() -> dict[str, Any]:
    unavailable = err("the store is not reachable (the worker that owns it is not running)")
    return {
        "/v1/annotations/next": {"get": {
            "summary": "the next run of an experiment's audit sample without a gold label, leased to the caller (scope annotate)",
            "operationId": "next_annotation",
            "parameters": [
                {"name": "experiment_id", "in": "query", "required": True, "schema": {"type": "string"},
                 "description": "the experiment (with audit_rate > 0)"},
                {"name": "lease_s", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": _MIN_LEASE_S, "maximum": _MAX_LEASE_S},
                 "description": f"how long no other reviewer gets this run (default {_DEFAULT_LEASE_S})"}],
            "responses": {"200": json_ok({"$ref": "#/components/schemas/AnnotationNext"}, "a run (run: null when none waits)"),
                          "400": err("a parameter is invalid (named)"), "404": err("no such experiment for this tenant"),
                          "409": err("the experiment has no audit sample"), "503": unavailable, **AUTH_ERRORS}}},
        "/v1/annotations/{trace_id}": {"post": {
            "summary": "a reviewer's gold label of a run of the audit sample (scope annotate)",
            "operationId": "label_annotation",
            "parameters": [{"name": "trace_id", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "the run's trace id"}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AnnotationLabel"}}}},
            "responses": {"202": json_ok({"$ref": "#/components/schemas/AnnotationAccepted"}, "the label was produced"),
                          "400": err("a field is invalid (named)"), "404": err("no such run for this tenant, or not in an audit sample"),
                          "408": err("the body did not arrive in time"), "409": err("the run is leased to another reviewer"),
                          "413": err("body too large"), "415": err("unsupported Content-Encoding"), "503": unavailable,
                          **AUTH_ERRORS}}},
    }
