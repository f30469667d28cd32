"""Errors of the ClickHouse store."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "StoreError",
    "StoreConfigError",
    "StoreLockedError",
    "StoreClosedError",
    "QueryError",
    "ReadOnlyError",
    "MigrationError",
    "RowConversionError",
    "InsertAbandonedError",
    "query_error_from_message",
]

_CODE_RE = re.compile(r"\bCode:\s*(\d+)")
_NAME_RE = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


class StoreError(RuntimeError):
    """The store could not be opened, or an operation on it failed."""


class StoreConfigError(StoreError):
    """A store URL or setting is malformed (the message names it and shows the accepted forms)."""


class StoreClosedError(StoreError):
    """An operation was attempted on a store after ``close()``."""


class StoreLockedError(StoreError):
    """Another process owns the embedded ClickHouse directory (chdb takes a lock on it).

    Attributes:
        path: the data directory.
        owner_pid: the owning process id as the engine recorded it, if known.
    """

    def __init__(self, message: str, path: Path, owner_pid: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.owner_pid = owner_pid


class QueryError(StoreError):
    """The engine rejected a statement.

    Attributes:
        code: ClickHouse's numeric error code (``60`` for UNKNOWN_TABLE), if known.
        name: ClickHouse's symbolic error name (``UNKNOWN_TABLE``), if known.
    """

    def __init__(self, message: str, code: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


class ReadOnlyError(QueryError):
    """A write or DDL statement was sent where only reads are allowed (ClickHouse code 164, READONLY)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=164, name="READONLY")


class MigrationError(StoreError):
    """A schema migration failed, or an applied migration's SQL changed since it was applied."""


class RowConversionError(StoreError):
    """A batch of records could not be converted to the table's Arrow columns.

    Attributes:
        record_name: the Avro record type (``Experience``).
        column: the column whose values did not fit.
    """

    def __init__(self, message: str, record_name: str, column: str) -> None:
        super().__init__(message)
        self.record_name = record_name
        self.column = column


class InsertAbandonedError(StoreError):
    """The sink was stopped while a batch's insert still failed; the batch's offsets stay uncommitted."""


def query_error_from_message(message: str) -> QueryError:
    """Builds a :class:`QueryError` from an engine error text (``Code: 60. DB::Exception: ... (UNKNOWN_TABLE)``).

    Whatever precedes ``Code:`` (a driver's prefix) is dropped, so the message reads as
    ClickHouse's own.
    """
    idx = message.find("Code: ")
    text = message[idx:].strip() if idx >= 0 else message.strip()
    code_match = _CODE_RE.search(text)
    names = _NAME_RE.findall(text)
    code = int(code_match.group(1)) if code_match else None
    if code == 164:
        err: QueryError = ReadOnlyError(text)
        return err
    return QueryError(text, code=code, name=names[-1] if names else None)
