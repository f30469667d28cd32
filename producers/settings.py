"""Settings of the producer SDK.

Precedence: argument to :class:`agentgym.producers.AgentGym`, then environment, then default.

| variable | meaning | default |
|---|---|---|
| ``AGENTGYM_BOOTSTRAP_SERVERS`` | Kafka bootstrap servers | ``127.0.0.1:9092`` |
| ``AGENTGYM_TENANT_ID`` | tenant every event is recorded under | ``default`` |
| ``AGENTGYM_AGENT_ID`` | this agent's id | ``agent`` |
| ``AGENTGYM_SPOOL_DIR`` | local durable spool for undeliverable events | ``~/.agentgym/spool`` |
| ``AGENTGYM_DELIVERY_TIMEOUT_S`` | how long Kafka may be away before an event is spooled | ``30`` |
| ``AGENTGYM_SPOOL_REPLAY_INTERVAL_S`` | how often the spool is retried | ``5`` |
| ``AGENTGYM_SCHEMA_REGISTRY_URL`` | Confluent-compatible Schema Registry; enables the Confluent wire format | unset |
| ``AGENTGYM_COMPRESSION`` | ``lz4``, ``zstd``, ``snappy``, ``gzip`` or ``none`` | ``lz4`` |
| ``AGENTGYM_LINGER_MS`` | batching delay | ``20`` |
| ``AGENTGYM_FOLLOW_EXPERIMENTS`` | start following the experiments topic when the client starts (else on the first ``assign``) | ``false`` |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ProducerSettings"]


class ProducerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    tenant_id: str = Field("default", min_length=1)
    agent_id: str = Field("agent", min_length=1)
    spool_dir: Path = Field(default_factory=lambda: Path.home() / ".agentgym" / "spool")
    delivery_timeout_s: float = Field(30.0, gt=0)
    spool_replay_interval_s: float = Field(5.0, gt=0)
    schema_registry_url: str | None = None
    compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = "lz4"
    linger_ms: int = Field(20, ge=0)
    kafka_config: dict[str, Any] = Field(default_factory=dict, description="extra librdkafka producer settings")
    follow_experiments: bool = Field(False, description="follow the experiments topic from the start (else on the first assign)")
