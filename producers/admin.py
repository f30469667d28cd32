"""Creating Kafka topics through the admin client: Agent Gym's own and processors' internal ones."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from typing import Any

from agentgym.producers.kafka_security import client_security
from agentgym.producers.exceptions import TopicUnavailableError
from agentgym.schemas.topics import TOPICS, TopicSpec, replication_for

__all__ = ["ensure_topics", "create_topics", "cluster_replication", "set_topic_retention", "EVENT_TOPICS"]


def create_topics(
    bootstrap_servers: str,
    wanted: Mapping[str, tuple[int, Mapping[str, str]]],
    timeout_s: float = 30.0,
    wait: bool = True,
    replication_factor: int | None = None,
    *,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Creates the topics of ``wanted`` (name -> (partitions, config)) that do not exist yet.

    Replication comes from the cluster's size unless ``replication_factor`` is given:
    :func:`agentgym.schemas.topics.replication_for` of the brokers in the metadata (3
    replicas and ``min.insync.replicas=2`` on three brokers or more, one replica on one).
    A topic's own ``min.insync.replicas`` in ``wanted`` wins.

    With ``wait``, returns only once the broker's metadata lists every partition of every
    topic: a Faust worker that subscribes right after creating a topic can otherwise get
    a first assignment without it (seen with Kafka 4.1), leaving an internal topic
    unconsumed or a table's changelog missing until the next rebalance. Returns the
    names created; a topic another process created meanwhile is fine.

    Raises:
        TopicUnavailableError: the topics did not appear in the metadata within ``timeout_s``.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    import logging

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "logger": logging.getLogger("agentgym.kafka"),
                         **client_security(security)})
    md = admin.list_topics(timeout=timeout_s)
    existing = set(md.topics)
    rf, min_isr = replication_for(len(md.brokers)) if replication_factor is None else (
        replication_factor, replication_for(replication_factor)[1])
    new = [NewTopic(name, num_partitions=n, replication_factor=rf,
                    config={"min.insync.replicas": str(min_isr), **conf})
           for name, (n, conf) in wanted.items() if name not in existing]
    created = []
    for name, fut in (admin.create_topics(new, operation_timeout=timeout_s).items() if new else ()):
        try:
            fut.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if not wait:
        return created
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        missing = [name for name, (n, _) in wanted.items()
                   if name not in topics or topics[name].error is not None or len(topics[name].partitions) < n]
        if not missing:
            return created
        if time.monotonic() > deadline:
            raise TopicUnavailableError(f"topics {missing} did not appear in the metadata within {timeout_s:.0f}s")
        time.sleep(0.1)


def cluster_replication(bootstrap_servers: str, timeout_s: float = 30.0, *,
                        security: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` for the cluster at ``bootstrap_servers``, from the
    brokers its metadata lists now (:func:`agentgym.schemas.topics.replication_for`).

    Raises:
        TopicUnavailableError: no broker answered within ``timeout_s``.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    import logging

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "logger": logging.getLogger("agentgym.kafka"),
                         **client_security(security)})
    try:
        brokers = len(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException as exc:
        raise TopicUnavailableError(f"no Kafka broker at {bootstrap_servers} answered within {timeout_s:.0f}s: "
                                    f"{exc.args[0].str() if exc.args else exc}") from None
    return replication_for(brokers)


def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec] | None = None, timeout_s: float = 30.0, *,
                  security: Mapping[str, Any] | None = None) -> list[str]:
    """Creates Agent Gym's topics that do not exist yet (partitions and compaction from DESIGN.md).

    Returns the names created. Existing topics are left as they are.
    """
    specs = list(specs or TOPICS.values())
    return create_topics(bootstrap_servers, {s.name: (s.partitions, s.config()) for s in specs}, timeout_s, wait=False,
                         security=security)


EVENT_TOPICS = ("experiences", "feedback", "outcomes", "otel-spans")
"""The topics that carry tenants' raw events (their ``retention.ms`` is the platform's event retention)."""


def set_topic_retention(bootstrap_servers: str, retention_ms: int, bases: Iterable[str] = EVENT_TOPICS,
                        timeout_s: float = 30.0, *, security: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Sets ``retention.ms`` of existing topics (the event topics by default); returns topic -> the value set.

    Kafka's retention is per topic, and the topics are shared by tenants: one value applies to
    every tenant's events (docs/privacy.md, Retention). Other settings of the topics are left
    as they are (an incremental alter). A topic that does not exist yet is skipped.
    """
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    import logging

    if retention_ms < 1:
        raise ValueError(f"retention_ms must be >= 1, got {retention_ms}")
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "logger": logging.getLogger("agentgym.kafka"),
                         **client_security(security)})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    names = [TOPICS[b].name for b in bases if TOPICS[b].name in existing]
    resources = [ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", str(retention_ms), incremental_operation=AlterConfigOpType.SET)]) for name in names]
    for fut in (admin.incremental_alter_configs(resources).values() if resources else ()):
        fut.result(timeout_s)
    return {name: retention_ms for name in names}
