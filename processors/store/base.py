"""The store interface: one small surface, two backends running the same SQL.

* :class:`~agentgym.processors.store.chdb_store.ChdbStore`: the embedded engine (chdb), data in
  a directory this process owns.
* :class:`~agentgym.processors.store.server_store.ServerStore`: a ClickHouse server over HTTP
  (clickhouse-connect).

Query parameters use ClickHouse's server-side binding on both: ``{name:Type}`` in the
SQL and ``params={"name": value}``.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentgym.processors.store.exceptions import StoreConfigError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "Store",
    "QueryResult",
    "RawResult",
    "Backend",
    "quote_identifier",
    "qualified_table",
    "rows_to_arrow",
    "as_arrow",
    "format_settings_value",
    "SETTING_NAME_RE",
]

Backend = Literal["chdb", "server"]

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    """Quotes an identifier with backticks unless it is a plain one (``experiences``)."""
    if _IDENT_RE.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def qualified_table(table: str, database: str) -> str:
    """``db.table`` for a bare table name; a name that already has a database is kept.

    Raises:
        StoreConfigError: for an empty name.
    """
    if not table:
        raise StoreConfigError("empty table name")
    if "." in table and not table.startswith("`"):
        db, _, name = table.partition(".")
        return f"{quote_identifier(db)}.{quote_identifier(name)}"
    return f"{quote_identifier(database)}.{quote_identifier(table)}"


def format_settings_value(value: Any) -> str:
    """A setting value as a quoted SQL literal (the engine converts it to the setting's type)."""
    if isinstance(value, bool):
        value = int(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def as_arrow(
    data: "pa.Table | Mapping[str, Sequence[Any]] | Sequence[Sequence[Any]]",
    column_names: Sequence[str] | None = None,
) -> "pa.Table":
    """The batch of :meth:`Store.insert` as an Arrow table: a table as is, columns
    (``{"name": [values]}``) or rows (with ``column_names``) with inferred types."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, Mapping):
        return pa.table({name: pa.array(list(values)) for name, values in data.items()})
    return rows_to_arrow(data, column_names or ())


def rows_to_arrow(rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> "pa.Table":
    """Builds an Arrow table from rows, inferring each column's type.

    Pass ``datetime`` objects for DateTime columns: an integer becomes Int64, which the
    engine reads as *seconds*. For Agent Gym's records use :func:`agentgym.processors.store.rows.to_arrow`,
    which has the exact column types.
    """
    import pyarrow as pa

    if not column_names:
        raise StoreConfigError("inserting rows needs column_names")
    width = len(column_names)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise StoreConfigError(f"row {i} has {len(row)} values, expected {width} ({', '.join(column_names)})")
    columns = list(zip(*rows)) if rows else [() for _ in column_names]
    return pa.Table.from_arrays([pa.array(list(col)) for col in columns], names=list(column_names))


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query, as Python values (the same types from both backends).

    Attributes:
        column_names: the result's column names, in order.
        column_types: ClickHouse type names (``DateTime64(3, 'UTC')``), in order.
        rows: one tuple per row.
    """

    column_names: tuple[str, ...]
    column_types: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def named_rows(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.column_names, row)) for row in self.rows]

    def scalar(self) -> Any:
        """The first column of the first row, or None when there are no rows."""
        return self.rows[0][0] if self.rows and self.rows[0] else None


@dataclass(frozen=True)
class RawResult:
    """A result as the engine formatted it.

    Attributes:
        data: the formatted bytes (``TabSeparated``, ``JSONEachRow``, ``Native``, ...).
        read_rows: rows the engine read (0 when the backend does not report it).
        read_bytes: bytes the engine read (0 when unknown).
        elapsed_s: engine time in seconds (0.0 when unknown).
    """

    data: bytes
    read_rows: int = 0
    read_bytes: int = 0
    elapsed_s: float = 0.0


class Store(abc.ABC):
    """A ClickHouse database that Agent Gym writes to and analysts read from.

    Attributes:
        url: the store URL it was opened with.
        database: the database holding Agent Gym's tables; the default for unqualified names.
        backend: ``"chdb"`` or ``"server"``.
        reads_local_files: the engine runs in this process, so SQL can read files of
            this machine (``file('/tmp/x.avro', 'Avro')``): the sink hands it Avro bodies
            to parse rather than decoded rows.
        exclusive: one process owns the data; other processes read it only through
            the owner (the sink serves it read-only over HTTP).
    """

    url: str
    database: str
    backend: Backend
    reads_local_files: bool = False
    exclusive: bool = False

    @abc.abstractmethod
    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Runs a statement that returns no rows (DDL, ``OPTIMIZE``, ``SYSTEM``, ``INSERT ... SELECT``).

        Raises:
            QueryError: when the engine rejects it.
        """

    @abc.abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Runs a query and returns its rows as Python values.

        Raises:
            QueryError: when the engine rejects it.
        """

    @abc.abstractmethod
    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> "pa.Table":
        """Runs a query and returns an Arrow table (the fast path for large results).

        Raises:
            QueryError: when the engine rejects it.
        """

    @abc.abstractmethod
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
        """Runs one statement and returns its result formatted by the engine.

        Args:
            sql: the statement; a ``FORMAT`` clause in it wins over ``fmt``.
            fmt: ClickHouse output format name.
            params: values for ``{name:Type}`` placeholders.
            settings: ClickHouse settings for this statement only.
            database: default database for unqualified names (default: the store's).
            readonly: refuse writes and DDL (the check of
                :func:`agentgym.processors.store.readonly.check_readonly`, and the engine's
                ``readonly`` setting where the backend allows it).
            text_params: placeholder values already in ClickHouse's text form (as
                HTTP ``param_<name>`` values arrive), passed on untouched; embedded
                backend only.

        Raises:
            ReadOnlyError: ``readonly`` and the statement writes.
            QueryError: when the engine rejects it.
        """

    @abc.abstractmethod
    def insert(
        self,
        table: str,
        data: "pa.Table | Mapping[str, Sequence[Any]] | Sequence[Sequence[Any]]",
        column_names: Sequence[str] | None = None,
    ) -> int:
        """Inserts a batch in one statement.

        Args:
            table: table name; a bare name is in :attr:`database`.
            data: an Arrow table (its column names are the target columns; the fast
                path), columns as ``{"name": [values]}``, or rows, which need
                ``column_names``. Columns and rows get inferred Arrow types: pass
                ``datetime`` objects for DateTime columns.
            column_names: the columns ``data`` rows fill (ignored otherwise).

        Returns:
            The number of rows inserted.

        Raises:
            QueryError: when the engine rejects the batch (nothing of it is visible then,
                unless it spanned several partitions).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the store (for chdb: the directory lock, once the last store on it closes). Idempotent."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
