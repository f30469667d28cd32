"""The hot routes answered from the connection's protocol, and a deadline for slow request heads.

aiohttp turns every request into a task, a ``Request``, a ``Response`` and a stream
writer. For the gateway's hottest routes that machinery costs more than the work: a
bare aiohttp handler spends ~50 us of CPU per small POST on this machine, the same
parse-and-answer done in the protocol ~18 us (measured with wrk, 2026-12-03). So a
request to

    POST /v1/experiences, POST /v1/feedback, GET /v1/experiments/{id}/assignment

is answered right where its bytes arrive (:meth:`GatewayRequestHandler.data_received`),
through the same :class:`~agentgym.gateway.app.Gateway` methods (authentication, token
bucket, limits, validation, masking, plan, produce, metrics) as the routed handlers,
so the paths give the same answers (tests/integration/gateway/test_fastpath.py
compares them).

Who reads the bytes: while aiohttp's parser has had none of a connection's bytes, a
strict compiled scanner (``gateway/_httpscan.c``) reads its requests, one plain shape
only (no chunking, no encodings, visible-ASCII headers, each once). Whatever it does not
read, and everything after it on that connection, goes to aiohttp's parser (its C parser,
keep-alive, chunked bodies, pipelining), and hot-route requests it parses are answered here
too. The scanner saves the message, header multidict, URL and payload stream aiohttp builds
per request: single events 6,740 -> 10,540 requests/s on the 2026-12-05 host (wrk, one
process). tests/unit/gateway/test_httpscan.py checks every request the scanner reads
against aiohttp's parser and h11. A body that comes after its head (http.client and
urllib3 send them apart) is waited for here: by the scanner for one more read (the
head, or the start of it, is held), else by aiohttp's parser, within ``body_timeout_s``
(else 408 and the connection closed, as on the routed path).

Anything else goes the usual way: other routes; a body
over ``max_body_bytes`` (413); HTTP/1.0, ``Connection: close``, ``Expect``, upgrades; a
request queued behind one still being handled (answers stay in order); a client not
reading its answers (the write buffer over 64 KiB: the usual path waits for it to drain).

Slow heads (slowloris): a connection that has sent part of a request head gets
``header_timeout_s`` (``AGENTGYM_GATEWAY_HEADER_TIMEOUT_S``) to finish it, then is closed;
aiohttp alone would wait its keep-alive timeout (75 s), counted from the connection's
last answer. Bodies have their own limit (``body_timeout_s``, 408).

This subclasses aiohttp's ``RequestHandler`` and reads a few of its attributes (the
message queue, the waiter of its request loop, the keep-alive timer); :data:`SUPPORTED`
checks them at import, and without them every request takes the usual path.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

import orjson
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11, RawRequestMessage
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from agentgym.gateway.body import decoded, parse_json
from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.ingest import EXPERIENCE, FEEDBACK

try:
    from agentgym.gateway._httpscan import scan as _scan
except ImportError:  # built without a C compiler: aiohttp's parser reads every request
    _scan = None

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["GatewayRunner", "GatewayRequestHandler", "SUPPORTED"]

log = logging.getLogger("agentgym.gateway")

_NEEDED = ("_messages", "_waiter", "_parser", "_force_close", "_close", "_upgraded", "_payload_parser", "_keepalive",
           "_keepalive_timeout", "_keepalive_handle", "_next_keepalive_close_time", "_buffer_paused",
           "_msg_queue_resume_size", "_manager")
SUPPORTED = all(any(name in getattr(c, "__slots__", ()) for c in RequestHandler.__mro__) for name in _NEEDED) and all(
    hasattr(RequestHandler, m) for m in ("_process_keepalive", "_resume_reading_if_drained"))

_INGEST = frozenset({"ingest"})
_ASSIGN = frozenset({"ingest", "read"})
_POSTS = {"/v1/experiences": ("experiences", EXPERIENCE), "/v1/feedback": ("feedback", FEEDBACK)}
_KIND_PATHS = {name: path for path, (name, _) in _POSTS.items()}
_SCAN_POSTS = (_POSTS["/v1/experiences"], _POSTS["/v1/feedback"])  # the scanner's routes 0 and 1
_SCAN_ASSIGNMENT = 2
_ASSIGN_PREFIX, _ASSIGN_SUFFIX = "/v1/experiments/", "/assignment"
_MAX_WRITE_BUFFER = 64 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()


class _Date:
    """The ``Date`` header, formatted once a second."""

    second = -1
    header = b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.header = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
        return cls.header


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status, _REASONS.get(status, b"Unknown"), len(body))
    extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) if headers else b""
    return head + _Date.get() + _SERVER + extra + b"\r\n" + body


class _Writes:
    """The fast path's answers of one round of the event loop, written together at the start of the next round.

    On this host most of a single event's time in the kernel was ``send`` waking the client's
    thread (the loopback delivers in the sender's context): one wake-up per answer while the
    gateway is busy, since the client sleeps between them. Written back to back, the answers
    of a round wake a client once (wrk, 16 connections: single events 10,200 -> ~14,000
    requests/s on 2026-12-05's host; an answer waits for at most the round it was computed in).

    Order per connection holds: a connection's later answers come from the routed path's
    request loop, which aiohttp wakes with ``call_soon`` after the flush was scheduled (the
    loop's ready queue is first in, first out), or from this path again (the same list).
    Before a direct write that closes the connection (408), :meth:`flush` runs first.
    One per server, so per event loop.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Any, bytes]] = []
        self.scheduled = False

    def add(self, loop: asyncio.AbstractEventLoop, transport: Any, data: bytes) -> None:
        self.pending.append((transport, data))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        pending, self.pending, self.scheduled = self.pending, [], False
        for transport, data in pending:
            if not transport.is_closing():  # (closed by the client meanwhile)
                transport.write(data)


class GatewayRequestHandler(RequestHandler):
    """aiohttp's connection protocol, answering small complete requests to the hot routes itself."""

    _body_timer: asyncio.TimerHandle | None = None  # a hot-route request whose body is still arriving
    _answering = False
    _fresh = True  # aiohttp's parser has had no byte of this connection yet: the compiled scanner may read it
    _held = b""  # the start of a hot request the scanner reads, waiting for the rest (one more read)
    _held_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._fresh and _scan is not None:
            if self._force_close or self._close:
                return
            held = self._held
            if held:
                self._drop_held()
                data = held + data
            rest, more = self._scan_answer(data)
            if not rest:
                return
            if more and (not held or len(rest) < len(data)):  # a new start of a request: wait for the next read
                self._hold(rest)
                return
            self._fresh = False  # aiohttp's parser reads the rest of the connection (it may hold a partial request)
            data = rest
        waiter = self._waiter
        idle = waiter is not None and not waiter.done()  # the request loop waits for a message: none queued or running
        if not idle:
            super().data_received(data)
            return
        self._waiter = None  # keep the request loop asleep until it is known what is left for it
        try:
            super().data_received(data)
        finally:
            self._waiter = waiter
        if self._answering:  # re-entered while answering (reading a body resumes the transport): the loop below goes on
            return
        messages = self._messages
        if not messages:
            if data and self._payload_parser is None and not self._upgraded:
                self._head_deadline()
            return
        self._answering = True
        try:
            self._answer_queued(waiter)  # type: ignore[arg-type]  # (idle: not None)
        finally:
            self._answering = False

    def _answer_queued(self, waiter: asyncio.Future[None]) -> None:
        """Answers the queued hot-route requests from the front, in order; wakes the request loop for the rest."""
        messages = self._messages
        gw = self._manager.gateway  # type: ignore[union-attr]
        while messages and not (self._force_close or self._close):
            msg, payload = messages[0]
            route = self._fast_route(msg, payload, gw.settings.max_body_bytes)  # (None for a parse error's _ErrInfo)
            if route is None:
                break
            if not payload.is_eof():  # the head came before its body (http.client, urllib3): wait for the rest here
                if self._body_timer is None:
                    loop = self._loop
                    self._body_timer = loop.call_later(gw.settings.body_timeout_s, self._body_late, gw, route,
                                                       cast(RawRequestMessage, msg), payload)
                    self._next_keepalive_close_time = loop.time() + max(self._keepalive_timeout, gw.settings.body_timeout_s + 1)
                return
            self._cancel_body_timer()
            messages.popleft()
            if self._parser is not None:
                self._parser.message_consumed()
            self._answer(gw, route, cast(RawRequestMessage, msg), payload)
            if self._buffer_paused and len(messages) <= self._msg_queue_resume_size:
                self._resume_reading_if_drained()  # parses what waited (answered in order: this one is)
        self._cancel_body_timer()
        if messages and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_body_timer()
        self._drop_held()
        super().connection_lost(exc)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_late(self, gw: Gateway, route: tuple[str, Any], msg: RawRequestMessage, payload: Any) -> None:
        """The 408 of a hot-route request whose body did not arrive in time (the rest is unread: close)."""
        self._body_timer = None
        messages = self._messages
        if not messages or messages[0][0] is not msg or payload.is_eof() or self.transport is None:
            return
        messages.popleft()
        if self._parser is not None:
            self._parser.message_consumed()
        self._late_body_answer(gw, route[0], msg.method, msg.path, False)
        self.force_close()

    def _late_body_answer(self, gw: Gateway, name: str, method: str, path: str, scanned: bool) -> None:
        t = gw.settings.body_timeout_s
        exc = ApiError(408, "body_timeout", "body", f"the body did not arrive within {t:g} s")
        gw.metrics.rejections.labels(exc.error).inc()
        gw.metrics.fast_path(scanned)
        gw.answered(name, method, path, 408, t)
        assert self.transport is not None
        if self._manager is not None:
            self._manager.writes.flush()  # type: ignore[attr-defined]  # (answers before this one first)
        self.transport.write(_response(408, orjson.dumps(exc.body())))

    # -- which requests ------------------------------------------------------------
    def _fast_route(self, msg: Any, payload: Any, max_body_bytes: int) -> tuple[str, Any] | None:
        if type(msg) is not RawRequestMessage or msg.version != HttpVersion11 or msg.should_close or msg.upgrade:
            return None
        if self.transport is None or self.transport.get_write_buffer_size() > _MAX_WRITE_BUFFER:
            return None
        headers = msg.headers
        if "Expect" in headers:
            return None
        method, path = msg.method, msg.path
        if method == "POST":
            hit = _POSTS.get(path)
            if hit is None or payload.total_bytes > max_body_bytes:
                return None
            length = headers.get("Content-Length")
            if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
                return None  # the routed path answers the 413 before reading
            return hit
        if method == "GET" and path.startswith(_ASSIGN_PREFIX) and payload.is_eof():
            raw_path = path.partition("?")[0]
            if raw_path.endswith(_ASSIGN_SUFFIX):
                experiment = raw_path[len(_ASSIGN_PREFIX):-len(_ASSIGN_SUFFIX)]
                if experiment and "/" not in experiment and "%" not in experiment:
                    return "assignment", experiment
        return None

    # -- answering -------------------------------------------------------------------
    def _answer(self, gw: Gateway, route: tuple[str, Any], msg: RawRequestMessage, payload: Any) -> None:
        """Answers a hot-route request that aiohttp's parser read."""
        name, arg = route
        headers = msg.headers
        if name == "assignment":
            self._respond(gw, name, arg, msg.method, msg.path, headers.get("Authorization"), headers.get("X-AgentGym-Tenant"),
                          None, msg.url.query.get("unit_id"), None, None, False)
        else:
            self._respond(gw, name, arg, msg.method, msg.path, headers.get("Authorization"), headers.get("X-AgentGym-Tenant"),
                          headers.get("X-AgentGym-Agent"), None, payload.read_nowait(), headers.get("Content-Encoding"), False)

    def _scan_answer(self, data: bytes) -> tuple[bytes, bool]:
        """Answers the whole hot requests at the front of ``data``, read by the compiled scanner; returns the rest,
        and whether the rest is the start of a request the scanner reads (acceptable so far).

        Only while aiohttp's parser has had no byte of this connection: so the front of ``data`` is the start of a
        request, nothing is queued or running before it, and the rest goes to aiohttp's parser as if it were new."""
        gw = self._manager.gateway  # type: ignore[union-attr]
        max_body = gw.settings.max_body_bytes
        pos, n, more = 0, len(data), False
        while pos < n:
            transport = self.transport
            if transport is None or self._force_close or self._close or transport.get_write_buffer_size() > _MAX_WRITE_BUFFER:
                break  # (a client not reading its answers: aiohttp's request loop waits for the buffer to drain)
            hit = _scan(data, pos, max_body)  # type: ignore[misc]  # (not None here)
            if not hit:
                more = hit is not None
                break
            route, experiment, unit_id, authorization, tenant, agent, start, pos = hit
            if route == _SCAN_ASSIGNMENT:
                path = f"{_ASSIGN_PREFIX}{experiment}{_ASSIGN_SUFFIX}"
                self._respond(gw, "assignment", experiment, "GET", path, authorization, tenant, None, unit_id, None, None, True)
            else:
                name, kind = _SCAN_POSTS[route]
                self._respond(gw, name, kind, "POST", _KIND_PATHS[name], authorization, tenant, agent, None, data[start:pos],
                              None, True)
        return (data[pos:] if pos else data), more

    def _hold(self, data: bytes) -> None:
        """Keeps the start of a request until the next read, within the header (or, the head whole, the body) timeout."""
        settings = self._manager.gateway.settings  # type: ignore[union-attr]
        head_done = b"\r\n\r\n" in data
        self._held = data
        self._held_timer = self._loop.call_later(settings.body_timeout_s if head_done else settings.header_timeout_s,
                                                 self._held_late, head_done)

    def _drop_held(self) -> None:
        self._held = b""
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    def _held_late(self, head_done: bool) -> None:
        """The rest of a held request did not come in time: as on the other paths, a head not whole closes the
        connection (slowloris), a body not whole gets 408 and the connection closed."""
        held, self._held, self._held_timer = self._held, b"", None
        if not held or self.transport is None:
            return
        if head_done:
            gw = self._manager.gateway  # type: ignore[union-attr]
            name = "feedback" if held.startswith(b"POST /v1/feedback ") else "experiences"
            self._late_body_answer(gw, name, "POST", _KIND_PATHS[name], True)
        self.force_close()

    def _respond(self, gw: Gateway, name: str, arg: Any, method: str, path: str, authorization: str | None,
                 tenant: str | None, agent: str | None, unit_id: str | None, raw: bytes | None, encoding: str | None,
                 scanned: bool) -> None:
        """The answer of one hot-route request, by the same :class:`~agentgym.gateway.app.Gateway` methods as the
        routed handlers; written, and the keep-alive timer moved as aiohttp's request loop does after an answer."""
        t0 = time.perf_counter()
        try:
            if name == "assignment":
                key = gw.key_of(authorization, tenant, _ASSIGN)
                out = _response(200, orjson.dumps(gw.assignment(key, arg, unit_id)))
                status = 200
            else:
                key = gw.key_of(authorization, tenant, _INGEST)
                body = parse_json(decoded(raw, encoding, gw.settings), gw.settings)  # type: ignore[arg-type]
                out = _response(202, orjson.dumps(gw.ingest(arg, key, body, agent)))
                status = 202
        except ApiError as exc:
            gw.metrics.rejections.labels(exc.error).inc()
            status = exc.status
            out = _response(status, orjson.dumps(exc.body()), exc.headers)
        except Exception:  # what the routed path would answer as a 500
            log.exception("gateway: %s %s failed", method, path)
            status = 500
            out = _response(500, orjson.dumps({"error": "internal", "field": None, "reason": "internal server error"}))
        manager = self._manager
        assert self.transport is not None and manager is not None  # (a live connection)
        manager.requests_count += 1
        gw.metrics.fast_path(scanned)  # counted before the answer leaves, as the routed path does
        gw.answered(name, method, path, status, time.perf_counter() - t0)
        manager.writes.add(self._loop, self.transport, out)  # type: ignore[attr-defined]
        # as aiohttp's request loop does after an answer: the connection may idle for the keep-alive timeout
        self._keepalive = True
        if self._keepalive_timeout:
            loop = self._loop
            self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
            if self._keepalive_handle is None:
                self._keepalive_handle = loop.call_at(self._next_keepalive_close_time, self._process_keepalive)

    def _head_deadline(self) -> None:
        """Part of a request head arrived while idle: it must be whole within the header timeout."""
        timeout = self._manager.gateway.settings.header_timeout_s  # type: ignore[union-attr]
        loop = self._loop
        deadline = loop.time() + timeout
        if deadline >= self._next_keepalive_close_time and self._keepalive_handle is not None:
            return  # an earlier deadline is already set
        self._next_keepalive_close_time = deadline
        self._keepalive = True
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
        # _process_keepalive closes the connection if the request loop is still waiting for a message then
        self._keepalive_handle = loop.call_at(deadline, self._process_keepalive)


class _GatewayServer(Server):
    """aiohttp's protocol factory, making :class:`GatewayRequestHandler` connections."""

    gateway: Gateway
    writes: _Writes

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` whose connections take the fast path (when :data:`SUPPORTED`); ``gateway`` is the app's
    :class:`~agentgym.gateway.app.Gateway` key (the app builds it on startup, which ``setup()`` runs first)."""

    def __init__(self, app: web.Application, gateway: web.AppKey[Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._gateway_key = gateway

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        if SUPPORTED and type(server) is Server:
            server.__class__ = _GatewayServer
            server.gateway = self.app[self._gateway_key]  # type: ignore[attr-defined]
            server.writes = _Writes()  # type: ignore[attr-defined]
        elif not SUPPORTED:
            log.warning("gateway: this aiohttp's RequestHandler lacks what the fast path reads; every request takes the routed path")
        return server
