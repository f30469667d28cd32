"""Following one of the gateway's compacted topics (keys, plans, usage) in every replica.

A :class:`CompactedFollower` runs one background thread with its own confluent-kafka
consumer that assigns itself every partition from the beginning (no group, no
commits), so each process holds the latest record of every key and sees a change
within one poll (``poll_timeout_s``) plus the broker's fetch wait of it being
written: well under a second on a healthy broker. Reads are a dict lookup with no
lock: single dict operations are atomic under the GIL, and :meth:`records` copies.

That second is a window in which a record another process wrote (and Kafka acknowledged)
is not here yet. :meth:`sync` closes it for a reader that must see every record written
before its request (a lookup that missed): it asks the broker for the partitions' end
offsets, then waits until the follower has read up to them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from agentgym.producers.kafka_security import client_security
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["CompactedFollower"]

log = logging.getLogger("agentgym.gateway.follower")


class CompactedFollower:
    """The latest record per key of a compacted Agent Gym topic, live.

    Args:
        bootstrap_servers: Kafka.
        base: the topic's base name in :data:`agentgym.schemas.topics.TOPICS` (``api-keys``).
        poll_timeout_s: how long one poll waits.
        on_record: called as ``on_record(key, record or None)`` in the follower's thread.
    """

    def __init__(self, bootstrap_servers: str, base: str, *, poll_timeout_s: float = 0.1,
                 on_record: Callable[[str, dict[str, Any] | None], None] | None = None,
                 security: dict[str, Any] | None = None) -> None:
        spec = TOPICS[base]
        self.topic = spec.name
        self.record_name = spec.record
        self.key_field = spec.key_field
        self._codec = AvroCodec()
        self._poll_timeout_s = poll_timeout_s
        self._on_record = on_record
        self._conf = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"agentgym-gateway-{base}-{os.urandom(6).hex()}",  # never joins: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "logger": logging.getLogger("agentgym.kafka"),
            **client_security(security),  # default: AGENTGYM_KAFKA_* from the environment
        }
        self._records: dict[str, dict[str, Any]] = {}
        self._positions: dict[int, int] = {}  # partition -> next offset to read (records before it are applied)
        self._progress = threading.Condition()
        self._ends: Consumer | None = None  # asks the broker for end offsets (sync); not the polling thread's consumer
        self._ends_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"records": 0, "decode_errors": 0}
        self.last_error: str | None = None

    def get(self, key: str) -> dict[str, Any] | None:
        """The latest record of ``key`` (None: none, or deleted)."""
        return self._records.get(key)

    def records(self) -> dict[str, dict[str, Any]]:
        """Every key's latest record (a copy of the mapping; do not mutate the records)."""
        return dict(self._records)

    @property
    def ready(self) -> bool:
        """Whether the topic was read to its end once."""
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        return self._ready.wait(timeout_s)

    def sync(self, timeout_s: float = 10.0) -> bool:
        """Waits until this follower holds every record the topic had when called (its end offsets then).

        Returns False when that did not happen within ``timeout_s`` (the broker did not answer, or the
        follower is behind or stopped); the records are then only as fresh as :meth:`get` sees them.
        """
        deadline = time.monotonic() + timeout_s
        if not self.wait_ready(timeout_s):
            return False
        try:
            with self._ends_lock:
                if self._ends is None:
                    self._ends = Consumer({**self._conf, "group.id": f"{self._conf['group.id']}-ends"})
                ends = {p: int(self._ends.get_watermark_offsets(TopicPartition(self.topic, p),
                                                                 timeout=max(0.1, deadline - time.monotonic()))[1])
                        for p in self._partitions()}
        except Exception as exc:  # no answer from the broker in time
            self.last_error = str(exc)
            return False
        with self._progress:
            return self._progress.wait_for(lambda: all(self._positions.get(p, 0) >= end for p, end in ends.items()),
                                           timeout=max(0.0, deadline - time.monotonic()))

    def _partitions(self) -> list[int]:
        with self._progress:
            return list(self._positions)

    def start(self) -> "CompactedFollower":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"agentgym-{self.topic}", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._ends_lock:
            if self._ends is not None:
                self._ends.close()
                self._ends = None

    def _assign(self) -> tuple[Consumer, set[int]] | None:
        while not self._stop.is_set():
            consumer = Consumer(self._conf)
            try:
                t = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                if t is not None and t.error is None and t.partitions:
                    parts = set(t.partitions)
                    consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
                    return consumer, parts
                self.last_error = f"topic {self.topic} is not available yet ({t.error if t is not None else 'no metadata'})"
            except Exception as exc:  # the broker is not there yet: retry
                self.last_error = str(exc)
            consumer.close()
            self._stop.wait(1.0)
        return None

    def _run(self) -> None:
        got = self._assign()
        if got is None:
            return
        consumer, pending = got
        with self._progress:
            self._positions.update({p: 0 for p in pending})
        try:
            while not self._stop.is_set():
                msg = consumer.poll(self._poll_timeout_s)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:  # its offset is the partition's end (past any compacted gap)
                        self._advance(msg.partition(), msg.offset())
                        pending.discard(msg.partition())
                        if not pending:
                            self._ready.set()
                    else:
                        self.last_error = err.str()
                    continue
                self._apply(msg.key(), msg.value())
                self._advance(msg.partition(), msg.offset(), after=1)
        except Exception:  # a replica must not lose its keys silently: log, and readyz says so
            log.exception("gateway: follower of %s stopped by an error", self.topic)
            self._ready.clear()
        finally:
            consumer.close()

    def _advance(self, partition: int | None, offset: int | None, after: int = 0) -> None:
        """Notes that the records of ``partition`` before ``offset + after`` are applied."""
        if partition is None or offset is None or offset < 0:
            return
        with self._progress:
            if offset + after > self._positions.get(partition, 0):
                self._positions[partition] = offset + after
                self._progress.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a tombstone deletes the key
            if key and self._records.pop(key.decode(errors="replace"), None) is not None:
                self._notify(key.decode(errors="replace"), None)
            return
        try:
            record = self._codec.decode(value, expected=self.record_name).record
        except DecodeError as exc:
            self.stats["decode_errors"] += 1
            self.last_error = str(exc)
            log.warning("gateway: undecodable %s record skipped: %s", self.record_name, exc)
            return
        self.stats["records"] += 1
        k = str(record[self.key_field])
        self._records[k] = record
        self._notify(k, record)

    def _notify(self, key: str, record: dict[str, Any] | None) -> None:
        if self._on_record is not None:
            try:
                self._on_record(key, record)
            except Exception:
                log.exception("gateway: listener of %s failed", self.topic)
