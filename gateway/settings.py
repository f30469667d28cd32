"""Settings of the HTTP gateway (``agentgym gateway run``).

Precedence: argument, then environment, then default. The gateway's own variables have
the ``AGENTGYM_GATEWAY_`` prefix; the shared ones (:class:`agentgym.producers.settings.SharedSettings`)
keep their names, and the broker address may also be given as
``AGENTGYM_GATEWAY_BOOTSTRAP_SERVERS`` (which wins over ``AGENTGYM_BOOTSTRAP_SERVERS``).
Documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from agentgym.gateway.tls import server_ssl_context
from agentgym.producers.settings import SharedSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(SharedSettings):
    """Read by `agentgym gateway run` (and for Kafka by `agentgym keys` and `agentgym tenants`): the
    HTTP API, the front door for everything but the Python SDK. Its own variables have a longer
    prefix than the shared ones; the status a limit answers with is given in brackets."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_GATEWAY_")

    # the one shared field the gateway reads under two names: its own (which wins) and the shared one
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("bootstrap_servers", "AGENTGYM_GATEWAY_BOOTSTRAP_SERVERS", "AGENTGYM_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers of the gateway; `AGENTGYM_GATEWAY_BOOTSTRAP_SERVERS` wins over the shared "
        "`AGENTGYM_BOOTSTRAP_SERVERS`",
    )
    host: str = Field("127.0.0.1", description="the interface to listen on")
    port: int = Field(8080, ge=0, le=65535, description="the port to listen on (0-65535)")
    workers: int = Field(1, ge=1, le=256, description="worker processes sharing the port (`SO_REUSEPORT`) (1-256)")
    spool_dir: Path | None = Field(
        None,
        description="the producer's durable spool while Kafka is away (one `worker-<i>` sub-directory per worker)",
        json_schema_extra={"doc_default": "`<AGENTGYM_HOME>/gateway-spool`"},
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest request body on the wire (413) (>= 1024)")
    max_decompressed_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="largest body after gzip/deflate (413) (>= 1024)")
    max_json_depth: int = Field(32, ge=4, le=512, description="deepest JSON nesting (400) (4-512)")
    max_events: int = Field(1000, ge=1, description="events per batch (413) (>= 1)")
    max_event_bytes: int = Field(
        512 * 1024, ge=1024, le=1_000_000,
        description="largest encoded event, below the broker's `message.max.bytes` (413) (1024 to 1000000)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a client that has begun a request head must finish it within this many seconds, "
        "else the connection is closed (slow-header clients) (> 0)")
    body_timeout_s: float = Field(10.0, gt=0, description="a client must send its whole body within this many seconds (408) (> 0)")
    rate_per_s: float = Field(
        200.0, gt=0, description="token bucket per API key: requests per second, unless the tenant's plan sets one (> 0)")
    burst: float = Field(400.0, ge=1, description="token bucket per API key: burst, unless the tenant's plan sets one (>= 1)")
    mask_secret: SecretStr = Field(
        SecretStr(""),
        description="secret from which each tenant's masking hash key is derived (HMAC-SHA256(secret, tenant)), for "
        "tenants whose masking policy asks for hashed placeholders (`<EMAIL:3f9a1c2b>`); unset: plain placeholders "
        "(docs/privacy.md). Give every replica the same one",
        json_schema_extra={"doc_default": "unset"},
    )
    default_plan: Literal["free", "pro", "business", "enterprise"] = Field(
        "free", description="plan of a tenant without a plan record (`agentgym tenants set` gives one)")
    usage_report_s: float = Field(1.0, gt=0, description="how often a worker publishes its usage counts, seconds (> 0)")
    access_log_sample: float = Field(0.0, ge=0, le=1, description="fraction of requests written to the access log (0-1)")
    otlp_max_attribute_bytes: int = Field(
        128 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="`POST /v1/traces`: a span with an attribute value (string, bytes, array item) longer than this is "
        "rejected, counted in the answer's partial success (1 KiB to 16 MiB)")
    analytics_max_execution_time_s: float = Field(
        10.0, gt=0, le=600, description="an analytics query is stopped after this many seconds (422) (0-600)")
    analytics_max_memory_usage: int = Field(
        512 * 1024 * 1024, ge=1024 * 1024, description="most memory one analytics query may take, bytes (422) (>= 1 MiB)")
    analytics_max_result_rows: int = Field(
        10_000, ge=1, le=1_000_000, description="most rows one analytics query may answer, also the largest `limit` (1-1000000)")
    analytics_max_range_days: int = Field(
        400, ge=1, description="widest from..to window of an analytics query, days (400) (>= 1)")
    max_streams: int = Field(
        100, ge=1, le=10000, description="open live experiment streams (Server-Sent Events) per process (503) (1-10000)")
    tls_cert: Path | None = Field(
        None,
        description="serve https: the server's certificate, a PEM file (intermediate certificates after it); needs "
        "`AGENTGYM_GATEWAY_TLS_KEY`. Unset: plain http (behind a TLS-terminating balancer). See docs/privacy.md",
        json_schema_extra={"doc_default": "unset (http)"},
    )
    tls_key: Path | None = Field(
        None, description="the unencrypted PEM private key of `AGENTGYM_GATEWAY_TLS_CERT`",
        json_schema_extra={"doc_default": "unset"},
    )
    tls_client_ca: Path | None = Field(
        None,
        description="with TLS: require every client to present a certificate signed by this CA (PEM; mutual TLS), "
        "on top of its API key",
        json_schema_extra={"doc_default": "unset (no client certificate asked)"},
    )

    @model_validator(mode="after")
    def _spool_under_home(self) -> "GatewaySettings":
        if self.spool_dir is None:
            self.spool_dir = Path(self.under_home("gateway-spool"))
        self.ssl_context()  # a missing, unreadable or mismatched TLS file fails here, naming its variable
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context from ``tls_cert``/``tls_key``/``tls_client_ca``; None: plain http."""
        return server_ssl_context(self.tls_cert, self.tls_key, self.tls_client_ca)

    @property
    def scheme(self) -> str:
        """``https`` with a certificate, else ``http``."""
        return "https" if self.tls_cert is not None else "http"

    @property
    def spool_root(self) -> Path:
        """The spool directory: ``spool_dir``, or ``gateway-spool`` under ``home``."""
        return self.spool_dir if self.spool_dir is not None else Path(self.under_home("gateway-spool"))
