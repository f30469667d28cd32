"""Settings of the stream processors (the Faust app and its ClickHouse sink).

Precedence: argument, then environment (``AGENTGYM_*``), then default. Documented
in ``docs/configuration.md``.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from agentgym.producers.settings import SharedSettings, parse_choices

__all__ = ["ProcessorSettings"]

KNOWN_PROCESSORS = ("sink", "labeller", "datasets", "experiments", "otel")
FAUST_STORE_SCHEMES = ("memory", "rocksdb")


class ProcessorSettings(SharedSettings):
    """Read by the Faust app (`agentgym processors run`, or `faust -A agentgym.processors.app
    worker`); run more workers with the same `AGENTGYM_APP_ID` to share the partitions. The
    workers consume from and produce to the Kafka of `AGENTGYM_BOOTSTRAP_SERVERS`."""

    app_id: str = Field("agentgym", description="Faust application id, the prefix of its consumer groups and changelog topics")
    sink_batch_size: int = Field(5000, ge=1, description="the ClickHouse sink inserts at most this many rows per batch (>= 1)")
    sink_batch_ms: int = Field(250, ge=1, description="... and flushes a batch at least this often, in milliseconds (>= 1)")
    sink_group: str = Field("agentgym-clickhouse-sink", description="consumer group of the ClickHouse sink")
    http_port: int = Field(
        8123, ge=0, le=65535,
        description="embedded store only: port of the read-only ClickHouse HTTP interface the sink serves to other "
        "processes (`0`: off)")
    worker_id: str | None = Field(
        None, description="this worker's stable identity in its consumer groups (static membership: a restarted worker "
        "takes its old place without a rebalance); unique among live workers",
        json_schema_extra={"doc_default": "unset (`<host>-<app id>-<n>`, n the lowest slot free on this host)"})
    http_max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="read-only HTTP interface: the largest request body accepted, bytes "
        "(larger: HTTP 413)")
    http_max_decompressed_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="read-only HTTP interface: the largest request body once gzip/deflate is "
        "undone, bytes (larger: HTTP 413)")
    http_max_execution_time_s: float = Field(
        30.0, gt=0, description="read-only HTTP interface: the longest a query may run, seconds (a client may lower it)")
    http_max_memory_usage: int = Field(
        1024 * 1024 * 1024, ge=1024 * 1024, description="read-only HTTP interface: the most memory a query may use, "
        "bytes (a client may lower it)")
    processors: str = Field(
        "sink,labeller,experiments,datasets,otel",
        description="comma-separated processors this worker runs: `sink`, `labeller`, `datasets` (the dataset builder), "
        "`experiments`, `otel` (assembles OTLP GenAI spans into experiences)")
    faust_store: str = Field(
        "memory://", description="Faust table store (`memory://` or `rocksdb://`); tables are changelog-backed and "
        "restored from Kafka on restart either way")
    faust_datadir: str | None = Field(
        None, description="Faust's data directory", json_schema_extra={"doc_default": "unset (`<AGENTGYM_HOME>/faust`)"})
    faust_web_port: int = Field(6066, ge=1, le=65535, description="the Faust worker's web port")
    faust_web_bind: str = Field(
        "127.0.0.1", description="the interface the Faust worker's web server binds; `0.0.0.0` for every interface")

    @field_validator("processors")
    @classmethod
    def _known_processors(cls, value: str) -> str:
        parse_choices(value, variable="AGENTGYM_PROCESSORS", allowed=KNOWN_PROCESSORS, what="processor")
        return value

    @field_validator("faust_store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if not sep or scheme not in FAUST_STORE_SCHEMES:
            raise ValueError(
                f"AGENTGYM_FAUST_STORE {value!r}: allowed: {[f'{s}://' for s in FAUST_STORE_SCHEMES]} (Faust table stores)")
        return value

    @property
    def enabled(self) -> set[str]:
        names = {p.strip() for p in self.processors.split(",") if p.strip()}
        unknown = names - set(KNOWN_PROCESSORS)
        if unknown:
            raise ValueError(f"AGENTGYM_PROCESSORS: unknown processor(s) {sorted(unknown)}; known: {list(KNOWN_PROCESSORS)}")
        return names
