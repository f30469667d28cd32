"""Settings of the local stack (``agentgym kafka ...``, ``agentgym demo``).

Precedence: explicit argument, then environment (``AGENTGYM_*``), then default.
Every variable is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["StackSettings", "default_home"]


def default_home() -> Path:
    return Path.home() / ".agentgym"


class StackSettings(BaseSettings):
    """Where and how the local Kafka broker runs."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="state and caches of the local stack")
    kafka_version: str = Field("4.1.1", description="Apache Kafka version resolved from Maven Central")
    kafka_port: int = Field(9092, ge=1, le=65535, description="the broker's client port on 127.0.0.1")
    kafka_controller_port: int | None = Field(None, description="KRaft controller port (default: kafka_port + 1)")
    kafka_data_dir: Path | None = Field(None, description="log and metadata directory (default: <home>/kafka-data)")
    kafka_heap: str = Field("512m", description="the broker JVM's -Xmx")
    kafka_jar_cache: Path | None = Field(None, description="where resolved jars are kept (default: ~/.cache/agentgym/kafka)")

    @property
    def data_dir(self) -> Path:
        return self.kafka_data_dir or self.home / "kafka-data"

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1

    @property
    def jar_cache(self) -> Path:
        return self.kafka_jar_cache or Path.home() / ".cache" / "agentgym" / "kafka"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"
