"""Settings of the HTTP gateway (``agentgym gateway run``).

Precedence: argument, then environment, then default. Every variable has the
``AGENTGYM_GATEWAY_`` prefix, except the broker address, which the gateway shares
with the rest of the stack (``AGENTGYM_BOOTSTRAP_SERVERS``; the prefixed name wins).

| variable | meaning | default |
|---|---|---|
| ``AGENTGYM_GATEWAY_BOOTSTRAP_SERVERS`` / ``AGENTGYM_BOOTSTRAP_SERVERS`` | Kafka | ``127.0.0.1:9092`` |
| ``AGENTGYM_GATEWAY_HOST`` / ``_PORT`` | where to listen | ``127.0.0.1`` / ``8080`` |
| ``AGENTGYM_GATEWAY_WORKERS`` | worker processes sharing the port (``SO_REUSEPORT``) | ``1`` |
| ``AGENTGYM_GATEWAY_SPOOL_DIR`` | the producer's durable spool (one sub-directory per worker) | ``~/.agentgym/gateway-spool`` |
| ``AGENTGYM_GATEWAY_MAX_BODY_BYTES`` | largest request body on the wire (413) | ``1048576`` |
| ``AGENTGYM_GATEWAY_MAX_DECOMPRESSED_BYTES`` | largest body after gzip/deflate (413) | ``8388608`` |
| ``AGENTGYM_GATEWAY_MAX_JSON_DEPTH`` | deepest JSON nesting (400) | ``32`` |
| ``AGENTGYM_GATEWAY_MAX_EVENTS`` | events per batch (413) | ``1000`` |
| ``AGENTGYM_GATEWAY_MAX_EVENT_BYTES`` | largest encoded event, below the broker's ``message.max.bytes`` (413) | ``524288`` |
| ``AGENTGYM_GATEWAY_BODY_TIMEOUT_S`` | a client must send its whole body within this (408) | ``10`` |
| ``AGENTGYM_GATEWAY_RATE_PER_S`` / ``_BURST`` | token bucket per API key, unless the tenant's plan sets one | ``200`` / ``400`` |
| ``AGENTGYM_GATEWAY_DEFAULT_PLAN`` | plan of a tenant without a plan record | ``free`` |
| ``AGENTGYM_GATEWAY_USAGE_REPORT_S`` | how often a worker publishes its usage counts | ``1.0`` |
| ``AGENTGYM_GATEWAY_ACCESS_LOG_SAMPLE`` | fraction of requests written to the access log | ``0.0`` |
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseSettings):
    """One typed settings object for a gateway process (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_GATEWAY_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("bootstrap_servers", "AGENTGYM_GATEWAY_BOOTSTRAP_SERVERS", "AGENTGYM_BOOTSTRAP_SERVERS"))
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    spool_dir: Path = Field(default_factory=lambda: Path.home() / ".agentgym" / "gateway-spool")
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_decompressed_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(32, ge=4, le=512)
    max_events: int = Field(1000, ge=1)
    max_event_bytes: int = Field(512 * 1024, ge=1024, le=1_000_000)
    body_timeout_s: float = Field(10.0, gt=0)
    rate_per_s: float = Field(200.0, gt=0)
    burst: float = Field(400.0, ge=1)
    default_plan: str = "free"
    usage_report_s: float = Field(1.0, gt=0)
    access_log_sample: float = Field(0.0, ge=0, le=1)
