"""ClickHouse's HTTP query interface, read-only, for a store this process owns.

In embedded mode only the process that owns the chdb directory can open it; this
server lets everyone else read: ``clickhouse-connect``, ``curl``, BI tools, and
``agentgym sql`` (which finds the port in ``<dir>/http.port``).

What it speaks (the parts of ClickHouse's interface those clients use):

* ``GET``/``POST /``: the query in the ``query`` URL parameter and/or the body (they
  are joined with a newline, as ClickHouse does); ``GET /`` without a query and
  ``/ping`` answer ``Ok.``.
* ``database``: the default database (when absent: the store's, ``agentgym`` — a
  ClickHouse server would use ``default``).
* ``default_format``: the output format when the statement has no ``FORMAT`` clause
  (default ``TabSeparated``); the engine formats the result, byte for byte as a server.
* ``param_<name>``: values of ``{name:Type}`` placeholders.
* any other parameter that is not a transport option is a ClickHouse setting for
  this request (``max_result_rows=10``); an unknown one is an error, as on a server.
* multipart/form-data bodies (``query`` and ``param_*`` fields: what clickhouse-connect
  sends for large parameters), and gzip/deflate request bodies.
* response headers ``X-ClickHouse-Query-Id``, ``-Format``, ``-Timezone``, ``-Summary``,
  ``-Server-Display-Name``; on errors ``X-ClickHouse-Exception-Code`` with the status
  ClickHouse gives the code (``exceptionCodeToHTTPStatus.cpp``) and its error text.

Limits (a hostile or careless client must not take the worker down; each is a
constructor argument of :class:`ReadOnlyHTTPServer` and a setting of the processors):

* the request body: at most ``max_body_bytes`` as sent (``AGENTGYM_HTTP_MAX_BODY_BYTES``,
  default 16 MiB) and ``max_decompressed_bytes`` once gzip/deflate is undone
  (``AGENTGYM_HTTP_MAX_DECOMPRESSED_BYTES``, default 16 MiB), decompressed in a
  stream that stops at the limit: beyond either, HTTP 413 (code 229,
  QUERY_IS_TOO_LARGE); the SQL guard reads the text in constant memory;
* every query: ``max_execution_time`` (``AGENTGYM_HTTP_MAX_EXECUTION_TIME_S``, default
  30 s) and ``max_memory_usage`` (``AGENTGYM_HTTP_MAX_MEMORY_USAGE``, default 1 GiB)
  are applied, and a client may lower them but not raise them (URL parameters are
  capped; a ``SETTINGS`` clause naming them is refused with code 452,
  SETTING_CONSTRAINT_VIOLATION); past a limit the engine stops the query with its own
  error (159 TIMEOUT_EXCEEDED, 241 MEMORY_LIMIT_EXCEEDED);
* a client that disconnects: its query is cancelled (``KILL QUERY``) within about
  a quarter of a second.

Writes and DDL are refused before they reach the engine (HTTP 403, ClickHouse error
164 READONLY, see :mod:`agentgym.processors.store.readonly`), and each request runs on its own
engine connection with ``readonly=2`` as well. Not supported: sessions (every request
stands alone; ``session_id`` is accepted and ignored), external data tables, response
compression, progress headers, authentication (it listens on loopback only).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import os
import select
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agentgym.processors.store.base import Store
from agentgym.processors.store.chdb_store import PORT_FILE_NAME
from agentgym.processors.store.exceptions import QueryError, ReadOnlyError, StoreError
from agentgym.processors.store.readonly import check_readonly
from agentgym.processors.store.sqltext import READ_KEYWORDS, iter_tokens, statement_keyword

__all__ = ["ReadOnlyHTTPServer", "serve_readonly", "CONTENT_TYPES", "status_for_code", "HttpLimits"]

log = logging.getLogger(__name__)

# URL parameters that steer the HTTP exchange rather than the query (ClickHouse's
# HTTPHandler and clickhouse-connect's transport settings); accepted, not applied.
_TRANSPORT_PARAMS = frozenset(
    {
        "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
        "compress", "decompress", "user", "password", "quota_key", "buffer_size", "wait_end_of_query",
        "client_protocol_version", "role", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
        "enable_http_compression", "http_zlib_compression_level", "add_http_cors_header",
        "cancel_http_readonly_queries_on_client_close", "readonly", "stacktrace", "query_plan_serialization_version",
    }
)

CONTENT_TYPES: dict[str, str] = {
    "tabseparated": "text/tab-separated-values; charset=UTF-8",
    "tsv": "text/tab-separated-values; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8; header=absent",
    "csvwithnames": "text/csv; charset=UTF-8; header=present",
    "json": "application/json; charset=UTF-8",
    "jsoncompact": "application/json; charset=UTF-8",
    "jsoneachrow": "application/x-ndjson; charset=UTF-8",
    "jsoncompacteachrow": "application/x-ndjson; charset=UTF-8",
    "native": "application/octet-stream",
    "rowbinary": "application/octet-stream",
    "rowbinarywithnamesandtypes": "application/octet-stream",
    "arrow": "application/octet-stream",
    "arrowstream": "application/octet-stream",
    "parquet": "application/octet-stream",
    "orc": "application/octet-stream",
    "avro": "application/octet-stream",
}
"""Lower-case format name -> Content-Type (others: ``text/plain; charset=UTF-8``)."""

# ClickHouse's exceptionCodeToHTTPStatus (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp),
# by numeric code. READONLY (164) is a 500 there; this interface answers its own
# refusals with 403.
_STATUS_BY_CODE: dict[int, int] = {194: 401, 164: 403}
_STATUS_BY_CODE.update({c: 403 for c in (192, 193, 516, 512, 497)})
_STATUS_BY_CODE.update({
    c: 400
    for c in (36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8, 167, 168, 223, 62, 117, 53, 321)
})
_STATUS_BY_CODE.update({c: 404 for c in (60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511)})
_STATUS_BY_CODE.update({229: 413, 48: 501, 209: 503, 76: 503, 381: 411, 159: 408, 439: 503, 779: 415})


@dataclass(frozen=True)
class HttpLimits:
    """What one request may cost (see the module docstring).

    Attributes:
        max_body_bytes: the body as sent, bytes (default 16 MiB).
        max_decompressed_bytes: the body once gzip/deflate is undone, bytes (default 16 MiB).
        max_execution_time_s: the longest a query may run, seconds (default 30).
        max_memory_usage: the most memory a query may take, bytes (default 1 GiB).
    """

    max_body_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 16 * 1024 * 1024
    max_execution_time_s: float = 30.0
    max_memory_usage: int = 1024 * 1024 * 1024

    def capped_settings(self) -> dict[str, float | int]:
        return {"max_execution_time": self.max_execution_time_s, "max_memory_usage": self.max_memory_usage}


def _too_large(what: str, limit: int) -> QueryError:
    return QueryError(f"Code: 229. DB::Exception: The request {what} is larger than this interface accepts "
                      f"({limit} bytes). (QUERY_IS_TOO_LARGE)", 229, "QUERY_IS_TOO_LARGE")


def status_for_code(code: int | None) -> int:
    """The HTTP status ClickHouse answers an error code with (500 for the rest)."""
    return _STATUS_BY_CODE.get(code or 0, 500)


class ReadOnlyHTTPServer(ThreadingHTTPServer):
    """The read-only HTTP interface of one store, served from a background thread.

    Attributes:
        store: the store it reads from.
        host: the address it listens on.
        port: the port it listens on.
        port_file: where the port is recorded (``<chdb dir>/http.port``), if anywhere.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 0, limits: HttpLimits | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.store = store
        self.limits = limits or HttpLimits()
        self.host = host
        self.port = int(self.server_address[1])
        self.port_file: Path | None = None
        self.display_name = socket.gethostname() or "agentgym"
        version_tz = store.query("SELECT version(), timezone()")
        self.engine_version = str(version_tz.rows[0][0])
        self.timezone = str(version_tz.rows[0][1])
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._stop_lock = threading.Lock()

    def kill_query(self, marker: str) -> None:
        """Cancels the running query whose text holds ``marker`` (its client went away)."""
        try:
            self.store.query_raw(
                f"KILL QUERY WHERE query LIKE '%{marker}%' AND query NOT LIKE '%KILL QUERY%' ASYNC", "TabSeparated")
        except Exception:  # the query may have just finished
            log.debug("read-only HTTP interface: could not cancel %s", marker, exc_info=True)

    # a lingering close: what a client still sends after a refusal it has not read yet (a 413 on a body over the
    # limit, sent before the body ended) is read and dropped for up to this long and this much, so that the close
    # does not reset the connection under the client and discard the response it has not read (nginx's
    # lingering_close does the same)
    linger_s = 2.0
    linger_bytes = 16 * 1024 * 1024

    def shutdown_request(self, request: Any) -> None:
        """Closes a connection: its sending side first, then what the client still sends is drained (bounded)."""
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        else:
            deadline = time.monotonic() + self.linger_s
            drained = 0
            try:
                while drained < self.linger_bytes:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    request.settimeout(left)
                    data = request.recv(65536)
                    if not data:
                        break
                    drained += len(data)
            except OSError:
                pass
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke mid-request (the client went away) is not worth a traceback on stderr."""
        log.debug("read-only HTTP interface: connection from %s failed", client_address, exc_info=True)

    @property
    def url(self) -> str:
        """``http://host:port``: what to give ``clickhouse_connect.get_client``, curl or a BI tool."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ReadOnlyHTTPServer":
        """Serves from a daemon thread; returns at once."""
        self._thread = threading.Thread(target=self.serve_forever, name=f"agentgym-http-read-{self.port}", daemon=True)
        self._thread.start()
        return self

    def write_port_file(self, directory: Path) -> Path:
        """Records the port in ``directory/http.port`` (written atomically) and returns that path."""
        target = Path(directory) / PORT_FILE_NAME
        tmp = target.with_name(f".{PORT_FILE_NAME}.{os.getpid()}")
        tmp.write_text(f"{self.port}\n")
        os.replace(tmp, target)
        self.port_file = target
        return target

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops serving, closes the socket and removes the port file if it is still ours. Idempotent.

        Args:
            timeout_s: seconds to wait for the serving thread to end.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout_s)
        self.server_close()
        if self.port_file is not None:
            try:
                if self.port_file.read_text().strip() == str(self.port):
                    self.port_file.unlink()
            except OSError:
                pass


