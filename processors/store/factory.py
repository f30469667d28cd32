"""Opening a store from its URL: the backend is chosen by the scheme.

* ``chdb:///path/to/dir``: the embedded engine (:class:`~agentgym.processors.store.chdb_store.ChdbStore`).
* ``http://host:8123`` / ``https://host:8443``: a ClickHouse server
  (:class:`~agentgym.processors.store.server_store.ServerStore`).
"""

from __future__ import annotations

from pathlib import Path

from agentgym.processors.store.base import Store
from agentgym.processors.store.chdb_store import ChdbStore, directory_owner, parse_chdb_url, read_port_file
from agentgym.processors.store.exceptions import StoreConfigError, StoreError, StoreLockedError
from agentgym.processors.store.server_store import ServerStore
from agentgym.processors.store.settings import StoreSettings

__all__ = ["open_store", "open_reader"]


def _resolve(url: str | None, database: str | None, settings: StoreSettings | None) -> tuple[str, str, StoreSettings]:
    s = settings or StoreSettings()
    return url or s.clickhouse_url, database or s.clickhouse_database, s


def open_store(
    url: str | None = None,
    *,
    database: str | None = None,
    settings: StoreSettings | None = None,
    create_database: bool = True,
) -> Store:
    """Opens the store at ``url`` (default: ``AGENTGYM_CLICKHOUSE_URL``).

    Args:
        url: ``chdb:///dir``, ``http://host:port`` or ``https://host:port``.
        database: the database of Agent Gym's tables (default: ``AGENTGYM_CLICKHOUSE_DATABASE``).
        settings: the settings object to take defaults and credentials from.
        create_database: create the database if missing.

    Raises:
        StoreConfigError: an unknown scheme or a malformed URL.
        StoreLockedError: another process owns the chdb directory.
        StoreError: the store could not be opened or reached.
    """
    url, db, s = _resolve(url, database, settings)
    if url.startswith("chdb://"):
        return ChdbStore(parse_chdb_url(url), db, create_database=create_database)
    if url.startswith(("http://", "https://")):
        password = s.clickhouse_password.get_secret_value() if s.clickhouse_password is not None else None
        return ServerStore(url, db, user=s.clickhouse_user, password=password, create_database=create_database)
    raise StoreConfigError(
        f"unknown store URL {url!r}: expected chdb:///path/to/dir (embedded) or http(s)://host:port (a ClickHouse server)"
    )


def open_reader(
    url: str | None = None,
    *,
    database: str | None = None,
    settings: StoreSettings | None = None,
) -> Store:
    """Opens the store for reading, wherever its data can be read from.

    For a ``chdb://`` directory that another process owns (chdb allows one process per
    directory), this connects to the owner's read-only HTTP interface, whose port the
    owner records in ``<dir>/http.port``. Otherwise it opens the store itself, without
    creating anything.

    Raises:
        StoreLockedError: the owner serves no read interface, or it does not answer.
        StoreError: no data at the URL, or the store could not be opened.
    """
    url, db, s = _resolve(url, database, settings)
    if not url.startswith("chdb://"):
        return open_store(url, database=db, settings=s, create_database=False)

    path = parse_chdb_url(url)
    if not path.is_dir():
        raise StoreError(f"no ClickHouse data at {path}: nothing has written there yet (the sink creates it)")
    for _attempt in range(2):
        owner = directory_owner(path)
        if owner is not None:
            return _owner_reader(path, owner, db)
        try:
            store = ChdbStore(path, db, create_database=False)
        except StoreLockedError:
            continue  # taken between the check and the open: read through the new owner
        return store
    return _owner_reader(path, directory_owner(path) or -1, db)


def _owner_reader(path: Path, owner: int, database: str) -> Store:
    """A reader on the read-only HTTP interface of the process that owns ``path``."""
    who = f"process {owner}" if owner > 0 else "another process"
    port = read_port_file(path)
    if port is None:
        raise StoreLockedError(
            f"the embedded ClickHouse directory {path} is in use by {who}, which serves no read-only HTTP "
            f"interface (no {path / 'http.port'}); stop it, or run it with its read interface on",
            path,
            owner if owner > 0 else None,
        )
    try:
        return ServerStore(f"http://127.0.0.1:{port}", database, create_database=False, connect_timeout_s=3.0)
    except StoreError as exc:
        raise StoreLockedError(
            f"the embedded ClickHouse directory {path} is in use by {who}, and its read-only HTTP interface "
            f"(port {port}, from {path / 'http.port'}) does not answer: {exc}",
            path,
            owner if owner > 0 else None,
        ) from exc
