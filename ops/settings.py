"""Settings of the local stack (``agentgym kafka ...``, ``agentgym demo``).

Precedence: explicit argument, then environment (``AGENTGYM_*``), then default.
Every variable is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agentgym.producers.settings import SharedSettings, default_home

__all__ = ["StackSettings", "default_home"]


class StackSettings(SharedSettings):
    """Read by `agentgym kafka start|stop|status` and `agentgym demo` (the broker resolved from
    Maven Central and run on loopback), and by the test fixtures. `compose.yaml` uses
    `AGENTGYM_KAFKA_PORT` for the host port of its broker and `AGENTGYM_KAFKA_HEAP` for the
    broker's heap, with the same defaults; the other variables concern only the local broker."""

    kafka_version: str = Field(
        "4.1.1", description="Apache Kafka version resolved from Maven Central (`compose.yaml` runs the same version's image)")
    kafka_port: int = Field(
        9092, ge=1, le=65535,
        description="the broker's client port on 127.0.0.1 (1-65535); the local bootstrap servers are `127.0.0.1:<port>`")
    kafka_controller_port: int | None = Field(
        None, ge=1, le=65535, description="KRaft controller port",
        json_schema_extra={"doc_default": "unset (`AGENTGYM_KAFKA_PORT` + 1)"})
    kafka_data_dir: Path | None = Field(
        None, description="log and metadata directory of the broker",
        json_schema_extra={"doc_default": "unset (`<AGENTGYM_HOME>/kafka-data`)"})
    kafka_heap: str = Field(
        "512m", pattern=r"^[1-9][0-9]*[kKmMgG]?$", description="the broker JVM's heap (`-Xmx`): a number of bytes, or "
        "of kilobytes, megabytes or gigabytes with `k`, `m` or `g`")
    kafka_jar_cache: Path | None = Field(
        None, description="where the resolved broker jars are kept",
        json_schema_extra={"doc_default": "unset (`~/.cache/agentgym/kafka`)"})

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
    def local_bootstrap_servers(self) -> str:
        """Where the local broker serves clients (``127.0.0.1:<kafka_port>``)."""
        return f"127.0.0.1:{self.kafka_port}"