def serve_readonly(store: Store, port: int = 0, host: str = "127.0.0.1", limits: HttpLimits | None = None) -> ReadOnlyHTTPServer:
    """Starts the read-only HTTP interface of ``store`` in a background thread.

    For an embedded store the port is recorded in ``<dir>/http.port``, where
    ``agentgym sql`` and :func:`~agentgym.processors.store.factory.open_reader` find it; the
    server stops (and removes the file) when the store closes, or at ``stop()``.

    Args:
        store: the store to read from (normally the :class:`ChdbStore` this process owns).
        port: the TCP port; 0 picks a free one (see ``server.port``).
        host: the address to listen on; keep the loopback default (no authentication).
        limits: body, decompression, time and memory limits (:class:`HttpLimits` defaults).

    Returns:
        The running server: ``.port``, ``.url``, ``.stop()``.

    Raises:
        StoreError: the port is taken or the store does not answer.
    """
    try:
        server = ReadOnlyHTTPServer(store, host, port, limits)
    except OSError as exc:
        raise StoreError(f"cannot listen on {host}:{port}: {exc}") from exc
    server.start()
    path = getattr(store, "path", None)
    if isinstance(path, Path):
        server.write_port_file(path)
    add_close_callback = getattr(store, "add_close_callback", None)
    if callable(add_close_callback):
        add_close_callback(server.stop)
    log.info("read-only ClickHouse HTTP interface on %s", server.url)
    return server


