"""Versioned schema migrations of the store.

Migrations are the files ``processors/store/sql/NNNN_name.sql``, applied in version
order; ``{db}`` in them stands for the store's database. Applied versions are recorded
in ``<db>.schema_migrations`` with a checksum of their SQL, so applying again is a
no-op, and an applied migration whose file was edited afterwards is an error (change
the schema with a new migration instead).

Every statement is idempotent (``IF NOT EXISTS``), so a migration interrupted half way
is simply applied again, and two processes migrating at once (server backend) do no harm.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from agentgym.processors.store.base import Store, quote_identifier
from agentgym.processors.store.exceptions import MigrationError, QueryError
from agentgym.processors.store.settings import DATABASE_NAME_RE
from agentgym.processors.store.sqltext import split_statements

__all__ = [
    "Migration",
    "SQL_DIR",
    "load_migrations",
    "applied_migrations",
    "pending_migrations",
    "migrate",
    "refresh_rollups",
    "ROLLUP_VIEWS",
]

SQL_DIR = Path(__file__).resolve().parent / "sql"
_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# refreshable materialized views that recompute rollups
ROLLUP_VIEWS = ("mv_rollup_hourly",)


@dataclass(frozen=True)
class Migration:
    """One migration file.

    Attributes:
        version: its number (the file's 4-digit prefix).
        name: the rest of the file name.
        sql: the file's text, ``{db}`` not yet substituted.
        checksum: sha256 of ``sql`` (hex).
    """

    version: int
    name: str
    sql: str
    checksum: str

    def statements(self, database: str) -> list[str]:
        """The statements with ``{db}`` replaced by ``database``."""
        return [s.replace("{db}", database) for s in split_statements(self.sql)]


def load_migrations(directory: Path = SQL_DIR) -> list[Migration]:
    """Reads the migration files of ``directory``, in version order.

    Raises:
        MigrationError: a badly named file or two files with one version.
    """
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if m is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake_name.sql")
        version = int(m.group("version"))
        if version in migrations:
            raise MigrationError(f"{path}: version {version} is used twice")
        sql = path.read_text(encoding="utf-8")
        migrations[version] = Migration(version, m.group("name"), sql, hashlib.sha256(sql.encode()).hexdigest())
    return [migrations[v] for v in sorted(migrations)]


def _check_database(database: str) -> str:
    if not DATABASE_NAME_RE.match(database):
        raise MigrationError(f"database name {database!r} must be a plain identifier")
    return database


def _ensure_migrations_table(store: Store, database: str) -> None:
    store.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ("
        " version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )


def applied_migrations(store: Store, database: str | None = None) -> dict[int, str]:
    """The applied migration versions and their checksums (empty when none were applied)."""
    db = _check_database(database or store.database)
    try:
        res = store.query(
            f"SELECT version, argMax(checksum, applied_at) FROM {db}.schema_migrations GROUP BY version ORDER BY version"
        )
    except QueryError as exc:
        if exc.code in (60, 81):  # UNKNOWN_TABLE, UNKNOWN_DATABASE: nothing applied yet
            return {}
        raise
    return {int(v): str(c) for v, c in res.rows}


def pending_migrations(store: Store, database: str | None = None, directory: Path = SQL_DIR) -> list[Migration]:
    """The migrations not applied yet, in order.

    Raises:
        MigrationError: an applied migration's file changed since it was applied.
    """
    applied = applied_migrations(store, database)
    pending: list[Migration] = []
    for mig in load_migrations(directory):
        checksum = applied.get(mig.version)
        if checksum is None:
            pending.append(mig)
        elif checksum != mig.checksum:
            raise MigrationError(
                f"migration {mig.version:04d}_{mig.name}.sql changed after it was applied "
                f"(checksum {checksum[:12]} recorded, {mig.checksum[:12]} now); change the schema with a new migration"
            )
    return pending


def migrate(store: Store, database: str | None = None, directory: Path = SQL_DIR) -> list[int]:
    """Applies the pending migrations; a no-op when all are applied.

    Args:
        store: where to apply them.
        database: the database to create the tables in (default: the store's).
        directory: where the migration files are.

    Returns:
        The versions applied by this call, in order.

    Raises:
        MigrationError: a statement failed (the message names the migration and the
            statement) or an applied migration was edited.
    """
    db = _check_database(database or store.database)
    _ensure_migrations_table(store, db)
    done: list[int] = []
    for mig in pending_migrations(store, db, directory):
        for i, statement in enumerate(mig.statements(db), 1):
            try:
                store.command(statement)
            except QueryError as exc:
                first_line = next((ln for ln in statement.splitlines() if ln and not ln.startswith("--")), "")
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name}.sql, statement {i} ({first_line.strip()[:80]}): {exc}"
                ) from exc
        store.command(
            f"INSERT INTO {db}.schema_migrations (version, name, checksum) VALUES "
            "({version:UInt32}, {name:String}, {checksum:String})",
            {"version": mig.version, "name": mig.name, "checksum": mig.checksum},
        )
        done.append(mig.version)
    return done


def refresh_rollups(store: Store, database: str | None = None) -> None:
    """Recomputes the rollups now and waits for it (they also refresh every minute on their own).

    Raises:
        QueryError: the refresh failed (the engine's message says why).
    """
    db = _check_database(database or store.database)
    for view in ROLLUP_VIEWS:
        store.command(f"SYSTEM REFRESH VIEW {db}.{view}")
        store.command(f"SYSTEM WAIT VIEW {db}.{view}")
