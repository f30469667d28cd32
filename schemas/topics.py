"""Kafka topics of Agent Gym: names, keys, record types, partitions and compaction.

Topic names are lowercase, hyphenated and carry the record's major version; build
them only through :func:`topic_name`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentgym.schemas.exceptions import TopicNameError, UnknownTopicError

__all__ = ["TopicSpec", "TOPICS", "topic_name", "spec_for", "replication_for", "MAX_REPLICATION"]

PREFIX = "gym"

MAX_REPLICATION = 3
"""Replicas per partition on a cluster of three brokers or more: one broker can fail with no write refused."""


def replication_for(brokers: int) -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` of Agent Gym's topics on a cluster of ``brokers``.

    Three replicas when there are three brokers or more, else one per broker; with three,
    an ``acks=all`` write needs two of them (one broker may be down, none may be lost
    when another fails later). Below three, every replica must acknowledge.

    >>> replication_for(1), replication_for(2), replication_for(3), replication_for(5)
    ((1, 1), (2, 1), (3, 2), (3, 2))
    """
    if brokers < 1:
        raise ValueError(f"brokers must be >= 1, got {brokers}")
    rf = min(MAX_REPLICATION, brokers)
    return rf, 2 if rf >= 3 else 1


def topic_name(base: str, major_version: int = 1, prefix: str = PREFIX) -> str:
    """``topic_name("experiences") == "gym-experiences-v1"``."""
    if not base or not all(c.islower() or c.isdigit() or c == "-" for c in base):
        raise TopicNameError(f"topic base {base!r} must be lowercase letters, digits and hyphens")
    return f"{prefix}-{base}-v{major_version}"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it carries and how it is laid out."""

    base: str
    record: str
    key_field: str
    partitions: int
    table: str  # the ClickHouse table the sink materialises it into ("": none)
    compacted: bool = False
    retention_ms: int = 7 * 24 * 3600 * 1000
    major_version: int = 1

    @property
    def name(self) -> str:
        return topic_name(self.base, self.major_version)

    def config(self) -> dict[str, str]:
        """Topic-level configuration for the admin client."""
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


# experiences, feedback and outcomes share key and partition count (co-partitioned),
# so everything about one trace lands in the same partition of each.
_TRACE_PARTITIONS = 6

TOPICS: dict[str, TopicSpec] = {
    s.base: s
    for s in (
        TopicSpec("experiences", "Experience", "trace_id", _TRACE_PARTITIONS, "experiences"),
        TopicSpec("feedback", "Feedback", "trace_id", _TRACE_PARTITIONS, "feedback"),
        TopicSpec("outcomes", "Outcome", "trace_id", _TRACE_PARTITIONS, "outcomes"),
        TopicSpec("experiments", "ExperimentConfig", "experiment_id", 1, "experiments", compacted=True),
        TopicSpec("experiment-stats", "StatsSnapshot", "experiment_id", 3, "stats_snapshots"),
        TopicSpec("decisions", "Decision", "experiment_id", 1, "decisions"),
        TopicSpec("datasets", "DatasetReady", "dataset_id", 1, "datasets"),
        TopicSpec("models", "ModelVersion", "model_version", 1, "model_versions", compacted=True),
        TopicSpec("deadletter", "DeadLetter", "key", 3, "dead_letters", retention_ms=30 * 24 * 3600 * 1000),
        TopicSpec("drift", "DriftAlert", "model_version", 1, "drift_alerts"),
        TopicSpec("scenario-lineage", "ScenarioLineage", "dataset_id", 1, "synthetic_scenarios"),
        # OTLP GenAI spans mapped by the gateway, assembled into experiences by the otel processor;
        # co-partitioned with the trace topics, not materialised (the experiences are)
        TopicSpec("otel-spans", "OtelSpans", "trace_id", _TRACE_PARTITIONS, ""),
        # admin actions and analytics queries through the API; ClickHouse's audit_log keeps them for good
        TopicSpec("audit", "AuditEvent", "tenant_id", 1, "audit_log", retention_ms=30 * 24 * 3600 * 1000),
        # the gateway's own state, followed by every replica; not materialised (table ""):
        # key hashes stay out of ClickHouse
        TopicSpec("api-keys", "ApiKey", "key_id", 1, "", compacted=True),
        TopicSpec("tenants", "TenantPlan", "tenant_id", 1, "", compacted=True),
        TopicSpec("tenant-usage", "TenantUsage", "usage_key", 1, "", compacted=True),
        # privacy: one record per deleted user (requested, then applied by the store's owner); every reader of
        # the event topics skips what it names (agentgym.processors.deletions); not materialised: the sink applies it
        TopicSpec("deletions", "Deletion", "subject", 1, "", compacted=True),
    )
}


def spec_for(topic: str) -> TopicSpec:
    """The spec of a full topic name (``gym-outcomes-v1``)."""
    for s in TOPICS.values():
        if s.name == topic:
            return s
    raise UnknownTopicError(f"unknown topic {topic!r}; known: {', '.join(s.name for s in TOPICS.values())}")
