"""Reading a request body within limits: size on the wire, size decompressed, time, JSON depth.

Every refusal is an :class:`ApiError` naming the field and the reason: 413 for sizes,
408 for a client too slow to send its body, 400 for what is not JSON (NaN and
Infinity are not JSON, RFC 8259 section 6, and are refused) or nests too deeply.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from aiohttp import web

from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.settings import GatewaySettings

try:
    from agentgym.gateway._jsonscan import depth_exceeds as _native_depth_exceeds
except ImportError:  # built without a C compiler: the walk below serves
    _native_depth_exceeds = None

__all__ = ["read_json", "read_body", "parse_json", "decoded", "json_depth_exceeds", "events_of"]


async def read_json(request: web.Request, settings: GatewaySettings) -> Any:
    """The request's JSON body, parsed, or an :class:`ApiError`."""
    return parse_json(await read_body(request, settings), settings)


def parse_json(raw: bytes, settings: GatewaySettings) -> Any:
    """A whole (decompressed) body parsed as JSON within the depth limit, or an :class:`ApiError`."""
    if not raw:
        raise ApiError(400, "invalid_json", "body", "is empty: send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", "body", f"not valid JSON: {exc}") from None
    if json_depth_exceeds(raw, body, settings.max_json_depth):
        raise ApiError(400, "too_deep", "body", f"JSON nests deeper than {settings.max_json_depth} levels")
    return body


async def read_body(request: web.Request, settings: GatewaySettings) -> bytes:
    """The request's body within the size and time limits, decompressed (gzip, deflate), or an :class:`ApiError`."""
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise ApiError(413, "too_large", "body", f"{length} bytes; at most {settings.max_body_bytes} bytes per request")
    try:
        if request.content.is_eof():  # the whole body is already here (most small requests): no timer needed
            raw = await request.read()
        else:
            async with asyncio.timeout(settings.body_timeout_s):
                raw = await request.read()
    except TimeoutError:
        raise ApiError(408, "body_timeout", "body", f"the body did not arrive within {settings.body_timeout_s:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "too_large", "body", f"more than {settings.max_body_bytes} bytes; "
                       f"at most {settings.max_body_bytes} bytes per request") from None
    return decoded(raw, request.headers.get("Content-Encoding"), settings)


def decoded(raw: bytes, content_encoding: str | None, settings: GatewaySettings) -> bytes:
    """``raw`` decompressed as its ``Content-Encoding`` says (gzip, deflate; none: as is), within the limit."""
    if content_encoding is None:
        return raw
    encoding = content_encoding.strip().lower()
    if encoding not in ("", "identity"):
        raw = _decompress(raw, encoding, settings.max_decompressed_bytes)
    return raw


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise ApiError(415, "unsupported_encoding", "Content-Encoding", f"{encoding!r} is not one of gzip, deflate, identity")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(raw, limit + 1)  # never inflate more than the limit (a zip bomb stops here)
    except zlib.error as exc:
        raise ApiError(400, "invalid_encoding", "body", f"not valid {encoding}: {exc}") from None
    if len(out) > limit:
        raise ApiError(413, "too_large", "body", f"more than {limit} bytes once decompressed; at most {limit}")
    return out


def json_depth_exceeds(raw: bytes, body: Any, limit: int) -> bool:
    """Whether ``body`` (parsed from ``raw``) nests deeper than ``limit`` (containers inside containers).

    Compiled (``gateway/_jsonscan.c``): one pass over ``raw``, strings skipped with memchr
    (~0.5 us per event of a batch). Else: the count of ``[`` and ``{`` in ``raw`` bounds the
    depth from above, so a typical single event is cleared by two C-level counts; a body with
    more brackets than the limit is walked (iteratively: no recursion to exhaust; ~3 us per
    event of a batch).
    """
    if _native_depth_exceeds is not None:
        return bool(_native_depth_exceeds(raw, limit))
    return _walk_exceeds(raw, body, limit)


def _walk_exceeds(raw: bytes, body: Any, limit: int) -> bool:
    """:func:`json_depth_exceeds` in Python: the bracket count, then a walk of the parsed objects."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(body, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            return True
        depth += 1
        for v in (node.values() if type(node) is dict else node):
            t = type(v)
            if t is dict or t is list:
                push((v, depth))
    return False


def events_of(body: Any, max_events: int) -> tuple[list[dict[str, Any]], bool]:
    """The events of a body: ``(events, batched)``; one object, or ``{"events": [...]}``."""
    if isinstance(body, dict) and "events" in body:
        events = body["events"]
        if set(body) - {"events"}:
            extra = sorted(set(body) - {"events"})[0]
            raise ApiError(400, "invalid_event", extra, 'a batch body holds only "events"')
        if not isinstance(events, list):
            raise ApiError(400, "invalid_event", "events", f"must be a list of objects, got {type(events).__name__}")
        if not events:
            raise ApiError(400, "invalid_event", "events", "is empty")
        if len(events) > max_events:
            raise ApiError(413, "too_many_events", "events", f"{len(events)} events; at most {max_events} per request")
        for i, e in enumerate(events):
            if not isinstance(e, dict):
                raise ApiError(400, "invalid_event", f"events[{i}]", f"expected a JSON object, got {_json_type(e)}", index=i)
        return events, True
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_event", "body", f"expected a JSON object, got {_json_type(body)}")
    return [body], False


def _json_type(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(v), "null")
