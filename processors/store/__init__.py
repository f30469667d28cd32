"""The ClickHouse store: one small interface, an embedded (chdb) and a server backend.

>>> from agentgym.processors.store import open_store, migrate
>>> store = open_store("chdb:///tmp/agentgym-clickhouse")   # or http://host:8123
>>> migrate(store)                                          # versioned, idempotent
>>> store.query("SELECT count() FROM v_runs").scalar()

Heavier pieces are imported on first use: :mod:`agentgym.processors.store.rows` (pyarrow),
:mod:`agentgym.processors.store.http_server`, and the backends (chdb, clickhouse-connect).
"""

from __future__ import annotations

import importlib
from typing import Any

from agentgym.processors.store.base import QueryResult, RawResult, Store
from agentgym.processors.store.exceptions import (
    MigrationError,
    QueryError,
    ReadOnlyError,
    RowConversionError,
    StoreClosedError,
    StoreConfigError,
    StoreError,
    StoreLockedError,
)
from agentgym.processors.store.factory import open_reader, open_store
from agentgym.processors.store.migrations import migrate, refresh_rollups
from agentgym.processors.store.settings import StoreSettings

__all__ = [
    "Store",
    "QueryResult",
    "RawResult",
    "StoreSettings",
    "open_store",
    "open_reader",
    "migrate",
    "refresh_rollups",
    "StoreError",
    "StoreConfigError",
    "StoreLockedError",
    "StoreClosedError",
    "QueryError",
    "ReadOnlyError",
    "MigrationError",
    "RowConversionError",
    # imported on first use:
    "ChdbStore",
    "ServerStore",
    "ROW_BUILDERS",
    "TABLES",
    "to_arrow",
    "insert_records",
    "serve_readonly",
]

_LAZY = {
    "ChdbStore": "agentgym.processors.store.chdb_store",
    "ServerStore": "agentgym.processors.store.server_store",
    "ROW_BUILDERS": "agentgym.processors.store.rows",
    "TABLES": "agentgym.processors.store.rows",
    "to_arrow": "agentgym.processors.store.rows",
    "insert_records": "agentgym.processors.store.rows",
    "serve_readonly": "agentgym.processors.store.http_server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
