"""Settings of the ClickHouse store.

Precedence: explicit argument, then environment (``AGENTGYM_*``), then default.

=================================  =========================================================  =======================================
variable                           meaning                                                    default
=================================  =========================================================  =======================================
``AGENTGYM_HOME``                  state of the local stack                                   ``~/.agentgym``
``AGENTGYM_CLICKHOUSE_URL``        the store: ``chdb:///dir`` (embedded engine, data in        ``chdb://<AGENTGYM_HOME>/clickhouse``
                                   ``dir``) or ``http(s)://host:port`` (a ClickHouse server)
``AGENTGYM_CLICKHOUSE_DATABASE``   the database holding Agent Gym's tables                    ``agentgym``
``AGENTGYM_CLICKHOUSE_USER``       server user (server URLs only)                             the URL's user, else ``default``
``AGENTGYM_CLICKHOUSE_PASSWORD``   server password (server URLs only)                         the URL's password, else empty
=================================  =========================================================  =======================================
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["StoreSettings", "default_home", "DATABASE_NAME_RE"]

DATABASE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def default_home() -> Path:
    """``~/.agentgym``: where the local stack keeps its state."""
    return Path.home() / ".agentgym"


class StoreSettings(BaseSettings):
    """Where the ClickHouse store lives and how to reach it."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="state of the local stack")
    clickhouse_url: str = Field(
        default="",
        description="chdb:///<dir> (embedded, default <home>/clickhouse) or http(s)://host:port (a server)",
    )
    clickhouse_database: str = Field(default="agentgym", description="the database holding Agent Gym's tables")
    clickhouse_user: str | None = Field(default=None, description="server user (default: the URL's, else 'default')")
    clickhouse_password: SecretStr | None = Field(default=None, description="server password (default: the URL's, else empty)")

    @field_validator("clickhouse_database")
    @classmethod
    def _database_is_identifier(cls, value: str) -> str:
        if not DATABASE_NAME_RE.match(value):
            raise ValueError(f"clickhouse_database {value!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @model_validator(mode="after")
    def _default_url(self) -> "StoreSettings":
        if not self.clickhouse_url:
            self.clickhouse_url = f"chdb://{self.home.expanduser().resolve() / 'clickhouse'}"
        return self
