"""Producing and reading the pipeline's Avro records (datasets, models, experiments).

These records are few and must not be lost, so every send waits for the broker's
acknowledgement (idempotent producer, ``acks=all``) and raises :class:`DeliveryError`
when it does not come. This is the project's one acknowledged producer: the model
registry, the dataset announcements and the experiment admin all send through it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agentgym.producers.kafka_security import client_security
from agentgym.producers.exceptions import DeliveryError, ReadTimeoutError, TopicUnavailableError
from agentgym.producers.ratelog import RateLimitedLog
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["RecordProducer", "read_topic", "watermarks"]

log = logging.getLogger("agentgym.producers.records")
_unreachable = RateLimitedLog(log)


def _error_cb(bootstrap_servers: str, timeout_s: float) -> Callable[[Any], None]:
    """librdkafka's error callback: one line (at most every 30 s) when the broker cannot be reached."""

    def on_error(err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._SSL:  # e.g. a broker certificate no CA of AGENTGYM_KAFKA_SSL_CA signed
            _unreachable.log(logging.ERROR, f"tls {bootstrap_servers}",
                             "agentgym: TLS with Kafka at %s failed: %s (AGENTGYM_KAFKA_SSL_CA must name the CA that "
                             "signed the broker's certificate)", bootstrap_servers, err.str())
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            _unreachable.log(logging.WARNING, bootstrap_servers,
                             "agentgym: Kafka at %s is unreachable; records wait for it up to %.0fs, then this "
                             "operation fails with DeliveryError and nothing is written", bootstrap_servers, timeout_s)

    return on_error


class RecordProducer:
    """Sends Agent Gym records to their topics and waits until Kafka holds them.

    Args:
        bootstrap_servers: Kafka.
        timeout_s: how long a send may wait for the acknowledgement, in seconds.
        linger_ms: how long librdkafka batches before sending (default 5 ms; 0 for
            one-record writes such as experiment configurations).
        security: librdkafka security settings (default: from ``AGENTGYM_KAFKA_*``; see
            :func:`agentgym.producers.kafka_security.client_security`).
    """

    def __init__(self, bootstrap_servers: str, timeout_s: float = 30.0, linger_ms: int = 5, *,
                 security: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka import Producer

        self.codec = AvroCodec()
        self.timeout_s = timeout_s
        self._producer = Producer({
            "bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "acks": "all",
            "linger.ms": linger_ms, "logger": logging.getLogger("agentgym.kafka"),
            "error_cb": _error_cb(bootstrap_servers, timeout_s), **client_security(security),
        })

    def send(self, base: str, record: dict[str, Any]) -> None:
        """Encodes ``record`` as the record type of topic ``base`` and sends it, keyed by the topic's key field.

        Raises:
            SchemaValidationError: the record does not fit its schema (naming the field).
            DeliveryError: Kafka did not acknowledge it within ``timeout_s``, or refused it.
        """
        spec = TOPICS[base]
        value = self.codec.encode(spec.record, record, spec.name)
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        self._producer.produce(spec.name, value, str(record[spec.key_field]).encode(), on_delivery=delivered)
        if self._producer.flush(self.timeout_s) > 0:
            raise DeliveryError(f"Kafka did not acknowledge the {spec.record} record within {self.timeout_s}s")
        if errors:
            raise DeliveryError(f"Kafka refused the {spec.record} record: {errors[0]}")

    def send_many(self, base: str, records: Iterable[dict[str, Any]]) -> int:
        """Like :meth:`send` for many records of one topic, waiting once for all acknowledgements.

        Returns:
            The number of records sent.

        Raises:
            SchemaValidationError: a record does not fit its schema (nothing was sent then).
            DeliveryError: Kafka did not acknowledge them all within ``timeout_s``, or refused one.
        """
        spec = TOPICS[base]
        encoded = [(self.codec.encode(spec.record, r, spec.name), str(r[spec.key_field]).encode()) for r in records]
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for value, key in encoded:
            while True:
                try:
                    self._producer.produce(spec.name, value, key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.1)
        if self._producer.flush(self.timeout_s) > 0:
            raise DeliveryError(f"Kafka did not acknowledge {len(encoded)} {spec.record} records within {self.timeout_s}s")
        if errors:
            raise DeliveryError(f"Kafka refused {len(errors)} {spec.record} record(s): {errors[0]}")
        return len(encoded)

    def close(self) -> None:
        self._producer.flush(self.timeout_s)

    def __enter__(self) -> "RecordProducer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_topic(bootstrap_servers: str, base: str, match: Callable[[dict[str, Any]], bool] | None = None,
               timeout_s: float = 30.0, *, security: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every decodable record of topic ``base`` from the beginning to its current end, in offset order per partition.

    Used for the small compacted topics (the model registry, experiments) whose whole
    content is their state. Undecodable messages are skipped with a warning (the sink
    dead-letters them).

    Raises:
        TopicUnavailableError: the topic is not in the broker's metadata.
        ReadTimeoutError: the topic could not be read to its end within ``timeout_s``.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    spec = TOPICS[base]
    codec = AvroCodec()
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers, "group.id": f"agentgym-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "logger": logging.getLogger("agentgym.kafka"),
        **client_security(security),
    })
    out: list[dict[str, Any]] = []
    try:
        meta = consumer.list_topics(spec.name, timeout=timeout_s).topics.get(spec.name)
        if meta is None or meta.error is not None:
            raise TopicUnavailableError(f"topic {spec.name} is not available: {getattr(meta, 'error', 'missing')}")
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = watermarks(consumer, spec.name, p, timeout_s)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(spec.name, p, OFFSET_BEGINNING) for p in ends])
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise ReadTimeoutError(f"timed out reading {spec.name} to its end")
            for m in _poll(consumer):
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
                try:
                    record = codec.decode(m.value(), spec.record).record
                except DecodeError as exc:
                    log.warning("skipping an undecodable %s message at %d@%d: %s", spec.record, m.partition(), m.offset(), exc)
                    continue
                if match is None or match(record):
                    out.append(record)
    finally:
        consumer.close()
    return out


def watermarks(consumer: Any, topic: str, partition: int, timeout_s: float = 30.0) -> tuple[int, int]:
    """(low, high) offsets of a partition, retrying while its leader is not known yet (a new topic)."""
    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=max(1.0, deadline - time.monotonic()))
            return int(low), int(high)
        except KafkaException as exc:
            if not exc.args[0].retriable() and "leader" not in exc.args[0].str().lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _poll(consumer: Any) -> Iterable[Any]:
    for m in consumer.consume(500, 0.5):
        if m.error() is None:
            yield m
