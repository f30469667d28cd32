"""Settings of the ClickHouse store.

Where the store is (``AGENTGYM_CLICKHOUSE_URL``) is a shared setting
(:class:`agentgym.producers.settings.SharedSettings`); the database and the server's
credentials are the store's own. Precedence: explicit argument, then environment
(``AGENTGYM_*``), then default. Documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from agentgym.producers.settings import SharedSettings, default_home

__all__ = ["StoreSettings", "default_home", "DATABASE_NAME_RE"]

DATABASE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StoreSettings(SharedSettings):
    """Read by the processors (the ClickHouse sink writes, the others read) and by the trainer's
    dataset readers. `compose.yaml` points them at its server with
    `AGENTGYM_CLICKHOUSE_URL=http://clickhouse:8123` and the user, password and database of the
    clickhouse service."""

    clickhouse_database: str = Field(
        default="agentgym", description="the database holding Agent Gym's tables (a plain identifier)")
    clickhouse_user: str | None = Field(
        default=None, description="server user (server URLs only)",
        json_schema_extra={"doc_default": "unset (the URL's user, else `default`)"},
    )
    clickhouse_password: SecretStr | None = Field(
        default=None, description="server password (server URLs only); kept as a secret",
        json_schema_extra={"doc_default": "unset (the URL's password, else empty)"},
    )

    @field_validator("clickhouse_database")
    @classmethod
    def _database_is_identifier(cls, value: str) -> str:
        if not DATABASE_NAME_RE.match(value):
            raise ValueError(
                f"AGENTGYM_CLICKHOUSE_DATABASE {value!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
        return value
