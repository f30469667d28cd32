"""Following the live experiment configurations from the compacted ``gym-experiments-v1`` topic.

An :class:`ExperimentFollower` runs one background thread with its own
confluent-kafka consumer: it assigns itself every partition of the topic from the
beginning (no consumer group membership, no commits), so every process holds the
latest configuration of every experiment and sees each change within a poll
(~0.2 s) of its being written. Reads (:meth:`get`, :meth:`assign`) are a dict
lookup under no lock (the dict is replaced, never mutated), so they cost the agent
nothing.

Only processes that use experiments start one (``AgentGym.assign`` or
``AgentGym.follow_experiments``); the processor and the CLI use it too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from agentgym.producers.assignment import Assignment, assign
from agentgym.producers.kafka_security import client_security
from agentgym.producers.exceptions import TopicUnavailableError
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["ExperimentFollower"]

log = logging.getLogger("agentgym.experiments")
Listener = Callable[[str, dict[str, Any] | None], None]


class ExperimentFollower:
    """Keeps the latest configuration of every experiment, live.

    Args:
        bootstrap_servers: Kafka.
        topic: the experiments topic (default ``gym-experiments-v1``).
        kafka_config: extra librdkafka consumer settings.
        poll_timeout_s: how long one poll waits (the worst-case extra delay of a change).
        tenant_id: only this tenant's experiments (None: all).
        security: librdkafka security settings (default: from ``AGENTGYM_KAFKA_*``).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str | None = None,
        kafka_config: dict[str, Any] | None = None,
        poll_timeout_s: float = 0.2,
        tenant_id: str | None = None,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic or TOPICS["experiments"].name
        self.tenant_id = tenant_id
        self._codec = AvroCodec()
        self._poll_timeout_s = poll_timeout_s
        self._conf = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"agentgym-follower-{os.urandom(6).hex()}",  # never joins: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "logger": logging.getLogger("agentgym.kafka"),
            **client_security(security),
            **(kafka_config or {}),
        }
        self._configs: dict[str, dict[str, Any]] = {}
        self._listeners: list[Listener] = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"records": 0, "decode_errors": 0}
        self.last_error: str | None = None

    # -- reads (any thread) -------------------------------------------------------
    def get(self, experiment_id: str) -> dict[str, Any] | None:
        """The latest ``ExperimentConfig`` record of ``experiment_id`` (None: unknown)."""
        return self._configs.get(experiment_id)

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every experiment's latest record (a snapshot; do not mutate the records)."""
        return dict(self._configs)

    def assign(self, experiment_id: str, unit_id: str) -> Assignment | None:
        """The unit's assignment under the latest configuration (None: unknown, draft or stopped)."""
        config = self._configs.get(experiment_id)
        return assign(config, unit_id) if config is not None else None

    def on_change(self, listener: Listener) -> None:
        """Calls ``listener(experiment_id, record or None)`` in the follower's thread after each change."""
        self._listeners.append(listener)

    @property
    def ready(self) -> bool:
        """Whether the topic has been read to its end once (the configurations are current)."""
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """Waits until the topic was read to its end once; returns whether it was."""
        return self._ready.wait(timeout_s)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> "ExperimentFollower":
        """Starts the background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agentgym-experiments", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops the thread and closes the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> "ExperimentFollower":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------
    def _partitions(self, consumer: Consumer) -> list[int]:
        md = consumer.list_topics(self.topic, timeout=5)
        t = md.topics.get(self.topic)
        if t is None or t.error is not None or not t.partitions:
            raise TopicUnavailableError(f"topic {self.topic} is not available yet ({t.error if t is not None else 'no metadata'})")
        return sorted(t.partitions)

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            while not self._stop.is_set():
                try:
                    consumer = Consumer(self._conf)
                    parts = self._partitions(consumer)
                    consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
                    break
                except Exception as exc:  # the broker or the topic is not there yet: retry
                    self.last_error = str(exc)
                    if consumer is not None:
                        consumer.close()
                        consumer = None
                    self._stop.wait(1.0)
            if consumer is None:
                return
            pending = set(parts)
            while not self._stop.is_set():
                msg = consumer.poll(self._poll_timeout_s)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        if not pending:
                            self._ready.set()
                    else:
                        self.last_error = err.str()
                    continue
                self._apply(msg.key(), msg.value())
        except Exception:  # the agent must never die of this thread
            log.exception("agentgym: experiment follower stopped by an error")
        finally:
            if consumer is not None:
                consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a tombstone deletes the experiment
            if key:
                experiment_id = key.decode(errors="replace")
                configs = dict(self._configs)
                if configs.pop(experiment_id, None) is not None:
                    self._configs = configs
                    self._notify(experiment_id, None)
            return
        try:
            record = self._codec.decode(value, expected="ExperimentConfig").record
        except DecodeError as exc:
            self.stats["decode_errors"] += 1
            self.last_error = str(exc)
            log.warning("agentgym: undecodable experiment configuration skipped: %s", exc)
            return
        if self.tenant_id is not None and record.get("tenant_id") != self.tenant_id:
            return
        self.stats["records"] += 1
        configs = dict(self._configs)
        configs[record["experiment_id"]] = record
        self._configs = configs  # one reference swap: readers never see a half-updated dict
        self._notify(record["experiment_id"], record)

    def _notify(self, experiment_id: str, record: dict[str, Any] | None) -> None:
        for listener in self._listeners:
            try:
                listener(experiment_id, record)
            except Exception:
                log.exception("agentgym: experiment listener failed")