_KEEP_ALIVE_S = 10


class _Handler(BaseHTTPRequestHandler):
    server: ReadOnlyHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "agentgym-clickhouse-readonly"
    timeout = _KEEP_ALIVE_S  # an idle keep-alive connection is closed after this many seconds

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("%s %s", self.address_string(), format % args)

    # -- HTTP verbs -----------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self._handle(is_post=False)

    def do_POST(self) -> None:  # noqa: N802
        self._handle(is_post=True)

    def do_HEAD(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        self._send(200 if path in ("/", "/ping", "/replicas_status") else 404, b"", {}, head=True)

    # -- plumbing ---------------------------------------------------------------
    def _read_body(self) -> bytes:
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(100).split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > limits.max_body_bytes:
                    self.close_connection = True  # the rest stays unread
                    raise _too_large("body", limits.max_body_bytes)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(100)
            body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > limits.max_body_bytes:
                self.close_connection = True  # not read: the connection cannot be reused
                raise _too_large("body", limits.max_body_bytes)
            body = self.rfile.read(length) if length > 0 else b""
        encoding = (self.headers.get("Content-Encoding") or "").lower().strip()
        if encoding in ("", "identity"):
            return body
        if encoding in ("gzip", "deflate"):
            return _inflate(body, 31 if encoding == "gzip" else 15, limits.max_decompressed_bytes)
        raise QueryError(
            f"Code: 779. DB::Exception: Unsupported Content-Encoding {encoding!r}: send gzip, deflate or plain. "
            "(UNSUPPORTED_MEDIA_TYPE)",
            779,
            "UNSUPPORTED_MEDIA_TYPE",
        )

    def _form_fields(self, body: bytes) -> dict[str, str]:
        content_type = self.headers.get("Content-Type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, str] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None:
                raise QueryError(
                    "Code: 48. DB::Exception: External data tables are not supported by this read-only interface. "
                    "(NOT_IMPLEMENTED)",
                    48,
                    "NOT_IMPLEMENTED",
                )
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else str(part.get_payload())
        return fields

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _common_headers(self, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Server-Display-Name": self.server.display_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.timezone,
            "Keep-Alive": f"timeout={_KEEP_ALIVE_S}",
        }

    def _send_error_text(self, exc: QueryError, query_id: str) -> None:
        text = str(exc)
        if "(version " not in text:
            text = f"{text} (version {self.server.engine_version})"
        headers = self._common_headers(query_id)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        if exc.code is not None:
            headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        status = 403 if isinstance(exc, ReadOnlyError) else status_for_code(exc.code)
        self._send(status, (text.rstrip("\n") + "\n").encode(), headers)

    # -- the query ------------------------------------------------------------
    def _handle(self, is_post: bool) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            body = self._read_body()  # also for GET, so a keep-alive connection stays in step
            if parts.path in ("/ping", "/replicas_status"):
                self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            if parts.path not in ("/", ""):
                self._send(404, f"There is no handle {parts.path}\n".encode(), {"Content-Type": "text/plain; charset=UTF-8"})
                return
            if body and self.headers.get("Content-Type", "").lower().startswith("multipart/form-data"):
                params.update(self._form_fields(body))
                body = b""
            sql = params.get("query", "")
            if sql and statement_keyword(iter_tokens(sql)) not in READ_KEYWORDS:
                check_readonly(sql)  # an INSERT ... FORMAT x with its data in the body: refuse before reading it
            if body:
                text = body.decode("utf-8")
                sql = f"{sql}\n{text}" if sql else text
            if not sql.strip():
                if not is_post:
                    self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                    return
                raise QueryError("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", 62, "SYNTAX_ERROR")
            self._run(sql, params, query_id)
        except QueryError as exc:
            self._send_error_text(exc, query_id)
        except (UnicodeDecodeError, ValueError, OSError, zlib.error) as exc:
            self.close_connection = True  # the rest of the request may still be unread
            self._send_error_text(
                QueryError(f"Code: 27. DB::Exception: Cannot read the request: {exc}. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)", 27),
                query_id,
            )
        except StoreError as exc:
            self._send_error_text(QueryError(f"Code: 1001. DB::Exception: {exc}. (STD_EXCEPTION)", 1001), query_id)
        except Exception as exc:  # a bug here must answer the client, not drop the connection
            log.exception("read-only HTTP interface: unexpected error")
            self.close_connection = True
            self._send_error_text(
                QueryError(f"Code: 1001. DB::Exception: {type(exc).__name__}: {exc}. (STD_EXCEPTION)", 1001), query_id
            )

    def _capped(self, sql: str, settings: dict[str, Any]) -> dict[str, Any]:
        """``settings`` with the interface's limits applied: a client may lower them, not raise them."""
        caps = self.server.limits.capped_settings()
        in_settings = False
        for tok in iter_tokens(sql):  # a SETTINGS clause would override what is set here
            if tok.kind == "word" and tok.upper == "SETTINGS":
                in_settings = True
            elif in_settings and tok.kind in ("word", "quoted") and tok.value.lower() in caps:
                raise QueryError(
                    f"Code: 452. DB::Exception: Setting {tok.value} is limited by this interface to "
                    f"{caps[tok.value.lower()]}: give a lower value as a URL parameter, not in the query. "
                    "(SETTING_CONSTRAINT_VIOLATION)", 452, "SETTING_CONSTRAINT_VIOLATION")
        out = dict(settings)
        for name, cap in caps.items():
            given = out.get(name)
            try:
                value = float(given) if given is not None else 0.0
            except ValueError:
                raise QueryError(f"Code: 27. DB::Exception: Cannot parse setting {name}={given!r}. "
                                 "(CANNOT_PARSE_INPUT_ASSERTION_FAILED)", 27) from None
            out[name] = cap if value <= 0 or value > cap else (int(value) if name == "max_memory_usage" else value)
        return out

    def _watch_client(self, marker: str, done: threading.Event) -> None:
        """Cancels the query (``KILL QUERY``) when the client closes its connection before the answer."""
        sock = self.connection
        while not done.wait(0.25):
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if not readable or sock.recv(1, socket.MSG_PEEK) != b"":
                    continue  # still connected (or already sending its next request)
            except (OSError, ValueError):
                pass
            if done.is_set():
                return
            log.info("read-only HTTP interface: client %s went away; cancelling its query", self.address_string())
            self.server.kill_query(marker)
            return

    def _run(self, sql: str, params: dict[str, str], query_id: str) -> None:
        statement = check_readonly(sql)
        fmt = statement.output_format or params.get("default_format") or "TabSeparated"
        bind = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT_PARAMS and not k.startswith("param_")}
        settings = self._capped(sql, settings)
        started = time.perf_counter()
        marker = f"agentgym-http-{uuid.uuid4().hex}"  # finds the query in system.processes to cancel it
        done = threading.Event()
        threading.Thread(target=self._watch_client, args=(marker, done), daemon=True,
                         name="agentgym-http-watch").start()
        try:
            result = self.server.store.query_raw(
                f"/* {marker} */ {sql}", fmt, settings=settings, database=params.get("database") or None,
                readonly=True, text_params=bind,
            )
        finally:
            done.set()
        elapsed_ns = int((result.elapsed_s or time.perf_counter() - started) * 1e9)
        headers = self._common_headers(query_id)
        if statement.returns_result:
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = CONTENT_TYPES.get(fmt.lower(), "text/plain; charset=UTF-8")
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        headers["X-ClickHouse-Summary"] = json.dumps(
            {
                "read_rows": str(result.read_rows),
                "read_bytes": str(result.read_bytes),
                "written_rows": "0",
                "written_bytes": "0",
                "total_rows_to_read": str(result.read_rows),
                "result_bytes": str(len(result.data)),
                "elapsed_ns": str(elapsed_ns),
            },
            separators=(",", ":"),
        )
        self._send(200, result.data, headers)


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    """Undoes gzip (``wbits`` 31, every member) or zlib-wrapped deflate (15), stopping past ``limit`` bytes."""
    out: list[bytes] = []
    total = 0
    data = body
    while data:
        d = zlib.decompressobj(wbits)
        chunk = d.decompress(data, limit - total + 1)
        total += len(chunk)
        out.append(chunk)
        if total > limit or d.unconsumed_tail:
            raise _too_large("body, decompressed,", limit)
        if not d.eof:
            raise zlib.error("truncated compressed body")
        data = d.unused_data if wbits == 31 else b""
    return b"".join(out)
