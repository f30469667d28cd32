"""The gateway's OpenAPI 3.1 document (``GET /openapi.json``).

Event bodies are derived from the Avro schemas in ``schemas/avro`` and the fields the
ingestion takes (:mod:`agentgym.gateway.ingest`), so the description cannot drift
from what is enforced; only ``input`` (a string or chat messages) is widened by hand.
"""

from __future__ import annotations

from typing import Any

from agentgym.gateway import analytics
from agentgym.gateway import annotations
from agentgym.gateway import datasets as datasets_routes
from agentgym.gateway import experiments as experiments_routes
from agentgym.gateway import jobs as jobs_routes
from agentgym.gateway import models as models_routes
from agentgym.gateway import privacy as privacy_routes
from agentgym.gateway import synth as synth_routes
from agentgym.gateway import otlp
from agentgym.gateway.ids import ID_PATTERN
from agentgym.gateway.ingest import EXPERIENCE, FEEDBACK, Kind
from agentgym.schemas.registry import default_schema_set

__all__ = ["openapi_document"]

_PRIMITIVES = {"string": {"type": "string"}, "boolean": {"type": "boolean"}, "int": {"type": "integer"},
               "long": {"type": "integer"}, "float": {"type": "number"}, "double": {"type": "number"}, "null": {"type": "null"}}


def _json_schema(avro: Any) -> dict[str, Any]:
    """JSON Schema of an Avro type, as JSON carries it."""
    if isinstance(avro, str):
        return dict(_PRIMITIVES.get(avro, {}))
    if isinstance(avro, list):
        options = [_json_schema(t) for t in avro]
        return options[0] if len(options) == 1 else {"anyOf": options}
    t = avro.get("type")
    if t == "record":
        return {"type": "object", "properties": {f["name"]: _json_schema(f["type"]) for f in avro["fields"]}}
    if t == "enum":
        return {"type": "string", "enum": list(avro["symbols"])}
    if t == "array":
        return {"type": "array", "items": _json_schema(avro["items"])}
    if t == "map":
        return {"type": "object", "additionalProperties": _json_schema(avro["values"])}
    return _json_schema(t)


def _event_schema(kind: Kind) -> dict[str, Any]:
    fields = {f["name"]: f for f in default_schema_set().latest(kind.record).raw["fields"]}
    props: dict[str, Any] = {}
    for name in sorted(kind.fields):
        props[name] = _json_schema(fields[name]["type"]) if name in fields else {}
        if "doc" in fields.get(name, {}):
            props[name]["description"] = fields[name]["doc"]
    if "input" in props:
        props["input"] = {"anyOf": [{"type": "string"}, props["input"]], "description": "the user's message, or chat messages"}
    props["agent_id"] = {"type": "string", "pattern": ID_PATTERN, "description": "the agent (or the X-AgentGym-Agent header)"}
    props["tenant_id"] = {"type": "string", "description": "optional; must be the API key's tenant (403 otherwise)"}
    for name in ("trace_id", "event_id"):
        if name in props:
            props[name] = {"type": "string", "pattern": ID_PATTERN}
    return {"type": "object", "properties": props, "required": sorted(kind.required), "additionalProperties": False}


_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}, "reason": {"type": "string"},
                   "index": {"type": "integer", "description": "the event's position in a batch"}},
    "required": ["error", "field", "reason"],
}


def _err(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


_AUTH_ERRORS = {
    "401": _err("missing, malformed, unknown or revoked API key"),
    "403": _err("the key lacks the scope, or the request names another tenant"),
    "429": _err("rate limit (per key) or plan limit (per tenant); Retry-After says when to retry", retry_after=True),
}


def _ingest(kind: Kind, summary: str) -> dict[str, Any]:
    name = kind.record
    return {"post": {
        "summary": summary, "operationId": f"post_{name.lower()}",
        "parameters": [{"name": "X-AgentGym-Agent", "in": "header", "required": False, "schema": {"type": "string", "pattern": ID_PATTERN},
                        "description": "the agent, for events without agent_id"}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": f"#/components/schemas/{name}Event"},
            {"type": "object", "properties": {"events": {"type": "array", "minItems": 1, "items": {"$ref": f"#/components/schemas/{name}Event"}}},
             "required": ["events"], "additionalProperties": False},
        ]}}}},
        "responses": {
            "202": {"description": "every event accepted (produced, or spooled while Kafka is away)", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"accepted": {"type": "integer"}, kind.id_name: {"type": "array", "items": {"type": "string"}}},
                "required": ["accepted", kind.id_name]}}}},
            "400": _err("an event is invalid (field and reason named; nothing of the request was written)"),
            "408": _err("the body did not arrive in time"),
            "413": _err("body, decompressed body, event count or event size over its limit"),
            "415": _err("unsupported Content-Encoding"),
            **_AUTH_ERRORS,
        },
    }}


