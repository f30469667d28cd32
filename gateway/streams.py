"""Live experiment streams (Server-Sent Events) for ops: statistics snapshots and decisions.

One :class:`LiveStreams` per process holds one consumer thread (started by the first
subscriber) that follows ``gym-experiment-stats-v1`` and ``gym-decisions-v1`` from their
ends (no group, no commits) and hands each record to the subscribers of its
``experiment_id`` through their event loop. It is bounded: at most ``max_streams``
subscribers per process (more get 503 with ``Retry-After``), and each subscriber's queue
holds at most ``QUEUE`` events: a client too slow to take them is disconnected rather
than allowed to grow the process's memory. A client that goes away is noticed within a
second (its transport closes) and unsubscribed.

The stream starts with ``event: ready`` once the consumer is positioned at the topics'
ends: every record written after that is delivered. Then ``event: stats`` /
``event: decision`` with the record as JSON, and a ``: keep-alive`` comment every
``KEEPALIVE_S`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from agentgym.gateway.exceptions import ApiError
from agentgym.producers.kafka_security import client_security
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.exceptions import DecodeError
from agentgym.schemas.topics import TOPICS

__all__ = ["LiveStreams", "Subscription", "stream_response", "QUEUE", "KEEPALIVE_S"]

log = logging.getLogger("agentgym.gateway.streams")

QUEUE = 1000
"""Events a subscriber may have waiting; more and the stream is closed (the client reconnects)."""
KEEPALIVE_S = 15.0
_EVENTS = {TOPICS["experiment-stats"].name: ("stats", "StatsSnapshot"), TOPICS["decisions"].name: ("decision", "Decision")}


@dataclass(eq=False)
class Subscription:
    """One open stream: its experiment, its loop and its queue (None in the queue: closed by the server)."""

    experiment_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE + 1))
    overflowed: bool = False

    def offer(self, item: tuple[str, dict[str, Any]] | None) -> None:
        """In the subscriber's loop: enqueue, or end the stream when the queue is full."""
        if self.overflowed:
            return
        if item is not None and self.queue.qsize() >= QUEUE:
            self.overflowed = True
            item = None
        self.queue.put_nowait(item)


class LiveStreams:
    """The process's fan-out of the stats and decisions topics to SSE subscribers.

    Args:
        bootstrap_servers: Kafka.
        max_streams: open streams allowed in this process.
    """

    def __init__(self, bootstrap_servers: str, max_streams: int) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.max_streams = max_streams
        self._subs: dict[str, set[Subscription]] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def open_streams(self) -> int:
        return self._count

    def subscribe(self, experiment_id: str, loop: asyncio.AbstractEventLoop) -> Subscription:
        """A new subscription, or 503 when ``max_streams`` are open."""
        with self._lock:
            if self._count >= self.max_streams:
                raise ApiError(503, "too_many_streams", "stream",
                               f"{self.max_streams} streams are open in this process; retry later", headers={"Retry-After": "5"})
            sub = Subscription(experiment_id, loop)
            self._subs.setdefault(experiment_id, set()).add(sub)
            self._count += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agentgym-gateway-streams", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.experiment_id)
            if subs is not None and sub in subs:
                subs.discard(sub)
                self._count -= 1
                if not subs:
                    del self._subs[sub.experiment_id]

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether the consumer reached the topics' ends within ``timeout_s``."""
        return await asyncio.to_thread(self._ready.wait, timeout_s)

    def end_all(self) -> None:
        """Ends every open stream (the server is shutting down: clients reconnect elsewhere)."""
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for s in subs:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                s.loop.call_soon_threadsafe(s.offer, None)

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.end_all()

    # -- the consumer thread -----------------------------------------------------------
    def _assign(self) -> Consumer | None:
        while not self._stop.is_set():
            consumer = Consumer({
                "bootstrap.servers": self.bootstrap_servers, "group.id": f"agentgym-gateway-streams-{os.urandom(6).hex()}",
                "enable.auto.commit": False, "auto.offset.reset": "latest", "fetch.wait.max.ms": 100,
                "logger": logging.getLogger("agentgym.kafka"), **client_security(None),  # AGENTGYM_KAFKA_*
            })
            try:
                parts = []
                for topic in _EVENTS:
                    meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
                    if meta is None or meta.error is not None or not meta.partitions:
                        raise LookupError(f"topic {topic} is not available ({getattr(meta, 'error', 'no metadata')})")
                    for p in meta.partitions:  # from the current end: what is written after `ready`
                        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                        parts.append(TopicPartition(topic, p, high))
                consumer.assign(parts)
                return consumer
            except Exception as exc:  # the broker or a topic is not there yet: retry
                self.last_error = str(exc)
                consumer.close()
                self._stop.wait(1.0)
        return None

    def _run(self) -> None:
        consumer = self._assign()
        if consumer is None:
            return
        self._ready.set()
        codec = AvroCodec()
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                kind, record_name = _EVENTS[msg.topic()]
                key = (msg.key() or b"").decode(errors="replace")
                with self._lock:
                    subs = list(self._subs.get(key, ()))
                if not subs:
                    continue
                try:
                    record = codec.decode(msg.value(), expected=record_name).record
                except DecodeError as exc:  # the sink dead-letters it
                    self.last_error = str(exc)
                    continue
                for s in subs:
                    if record.get("experiment_id") == s.experiment_id:
                        with contextlib.suppress(RuntimeError):
                            s.loop.call_soon_threadsafe(s.offer, (kind, record))
        except Exception:
            log.exception("gateway: the live stream consumer stopped")
        finally:
            self._ready.clear()
            consumer.close()
            if not self._stop.is_set():
                with self._lock:
                    self._thread = None  # the next subscriber starts a new consumer


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def stream_response(request: web.Request, streams: LiveStreams, experiment_id: str) -> web.StreamResponse:
    """Serves one experiment's stream until the client goes away (or is too slow, or the server stops)."""
    sub = streams.subscribe(experiment_id, asyncio.get_running_loop())
    try:
        if not await streams.wait_ready(10.0):
            raise ApiError(503, "unavailable", "stream", f"the live topics cannot be read ({streams.last_error or 'no answer'})",
                           headers={"Retry-After": "5"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        await resp.write(_sse("ready", {"experiment_id": experiment_id}))
        last_write = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # the client went away while we wrote
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), 1.0)
                except TimeoutError:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break
                    if time.monotonic() - last_write >= KEEPALIVE_S:
                        await resp.write(b": keep-alive\n\n")
                        last_write = time.monotonic()
                    continue
                if item is None:
                    break
                await resp.write(_sse(*item))
                last_write = time.monotonic()
        return resp
    finally:
        streams.unsubscribe(sub)
