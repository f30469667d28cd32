"""The server backend: a ClickHouse server over its HTTP interface (clickhouse-connect).

The same SQL as the embedded backend; rows come back as the same Python types (both
decode ClickHouse's Native format with clickhouse-connect). Also used to read from an
embedded store's read-only HTTP interface (:mod:`agentgym.processors.store.http_server`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from agentgym.processors.store.base import (
    Backend,
    QueryResult,
    RawResult,
    Store,
    as_arrow,
    quote_identifier,
)
from agentgym.processors.store.exceptions import StoreClosedError, StoreConfigError, StoreError, query_error_from_message
from agentgym.processors.store.readonly import check_readonly
from agentgym.processors.store.sqltext import RESULT_KEYWORDS, statement_keyword, tokenize, trailing_format

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

__all__ = ["ServerStore", "parse_server_url"]

_DEFAULT_PORTS = {"http": 8123, "https": 8443}


def parse_server_url(url: str) -> tuple[str, str, int, str | None, str | None]:
    """Splits ``http(s)://[user[:password]@]host[:port]`` into its parts.

    Returns:
        (scheme, host, port, user, password); port defaults to 8123 (http) or 8443 (https).

    Raises:
        StoreConfigError: for another scheme or a missing host.
    """
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise StoreConfigError(f"not a ClickHouse server URL: {url!r} (expected http://host:8123 or https://host:8443)")
    if not parts.hostname:
        raise StoreConfigError(f"ClickHouse server URL {url!r} has no host")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise StoreConfigError(f"ClickHouse server URL {url!r} has a bad port: {exc}") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.scheme, parts.hostname, port, user, password


class ServerStore(Store):
    """The store on a ClickHouse server.

    Args:
        url: ``http(s)://[user[:password]@]host[:port]``.
        database: the database of Agent Gym's tables; the default for unqualified names.
        user: overrides the URL's user (default ``default``).
        password: overrides the URL's password (default empty).
        create_database: create ``database`` on connect (needs DDL rights; off for
            read-only endpoints).
        connect_timeout_s: seconds to wait for the TCP connection.
        send_receive_timeout_s: seconds to wait for a response.

    Raises:
        StoreError: the server cannot be reached or refuses the handshake.
    """

    backend: Backend = "server"

    def __init__(
        self,
        url: str,
        database: str = "agentgym",
        *,
        user: str | None = None,
        password: str | None = None,
        create_database: bool = True,
        connect_timeout_s: float = 10.0,
        send_receive_timeout_s: float = 300.0,
    ) -> None:
        scheme, host, port, url_user, url_password = parse_server_url(url)
        self.url = url
        self.database = database
        self._closed = False
        import clickhouse_connect

        try:
            self._client: Client = clickhouse_connect.get_client(
                host=host,
                port=port,
                username=user or url_user or "default",
                password=password if password is not None else (url_password or ""),
                secure=scheme == "https",
                autogenerate_session_id=False,
                connect_timeout=connect_timeout_s,
                send_receive_timeout=send_receive_timeout_s,
            )
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {scheme}://{host}:{port}: {exc}") from exc
        try:
            if create_database:
                self._client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
            self._client.database = database
        except Exception as exc:
            self._client.close()
            raise query_error_from_message(str(exc)) from None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store at {self.url} is closed")

    @property
    def client(self) -> "Client":
        """The underlying clickhouse-connect client."""
        return self._client

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """See :meth:`Store.command`."""
        self._check_open()
        try:
            self._client.command(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """See :meth:`Store.query`."""
        self._check_open()
        try:
            res = self._client.query(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None
        return QueryResult(
            tuple(res.column_names), tuple(t.name for t in res.column_types), [tuple(r) for r in res.result_rows]
        )

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> "pa.Table":
        """See :meth:`Store.query_arrow`."""
        self._check_open()
        try:
            return self._client.query_arrow(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None

    def query_raw(
        self,
        sql: str,
        fmt: str = "TabSeparated",
        *,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        database: str | None = None,
        readonly: bool = False,
        text_params: Mapping[str, str] | None = None,
    ) -> RawResult:
        """See :meth:`Store.query_raw`. ``readonly`` is checked here, not by a server setting
        (a read-only endpoint refuses changes to ``readonly`` itself); ``text_params`` is
        not supported (pass Python values in ``params``)."""
        self._check_open()
        if text_params:
            raise StoreError("text_params need the embedded backend; pass Python values in params")
        tokens = tokenize(sql)
        if readonly:
            check_readonly(sql)
        # append FORMAT only where the statement answers with rows and names no format itself
        wants_format = statement_keyword(tokens) in RESULT_KEYWORDS and trailing_format(tokens) is None
        all_settings = dict(settings or {})
        all_settings["database"] = database or self.database
        try:
            data = self._client.raw_query(
                sql,
                parameters=dict(params) if params else None,
                settings=all_settings,
                fmt=fmt if wants_format else None,
                use_database=False,
            )
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None
        return RawResult(bytes(data))

    def insert(
        self,
        table: str,
        data: "pa.Table | Mapping[str, Sequence[Any]] | Sequence[Sequence[Any]]",
        column_names: Sequence[str] | None = None,
    ) -> int:
        """See :meth:`Store.insert`: Arrow tables go in the Arrow format, in one request."""
        self._check_open()
        batch = as_arrow(data, column_names)
        if batch.num_rows == 0:
            return 0
        db, _, name = table.rpartition(".")
        try:
            self._client.insert_arrow(name, batch, database=db or self.database, settings={"optimize_on_insert": 0})
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None
        return int(batch.num_rows)

    @property
    def closed(self) -> bool:
        """See :attr:`Store.closed`."""
        return self._closed

    def close(self) -> None:
        """See :meth:`Store.close`."""
        if not self._closed:
            self._closed = True
            self._client.close()

    def __repr__(self) -> str:
        return f"ServerStore({self.url!r}, database={self.database!r}{', closed' if self._closed else ''})"
