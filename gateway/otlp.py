"""OTLP/HTTP trace ingestion: ``POST /v1/traces`` (scope ingest).

What an OpenTelemetry SDK's OTLP/HTTP exporter sends, unchanged: set
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=<api>/v1/traces`` and
``OTEL_EXPORTER_OTLP_TRACES_HEADERS=Authorization=Bearer <key>``. Bodies are
``application/x-protobuf`` or ``application/json`` (the OTLP JSON mapping: hex trace
and span ids), optionally gzip; decoded with ``opentelemetry-proto``.

Each span is checked (trace and span ids present, timestamps plausible, no attribute
value over ``AGENTGYM_GATEWAY_OTLP_MAX_ATTRIBUTE_BYTES``); a bad span is rejected alone and counted in the
response's ``partial_success`` (``rejected_spans``, ``error_message`` naming the first
reasons), as the OTLP specification says. Spans of no GenAI dialect are accepted and
dropped (see ``docs/otel.md``). The GenAI spans are mapped
(:func:`agentgym.processors.otel.mapping.map_span`) and produced, one ``OtelSpans``
record per trace and request, to ``gym-otel-spans-v1`` keyed by the trace id; the otel
processor assembles each trace into one Experience. The gateway holds no trace state,
so any replica may take any batch of any trace.

Errors answer with a ``google.rpc.Status`` body in the request's encoding (OTLP/HTTP
"Failures"): 400 for an undecodable body, 415 for another content type, and the API's
usual 401/403/413/429 (with ``Retry-After``).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status as SpanStatus

from agentgym.gateway.body import read_body
from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.ids import check_id
from agentgym.gateway.ingest import FEEDBACK, Prepared
from agentgym.processors.otel.mapping import is_genai, map_span
from agentgym.schemas.exceptions import SchemaValidationError
from agentgym.schemas.topics import TOPICS

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["add_routes", "openapi_paths", "decode_request", "map_request", "MappedRequest", "MAX_ATTRIBUTE_BYTES", "FEEDBACK_EVENT"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
FEEDBACK_EVENT = "agentgym.feedback"
"""A span event of this name becomes Feedback: attributes ``agentgym.feedback.<field>`` (``rating``,
``rating_scale``, ``thumbs_up``, ``comment``, ``correction``, ``signal``, ``value``, ``source``,
``user_id``, and ``trace_id`` for another run than the span's own)."""
MAX_ATTRIBUTE_BYTES = 128 * 1024
"""The default of ``AGENTGYM_GATEWAY_OTLP_MAX_ATTRIBUTE_BYTES``: an attribute value (string or bytes, or an
array's item) longer than this rejects its span."""
_TOPIC = TOPICS["otel-spans"].name
_EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01
_FUTURE_NS = 24 * 3600 * 10**9  # a day ahead of the gateway's clock: clocks drift, not by days
_LONGEST_NS = 7 * 24 * 3600 * 10**9
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 8, 415: 3, 429: 8}  # HTTP status -> google.rpc.Code


class _Oversized(Exception):
    def __init__(self, key: str, size: int) -> None:
        self.key, self.size = key, size


def _value(v: AnyValue, key: str, limit: int) -> Any:
    which = v.WhichOneof("value")
    if which == "string_value":
        s = v.string_value
        if len(s) > limit:
            raise _Oversized(key, len(s))
        return s
    if which == "int_value":
        return v.int_value
    if which == "bool_value":
        return v.bool_value
    if which == "double_value":
        return v.double_value
    if which == "array_value":
        return [_value(x, key, limit) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value, key, limit) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        if len(v.bytes_value) > limit:
            raise _Oversized(key, len(v.bytes_value))
        return v.bytes_value.hex()
    return None


def _attrs(kvs: Any, limit: int) -> dict[str, Any]:
    return {kv.key: _value(kv.value, kv.key, limit) for kv in kvs}


@dataclass
class MappedRequest:
    """What one export request holds, mapped: the GenAI spans per trace, and the rejected ones."""

    traces: dict[str, dict[str, Any]] = field(default_factory=dict)  # trace id -> OtelSpans record (without event_id)
    spans: int = 0  # every span of the request
    genai: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    roots: set[str] = field(default_factory=set)  # traces whose root span (no parent) arrived: runs, for the plan
    feedback: list[dict[str, Any]] = field(default_factory=list)  # encode_feedback arguments of agentgym.feedback span events

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 3:
            self.reasons.append(reason)


