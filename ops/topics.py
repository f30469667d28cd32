"""Creating Agent Gym's topics through the Kafka admin client."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.topics import TOPICS, TopicSpec

__all__ = ["ensure_topics"]


def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec] | None = None, timeout_s: float = 30.0) -> list[str]:
    """Creates the topics that do not exist yet (partitions and compaction from DESIGN.md).

    Returns the names created. Existing topics are left as they are.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    specs = list(specs or TOPICS.values())
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=s.config()) for s in specs if s.name not in existing]
    created = []
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout_s)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    return created
