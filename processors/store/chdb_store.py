"""The embedded backend: the ClickHouse engine in this process (chdb), data in a directory.

What chdb (4.x, engine 26.9) allows, and how this module lives with it:

* **One engine per process, bound to one directory.** Any number of connections to
  that directory may be open at once (each with its own ``USE``/``SET`` state); opening
  a *different* directory while one is open fails. :class:`ChdbStore` objects on the
  same directory share the engine; a store on another directory raises
  :class:`~agentgym.processors.store.exceptions.StoreError` until the first is closed.
* **One process per directory.** The engine takes an exclusive ``flock`` on
  ``<dir>/status`` (which also records the owner's PID) and a second process fails to
  open it. :func:`directory_owner` tells whether another process holds it, without
  touching the engine; the owner serves reads to others over HTTP
  (:mod:`agentgym.processors.store.http_server`).
* **Fast inserts.** An Arrow table is read by the engine in place through the
  ``Python()`` table function (``INSERT INTO t SELECT * FROM Python(batch)``).
  Measured on this 2-core machine (shared with other work) with ~1 KiB experience rows
  in 5,000-20,000-row batches, medians of interleaved runs: ~190,000-225,000 rows/s
  with ``optimize_on_insert = 0``; 70,000-100,000 rows/s with ClickHouse's default
  ``optimize_on_insert = 1``; the Arrow IPC stream through chdb's ``send_insert``
  ~190,000-200,000 rows/s (it serializes the batch first). ``optimize_on_insert = 0``
  skips collapsing duplicates inside the inserted block; the ReplacingMergeTree tables
  collapse them at merge time and the analyst views read with FINAL, so nothing
  duplicated ever shows. Reproduce with ``python -m agentgym.ops.bench.store_insert``.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentgym.processors.store.base import (
    SETTING_NAME_RE,
    Backend,
    QueryResult,
    RawResult,
    Store,
    as_arrow,
    format_settings_value,
    qualified_table,
    quote_identifier,
)
from agentgym.processors.store.exceptions import (
    QueryError,
    StoreClosedError,
    StoreConfigError,
    StoreError,
    StoreLockedError,
    query_error_from_message,
)
from agentgym.processors.store.readonly import check_readonly

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

__all__ = ["ChdbStore", "parse_chdb_url", "directory_owner", "read_port_file", "PORT_FILE_NAME", "open_paths"]

PORT_FILE_NAME = "http.port"
_STATUS_FILE = "status"

# realpath -> number of ChdbStore objects open on it in this process
_open: dict[str, int] = {}
_open_lock = threading.Lock()


def open_paths() -> dict[str, int]:
    """The directories this process has open, with the number of stores on each."""
    with _open_lock:
        return dict(_open)


def parse_chdb_url(url: str) -> Path:
    """The data directory of a ``chdb://`` URL.

    ``chdb:///abs/dir`` and ``chdb://~/dir`` are accepted; a relative ``chdb://dir`` is
    resolved against the working directory.

    Raises:
        StoreConfigError: for another scheme or an empty path.
    """
    if not url.startswith("chdb://"):
        raise StoreConfigError(f"not a chdb URL: {url!r} (expected chdb:///path/to/dir)")
    raw = url[len("chdb://"):].split("?", 1)[0]
    if not raw or raw == ":memory:":
        raise StoreConfigError(f"chdb URL {url!r} names no directory (expected chdb:///path/to/dir)")
    return Path(raw).expanduser().resolve()


def directory_owner(path: Path) -> int | None:
    """The PID of *another* process holding the engine lock on ``path``, else None.

    Returns None when the directory is free, missing, or open in this process. When
    the lock is held but the PID cannot be read, returns -1.
    """
    path = Path(path).expanduser().resolve()
    with _open_lock:
        if str(path) in _open:
            return None
    return directory_owner_unlocked(path)


def read_port_file(path: Path) -> int | None:
    """The port of the read-only HTTP interface recorded in ``<path>/http.port``, if any."""
    try:
        text = (Path(path) / PORT_FILE_NAME).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _status_pid(status: Path) -> int:
    try:
        for line in status.read_text(errors="replace").splitlines():
            if line.startswith("PID:"):
                return int(line.split(":", 1)[1].strip())
    except (OSError, ValueError):
        pass
    return -1


def _bind(sql: str, params: Mapping[str, Any] | None) -> tuple[str, dict[str, str]]:
    """Binds ``params`` exactly as clickhouse-connect binds them for the HTTP interface.

    ``{name:Type}`` placeholders stay in the SQL and their values become text; other
    placeholders (``%(name)s``) are substituted client-side.
    """
    if not params:
        return sql, {}
    from clickhouse_connect.driver.binding import bind_query

    bound, bind_params = bind_query(sql, dict(params))
    text = bound.decode() if isinstance(bound, bytes) else bound
    return text, {(k[6:] if k.startswith("param_") else k): v for k, v in bind_params.items()}


class ChdbStore(Store):
    """The store in an embedded ClickHouse engine (chdb), data in ``path``.

    Args:
        path: the data directory (created if missing).
        database: the database of Agent Gym's tables (created if missing, when
            ``create_database``); the default for unqualified names.
        create_database: create ``database`` on open.

    Raises:
        StoreLockedError: another process owns ``path``.
        StoreError: this process already has another directory open (chdb hosts one
            engine per process), or the engine failed to start.

    Thread safety: every method may be called from several threads.
    """

    backend: Backend = "chdb"
    reads_local_files = True
    exclusive = True  # the directory lock: one process at a time

    def __init__(self, path: Path | str, database: str = "agentgym", *, create_database: bool = True) -> None:
        self.path = Path(path).expanduser().resolve()
        self.database = database
        self.url = f"chdb://{self.path}"
        self._closed = True
        self._client: Client | None = None
        self._client_lock = threading.Lock()
        self._on_close: list[Callable[[], None]] = []
        key = str(self.path)
        with _open_lock:
            if key not in _open:
                owner = directory_owner_unlocked(self.path)
                if owner is not None:
                    raise StoreLockedError(_locked_message(self.path, owner), self.path, owner if owner > 0 else None)
            others = [p for p in _open if p != key]
            if others:
                raise StoreError(
                    f"this process already has the embedded ClickHouse open at {others[0]}; chdb hosts one data "
                    f"directory per process, so close that store before opening {key}"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            from chdb import session as chdb_session

            try:
                self._session = chdb_session.Session(key)
            except Exception as exc:  # chdb raises RuntimeError with the engine's text
                text = str(exc)
                if "lock" in text.lower() or "Error initializing EmbeddedServer" in text:
                    owner = _status_pid(self.path / _STATUS_FILE)
                    raise StoreLockedError(_locked_message(self.path, owner), self.path, owner if owner > 0 else None) from exc
                raise StoreError(f"cannot open the embedded ClickHouse at {key}: {text}") from exc
            _open[key] = _open.get(key, 0) + 1
            self._closed = False
        try:
            if create_database:
                self._run(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
            self._run(f"USE {quote_identifier(database)}")
        except Exception:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")

    def _run(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, Any] | None = None) -> Any:
        self._check_open()
        text, bind = _bind(sql, params)
        try:
            return self._session.query(text, fmt, params=bind)
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None

    def client(self) -> "Client":
        """A clickhouse-connect client on this engine (its own connection), made on first use.

        Rows decode through the same Native codec as over HTTP, so :meth:`query` returns
        the same Python types as :class:`~agentgym.processors.store.server_store.ServerStore`.
        """
        self._check_open()
        with self._client_lock:
            if self._client is None:
                import clickhouse_connect

                try:
                    self._client = clickhouse_connect.get_client(
                        interface="chdb", path=str(self.path), database=self.database
                    )
                except Exception as exc:
                    raise query_error_from_message(str(exc)) from exc
            return self._client

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` at :meth:`close`, before the engine is released (e.g. to stop a read server)."""
        self._on_close.append(callback)

    def connection_string(self, *, readonly: bool = False) -> str:
        """The chdb connection string of this directory; ``readonly`` adds ``readonly=2``.

        ``readonly=2`` refuses writes and DDL on that connection but still lets a query
        change its own settings (ClickHouse's meaning of 2).
        """
        return f"{self.path}?readonly=2" if readonly else str(self.path)

    # -- Store --------------------------------------------------------------
    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """See :meth:`Store.command`."""
        self._run(sql, "TabSeparated", params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """See :meth:`Store.query`."""
        client = self.client()
        try:
            res = client.query(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None
        return QueryResult(
            tuple(res.column_names), tuple(t.name for t in res.column_types), [tuple(r) for r in res.result_rows]
        )

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> "pa.Table":
        """See :meth:`Store.query_arrow`."""
        table: pa.Table = self._run(sql, "ArrowTable", params)
        return table

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
        """See :meth:`Store.query_raw`.

        Runs on a connection of its own (about 1.5 ms to open), so ``database`` and
        ``settings`` affect this statement only, and ``readonly`` is also enforced by
        the engine (``readonly=2``).
        """
        self._check_open()
        if readonly:
            check_readonly(sql)
        import chdb

        try:
            conn = chdb.connect(self.connection_string(readonly=readonly))
        except Exception as exc:
            raise StoreError(f"cannot open a connection to {self.path}: {exc}") from exc
        try:
            conn.query(f"USE {quote_identifier(database or self.database)}", "TabSeparated")
            for name, value in (settings or {}).items():
                if not SETTING_NAME_RE.match(name):
                    raise QueryError(
                        f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)", 115, "UNKNOWN_SETTING"
                    )
                conn.query(f"SET {name} = {format_settings_value(value)}", "TabSeparated")
            text, bind = _bind(sql, params)
            if text_params:
                bind.update(text_params)
            res = conn.query(text, fmt, params=bind)
            return RawResult(bytes(res.bytes() or b""), int(res.rows_read()), int(res.bytes_read()), float(res.elapsed()))
        except QueryError:
            raise
        except Exception as exc:
            raise query_error_from_message(str(exc)) from None
        finally:
            conn.close()

    def insert(
        self,
        table: str,
        data: "pa.Table | Mapping[str, Sequence[Any]] | Sequence[Sequence[Any]]",
        column_names: Sequence[str] | None = None,
    ) -> int:
        """See :meth:`Store.insert`: one ``INSERT ... SELECT * FROM Python(batch)`` statement."""
        batch = as_arrow(data, column_names)
        if batch.num_rows == 0:
            return 0
        cols = ", ".join(quote_identifier(c) for c in batch.column_names)
        # chdb's Python() table function finds the table by this local variable's name.
        _agentgym_batch = batch  # noqa: F841
        self._run(
            f"INSERT INTO {qualified_table(table, self.database)} ({cols}) "
            "SETTINGS optimize_on_insert = 0 SELECT * FROM Python(_agentgym_batch)"
        )
        return int(batch.num_rows)

    @property
    def closed(self) -> bool:
        """See :attr:`Store.closed`."""
        return self._closed

    def close(self) -> None:
        """See :meth:`Store.close`: stops what was attached (read servers), then releases the engine."""
        if self._closed:
            return
        callbacks, self._on_close = self._on_close, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # closing must go on
                pass
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
        key = str(self.path)
        with _open_lock:
            self._closed = True
            try:
                self._session.close()
            finally:
                left = _open.get(key, 1) - 1
                if left <= 0:
                    _open.pop(key, None)
                else:
                    _open[key] = left

    def __del__(self) -> None:
        # a store dropped without close() must still release the engine and the registry
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"ChdbStore({str(self.path)!r}, database={self.database!r}{', closed' if self._closed else ''})"


def directory_owner_unlocked(path: Path) -> int | None:
    """:func:`directory_owner` for callers already holding the registry lock."""
    status = path / _STATUS_FILE
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _status_pid(status)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _locked_message(path: Path, owner: int | None) -> str:
    who = f"process {owner}" if owner and owner > 0 else "another process"
    port_file = path / PORT_FILE_NAME
    hint = (
        f"; it serves reads on the port in {port_file} (agentgym sql reads through it; writes need it stopped)"
        if port_file.exists()
        else "; stop it, or query through its read-only HTTP interface if it serves one"
    )
    return f"the embedded ClickHouse directory {path} is in use by {who} (chdb allows one process per directory){hint}"
