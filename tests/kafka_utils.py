"""Helpers for integration tests: read back what landed in a topic."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from agentgym.schemas.codec import AvroCodec


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0, match: Any = None) -> list[Any]:
    """Reads ``topic`` from the beginning until ``expected`` messages (passing ``match``) arrived."""
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    c.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            # in batches: a shared topic's history can be tens of thousands of messages
            got.extend(m for m in c.consume(500, 0.5) if not m.error() and (match is None or match(m)))
        # a short extra read, to see duplicates that arrive after the expected count
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            got.extend(m for m in c.consume(500, 0.2) if not m.error() and (match is None or match(m)))
    finally:
        c.close()
    return got


class TopicTail:
    """Follows a topic from its beginning: each :meth:`read` returns the messages (passing ``match``) appended
    since the previous read, up to the end every partition had when the read began.

    "Caught up" is the consumer's position reaching the high watermarks, not a quiet interval: a shared
    topic's history (every earlier test's records) is read once, and a read on a loaded machine is
    slower, never short."""

    def __init__(self, bootstrap: str, topic: str, match: Any = None) -> None:
        self.topic, self.match = topic, match
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)]
        self.consumer.assign(self.tps)

    def read(self, timeout_s: float = 60.0) -> list[Any]:
        c = self.consumer
        marks = {tp.partition: c.get_watermark_offsets(TopicPartition(self.topic, tp.partition), timeout=10) for tp in self.tps}
        ends = {p: high for p, (low, high) in marks.items() if high > low}  # partitions with something to read
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while True:  # a position below zero: nothing consumed from that partition yet
            behind = [tp.partition for tp in c.position([TopicPartition(self.topic, p) for p in ends]) if tp.offset < ends[tp.partition]]
            if not behind:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: partitions {behind} not read to their end in {timeout_s}s")
            got.extend(m for m in c.consume(500, 0.2) if not m.error() and (self.match is None or self.match(m)))

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "TopicTail":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_all(messages: list[Any], codec: AvroCodec | None = None) -> list[dict[str, Any]]:
    codec = codec or AvroCodec()
    return [codec.decode(m.value()).record for m in messages]


def drain_sink(sink: Any, until: Any, idle_rounds: int = 60) -> None:
    """Runs a ClickHouseSink batch by batch until `until()` holds.

    The topics are shared with every other test, so a fresh consumer group first reads all their history: the
    sink is given up on only after `idle_rounds` batches in a row found nothing to read (it has caught up and
    the condition still does not hold), never after a fixed number of batches."""
    idle = 0
    while idle < idle_rounds:
        idle = idle + 1 if sink.process_batch() == 0 else 0
        if until():
            return
    raise AssertionError(f"the sink caught up and the condition still does not hold: {sink.stats}")