def decode_request(raw: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The export request of an OTLP/HTTP body, or :class:`ApiError` (400, 415)."""
    req = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            req.ParseFromString(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:  # upb raises DecodeError; depth limits RuntimeError
            raise ApiError(400, "invalid_otlp", "body", f"not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from None
        return req
    if content_type == JSON:
        try:
            body = orjson.loads(raw)
            json_format.ParseDict(_hex_ids_to_base64(body), req, ignore_unknown_fields=True, max_recursion_depth=64)
        except (orjson.JSONDecodeError, json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise ApiError(400, "invalid_otlp", "body", f"not an OTLP ExportTraceServiceRequest (JSON): {str(exc)[:300]}") from None
        return req
    raise ApiError(415, "unsupported_media_type", "Content-Type", f"{content_type or '(none)'!r} is not {PROTOBUF} or {JSON}")


def _b64(hexid: Any) -> str:
    """OTLP JSON spells ids in hex, protobuf's JSON mapping in base64; an invalid id becomes empty (the span is rejected)."""
    try:
        return base64.b64encode(bytes.fromhex(hexid)).decode() if isinstance(hexid, str) else ""
    except ValueError:
        return ""


def _hex_ids_to_base64(body: Any) -> Any:
    if not isinstance(body, dict):
        raise TypeError(f"the body must be a JSON object, got {type(body).__name__}")
    for rs in _list(body, "resourceSpans", "resource_spans"):
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for span in _list(ss, "spans", "spans"):
                if not isinstance(span, dict):
                    continue
                for k in ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"):
                    if k in span:
                        span[k] = _b64(span[k])
                for link in _list(span, "links", "links"):
                    if isinstance(link, dict):
                        for k in ("traceId", "trace_id", "spanId", "span_id"):
                            if k in link:
                                link[k] = _b64(link[k])
    return body


def _list(d: Any, camel: str, snake: str) -> list[Any]:
    if not isinstance(d, dict):
        return []
    v = d.get(camel, d.get(snake))
    return v if isinstance(v, list) else []


def map_request(req: ExportTraceServiceRequest, tenant_id: str, agent_id: str | None, now_ns: int | None = None,
                max_attribute_bytes: int = MAX_ATTRIBUTE_BYTES) -> MappedRequest:
    """Checks and maps every span of an export request (pure: no I/O).

    Args:
        req: the decoded request.
        tenant_id: the API key's tenant.
        agent_id: the ``X-AgentGym-Agent`` header; else each resource's ``service.name``
            when it is a valid id, else ``otel``.
        now_ns: the gateway's clock (default: now), for the timestamp check.
        max_attribute_bytes: the longest attribute value a span may hold.
    """
    limit = max_attribute_bytes
    now_ns = now_ns if now_ns is not None else time.time_ns()
    latest = now_ns + _FUTURE_NS
    out = MappedRequest()
    for rs in req.resource_spans:
        try:
            resource = _attrs(rs.resource.attributes, limit)
        except _Oversized as exc:
            n = sum(len(ss.spans) for ss in rs.scope_spans)
            out.spans += n
            for _ in range(n):
                out.reject(f"resource attribute {exc.key!r} is {exc.size} bytes; at most {limit}")
            continue
        service = resource.get("service.name")
        agent = agent_id or _valid_id(service) or "otel"
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.spans += 1
                tid, sid = span.trace_id, span.span_id
                if len(tid) != 16 or tid == _ZERO_TRACE:
                    out.reject(f"span {span.name[:60]!r}: trace_id is missing or not 16 bytes")
                    continue
                if len(sid) != 8 or sid == _ZERO_SPAN:
                    out.reject(f"span {span.name[:60]!r}: span_id is missing or not 8 bytes")
                    continue
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if not _EARLIEST_NS <= start <= latest or not start <= end <= start + _LONGEST_NS:
                    out.reject(f"span {sid.hex()}: timestamps out of range (start {start}, end {end} ns; "
                               "start after 2000-01-01 and before tomorrow, end within 7 days after start)")
                    continue
                try:
                    attrs = _attrs(span.attributes, limit)
                    for i, e in enumerate(span.events):
                        if e.name == FEEDBACK_EVENT:
                            when = e.time_unix_nano if _EARLIEST_NS <= e.time_unix_nano <= latest else end  # an absurd time: the span's end
                            out.feedback.append(_feedback_args(tid.hex(), sid.hex(), i, agent, when, _attrs(e.attributes, limit)))
                    if not is_genai(attrs):
                        continue  # accepted, not a GenAI span: dropped (docs/otel.md)
                    events = [(e.name, _attrs(e.attributes, limit)) for e in span.events]
                except _Oversized as exc:
                    out.reject(f"span {sid.hex()}: attribute {exc.key!r} is {exc.size} bytes; at most {limit}")
                    continue
                out.genai += 1
                trace_id = tid.hex()
                parent = span.parent_span_id.hex() if span.parent_span_id and span.parent_span_id != _ZERO_SPAN else ""
                try:
                    mapped = map_span(sid.hex(), parent, span.name, start, end, span.status.code == SpanStatus.STATUS_CODE_ERROR,
                                      span.status.message, attrs, events)
                except ValueError as exc:  # an inconsistent agentgym.experiment.* assignment, named by the mapping
                    out.genai -= 1
                    out.reject(f"span {sid.hex()}: {exc}")
                    continue
                batch = out.traces.get(trace_id)
                if batch is None:
                    batch = out.traces[trace_id] = {"tenant_id": tenant_id, "agent_id": agent, "trace_id": trace_id,
                                                    "timestamp_ms": now_ns // 1_000_000, "service_name": _str(service), "spans": []}
                batch["spans"].append(mapped)
                if not parent:
                    out.roots.add(trace_id)
    return out


_FEEDBACK_FIELDS = ("rating", "rating_scale", "thumbs_up", "comment", "correction", "signal", "value", "source", "user_id")


def _feedback_args(trace_id: str, span_id: str, index: int, agent: str, time_ns: int, attrs: dict[str, Any]) -> dict[str, Any]:
    """``encode_feedback``'s arguments from an ``agentgym.feedback`` span event (its event id is fixed by
    span and position, so a retried export is deduplicated)."""
    args: dict[str, Any] = {f: attrs[f"{FEEDBACK_EVENT}.{f}"] for f in _FEEDBACK_FIELDS if f"{FEEDBACK_EVENT}.{f}" in attrs}
    target = attrs.get(f"{FEEDBACK_EVENT}.trace_id")
    args["trace_id"] = target.lower() if isinstance(target, str) and target else trace_id
    args["agent_id"] = agent
    args["event_id"] = hashlib.blake2b(f"{trace_id}:{span_id}:{index}".encode(), digest_size=16).hexdigest()
    if time_ns:
        args["timestamp_ms"] = time_ns // 1_000_000
    return args


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _valid_id(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    try:
        return check_id("service.name", v)
    except InvalidIdError:
        return None


def _records(codec: Any, batch: dict[str, Any], limit: int, reject: Callable[[str], None]) -> list[bytes]:
    """The trace's spans encoded as OtelSpans records each under ``limit`` bytes (split when larger)."""
    spans = batch["spans"]
    digest = hashlib.blake2b("".join(s["span_id"] for s in spans).encode(), digest_size=8).hexdigest()
    value = codec.encode("OtelSpans", {**batch, "event_id": f"{batch['trace_id']}-{digest}"}, _TOPIC)
    if len(value) <= limit:
        return [value]
    if len(spans) == 1:
        reject(f"span {spans[0]['span_id']}: {len(value)} bytes once mapped; at most {limit}")
        return []
    half = len(spans) // 2
    return (_records(codec, {**batch, "spans": spans[:half]}, limit, reject)
            + _records(codec, {**batch, "spans": spans[half:]}, limit, reject))


def _content_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _answer(message: Any, status: int, as_json: bool, headers: dict[str, str] | None = None) -> web.Response:
    if as_json:
        body = json_format.MessageToJson(message, indent=None).encode()
        return web.Response(body=body, status=status, content_type=JSON, headers=headers)
    return web.Response(body=message.SerializeToString(), status=status, content_type=PROTOBUF, headers=headers)


async def _traces(request: web.Request, gw: "Gateway") -> web.Response:
    as_json = _content_type(request) == JSON
    try:
        return await _export(request, gw, as_json)
    except ApiError as exc:
        gw.metrics.rejections.labels(exc.error).inc()
        field_part = f"{exc.field}: " if exc.field else ""
        resp = _answer(Status(code=_GRPC.get(exc.status, 2), message=f"{exc.error}: {field_part}{exc.reason}"),
                       exc.status, as_json, exc.headers)
        if exc.status in (408, 413):
            resp.force_close()
        return resp


async def _export(request: web.Request, gw: "Gateway", as_json: bool) -> web.Response:
    key = gw.authenticate(request, frozenset({"ingest"}))
    header_agent = request.headers.get("X-AgentGym-Agent")
    if header_agent is not None:
        try:
            check_id("X-AgentGym-Agent", header_agent)
        except InvalidIdError as exc:
            raise ApiError(400, "invalid_request", exc.field, exc.reason) from None
    content_type = _content_type(request)
    if content_type not in (PROTOBUF, JSON):
        raise ApiError(415, "unsupported_media_type", "Content-Type", f"{content_type or '(none)'!r} is not {PROTOBUF} or {JSON}")
    raw = await read_body(request, gw.settings)
    mapped = map_request(decode_request(raw, content_type), key.tenant_id, header_agent,
                         max_attribute_bytes=gw.settings.otlp_max_attribute_bytes)
    records: list[tuple[str, bytes]] = []
    for batch in mapped.traces.values():  # masked before encoding, as the API's events (docs/privacy.md)
        policy = gw.maskers.policy(key.tenant_id, batch["agent_id"])
        for span in batch["spans"]:
            policy.mask_span(span)
    try:
        for trace_id, batch in mapped.traces.items():
            records += [(trace_id, v) for v in _records(gw.codec, batch, gw.settings.max_event_bytes, mapped.reject)]
    except SchemaValidationError as exc:  # a mapping bug, not the client's: name it rather than answer 500
        raise ApiError(400, "invalid_otlp", exc.field or "span", exc.reason) from None
    runs = [Prepared(t, b"", t, mapped.traces[t]["agent_id"]) for t in mapped.roots if t in mapped.traces]
    if runs:
        gw.check_plan(key.tenant_id, runs)
    feedback, warnings = _encode_feedback(gw, key.tenant_id, mapped.feedback)
    send = gw.client.send_encoded
    for trace_id, value in records:
        send("OtelSpans", _TOPIC, trace_id, value)
    for trace_id, value in feedback:
        send(FEEDBACK.record, FEEDBACK.topic, trace_id, value)
    gw.metrics.count_events("OtelSpans", len(records))
    if feedback:
        gw.metrics.count_events(FEEDBACK.record, len(feedback))
    resp = ExportTraceServiceResponse()
    if mapped.rejected or warnings:  # an error message without rejected spans is a warning (OTLP "partial success")
        resp.partial_success.rejected_spans = mapped.rejected
        reasons = mapped.reasons + warnings[:3]
        resp.partial_success.error_message = "; ".join(reasons) + (" ..." if mapped.rejected + len(warnings) > len(reasons) else "")
    return _answer(resp, 200, as_json)


def _encode_feedback(gw: "Gateway", tenant_id: str, events: list[dict[str, Any]]) -> tuple[list[tuple[str, bytes]], list[str]]:
    out, warnings = [], []
    for args in events:
        trace_id = args.pop("trace_id")
        try:
            check_id("agentgym.feedback.trace_id", trace_id)
            gw.maskers.policy(tenant_id, args["agent_id"]).mask_feedback(args)
            _, value = gw.client.encode_feedback(trace_id, tenant_id=tenant_id, **args)
        except (InvalidIdError, SchemaValidationError, TypeError, ValueError) as exc:  # InvalidEventError names the field
            field_name = getattr(exc, "field", "") or "event"
            warnings.append(f"{FEEDBACK_EVENT} event of trace {trace_id[:40]}: {field_name}: {getattr(exc, 'reason', exc)}")
            continue
        out.append((trace_id, value))
    return out, warnings


def add_routes(app: web.Application, endpoint: Callable[[str, Any], Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> None:
    """Adds ``POST /v1/traces``; ``endpoint`` is the app's wrapper (metrics, access log)."""
    app.router.add_post("/v1/traces", endpoint("otlp_traces", _traces))


def _status_body(description: str, retry_after: bool = False) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                                               "details": {"type": "array"}}}
    out: dict[str, Any] = {"description": description, "content": {
        JSON: {"schema": schema}, PROTOBUF: {"schema": {"type": "string", "format": "binary"}}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI description of ``POST /v1/traces``."""
    response = {"type": "object", "properties": {"partialSuccess": {"type": "object", "properties": {
        "rejectedSpans": {"type": ["string", "integer"]}, "errorMessage": {"type": "string"}}}}}
    return {"/v1/traces": {"post": {
        "summary": "OTLP/HTTP trace export (OpenTelemetry GenAI spans become experiences; scope ingest)",
        "description": "Point OTEL_EXPORTER_OTLP_TRACES_ENDPOINT here with an Authorization header. See docs/otel.md.",
        "operationId": "post_otlp_traces",
        "parameters": [{"name": "X-AgentGym-Agent", "in": "header", "required": False, "schema": {"type": "string"},
                        "description": "the agent (default: the resource's service.name)"}],
        "requestBody": {"required": True, "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object", "description": "ExportTraceServiceRequest, OTLP JSON encoding"}}}},
        "responses": {
            "200": {"description": "ExportTraceServiceResponse; partialSuccess counts the rejected spans", "content": {
                JSON: {"schema": response}, PROTOBUF: {"schema": {"type": "string", "format": "binary"}}}},
            "400": _status_body("the body is not an OTLP export request (google.rpc.Status)"),
            "401": _status_body("missing, malformed, unknown or revoked API key"),
            "403": _status_body("the key lacks the scope ingest, or the request names another tenant"),
            "408": _status_body("the body did not arrive in time"),
            "413": _status_body("body or decompressed body over its limit"),
            "415": _status_body("Content-Type or Content-Encoding not supported"),
            "429": _status_body("rate limit or plan limit; Retry-After says when to retry", retry_after=True),
        },
    }}}
