"""Settings of the stream processors (the Faust app and its ClickHouse sink).

Precedence: argument, then environment (``AGENTGYM_*``), then default. Documented
in ``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentgym.processors.store.settings import default_home

__all__ = ["ProcessorSettings"]

KNOWN_PROCESSORS = ("sink", "labeller", "datasets", "experiments")


class ProcessorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="state of the local stack")
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    app_id: str = Field("agentgym", description="Faust application id (consumer group prefix)")
    sink_batch_size: int = Field(5000, ge=1, description="the sink inserts at most this many rows per batch")
    sink_batch_ms: int = Field(250, ge=1, description="... and at least this often (milliseconds)")
    sink_group: str = Field("agentgym-clickhouse-sink", description="consumer group of the ClickHouse sink")
    http_port: int = Field(8123, ge=0, le=65535, description="embedded mode: the read-only ClickHouse HTTP interface (0: off)")
    processors: str = Field("sink,labeller,experiments,datasets", description="comma-separated processors this worker runs")
    faust_store: str = Field("memory://", description="Faust table store; tables are changelog-backed either way")
    faust_datadir: str | None = Field(None, description="Faust's data directory (default: <AGENTGYM_HOME>/faust)")
    faust_web_port: int = Field(6066, ge=1, le=65535, description="the Faust worker's web port")
    faust_web_bind: str = Field("127.0.0.1", description="interface the Faust web server binds (0.0.0.0: every interface)")

    @property
    def enabled(self) -> set[str]:
        names = {p.strip() for p in self.processors.split(",") if p.strip()}
        unknown = names - set(KNOWN_PROCESSORS)
        if unknown:
            raise ValueError(f"AGENTGYM_PROCESSORS: unknown processor(s) {sorted(unknown)}; known: {list(KNOWN_PROCESSORS)}")
        return names