def _plain(summary: str, schema: dict[str, Any], extra: dict[str, Any] | None = None, content_type: str = "application/json") -> dict[str, Any]:
    return {"get": {"summary": summary, "security": [], "responses": {
        "200": {"description": "ok", "content": {content_type: {"schema": schema}}}, **(extra or {})}}}


_GROUPS = (experiments_routes, datasets_routes, models_routes, jobs_routes, synth_routes, privacy_routes)  # the resource route groups


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    assignment = {"type": "object", "properties": {
        "experiment_id": {"type": "string"}, "variant": {"type": "string"}, "model_version": {"type": "string"},
        "unit_type": {"type": "string"}, "unit_id": {"type": "string"}, "config_version": {"type": "integer"},
        "status": {"type": "string"}, "active": {"type": "boolean"}},
        "required": ["experiment_id", "variant", "model_version", "unit_type", "unit_id", "config_version", "status", "active"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agent Gym API", "version": "1.0.0",
                 "description": "The authenticated, tenant-scoped front door of Agent Gym. Send `Authorization: Bearer <key>`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an Agent Gym API key (agentgym keys create)"}},
            "schemas": {"Error": _ERROR, "ExperienceEvent": _event_schema(EXPERIENCE), "FeedbackEvent": _event_schema(FEEDBACK),
                        "Assignment": assignment,
                        **{k: v for g in _GROUPS for k, v in g.openapi_schemas().items()},
                        **annotations.openapi_schemas()},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/experiences": _ingest(EXPERIENCE, "record agent runs (scope ingest)"),
            "/v1/feedback": _ingest(FEEDBACK, "record feedback on runs (scope ingest)"),
            **otlp.openapi_paths(),
            "/v1/experiments/{experiment_id}/assignment": {"get": {
                "summary": "the variant serving a unit, by the SDK's hash (scope ingest or read)",
                "operationId": "get_assignment",
                "parameters": [
                    {"name": "experiment_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "unit_id", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 512}},
                ],
                "responses": {
                    "200": {"description": "the assignment; null while the experiment is a draft or stopped (serve the default model)",
                            "content": {"application/json": {"schema": {"type": "object", "properties": {
                                "experiment_id": {"type": "string"}, "unit_id": {"type": "string"},
                                "assignment": {"anyOf": [{"$ref": "#/components/schemas/Assignment"}, {"type": "null"}]}},
                                "required": ["experiment_id", "unit_id", "assignment"]}}}},
                    "400": _err("unit_id missing or too long"),
                    "404": _err("no such experiment for this tenant"),
                    **_AUTH_ERRORS,
                }}},
            **{k: v for g in _GROUPS for k, v in g.openapi_paths().items()},
            **analytics.openapi_paths(),
            **annotations.openapi_paths(),
            "/healthz": _plain("liveness; counts of events this replica dropped (spool disk failed) or quarantined (too large)",
                               {"type": "object", "properties": {"status": {"type": "string"},
                                                                 "events_dropped": {"type": "integer", "minimum": 0},
                                                                 "events_quarantined": {"type": "integer", "minimum": 0}},
                                "required": ["status"]}),
            "/readyz": _plain("readiness: keys, plans, usage and experiments followed to their ends",
                              {"type": "object", "properties": {"status": {"type": "string"}, "waiting": {"type": "array", "items": {"type": "string"}}},
                               "required": ["status"]},
                              {"503": {"description": "not ready yet", "content": {"application/json": {"schema": {
                                  "type": "object", "properties": {"status": {"type": "string"}, "waiting": {"type": "array", "items": {"type": "string"}}},
                                  "required": ["status", "waiting"]}}}}}),
            "/metrics": _plain("Prometheus metrics of this process", {"type": "string"}, content_type="text/plain"),
            "/openapi.json": _plain("this document", {"type": "object"}),
        },
    }
