"""A producer flush that drains: no offset is committed before what the events produced is sent.

Faust commits a source offset only after ``app.producer.flush()``, so that what the
processed events produced (``send_soon``: every table's changelog write, the labeller's
outcomes and commands) is in Kafka first: at-least-once. But Faust's ``ProducerBuffer.flush``
(faust-streaming 0.15) gives up as soon as one message takes more than 0.1 s to leave the
buffer, and returns with messages still in it; the commit then goes ahead. On a loaded
machine that is common, and a worker killed right after such a commit loses those messages
for good while their events count as processed: a trace's join state or outcome, a unit in
an experiment's statistics (seen in ``tests/chaos/test_multi_worker.py`` on 2 cores).

:func:`drain_on_flush` replaces the flush of one app's buffer by one that waits until the
buffer is empty (or the producer stops), so the commit waits too. A broker that is away
holds the commit back, which is what at-least-once requires; a stopping worker is bounded
by :mod:`agentgym.processors.shutdown`'s deadline.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

__all__ = ["drain_on_flush", "install", "drain"]

log = logging.getLogger("agentgym.worker")

_WAIT_S = 1.0  # one wait for the next message to leave; the loop keeps waiting until the buffer is empty


async def drain(buffer: Any) -> None:
    """Waits until ``buffer`` (a Faust ``ProducerBuffer`` set up by :func:`drain_on_flush`) has handed
    every message to the producer, the one being handed over included."""
    waited = 0
    while buffer.size or getattr(buffer, "agentgym_in_flight", 0):
        if buffer.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        buffer.message_sent.clear()
        try:
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=_WAIT_S)
        except asyncio.TimeoutError:
            waited += 1
            if waited % 10 == 0:
                log.warning("worker: %d message(s) still waiting to be sent after %d s; offsets are not committed "
                            "before they are", buffer.size, waited)


def drain_on_flush(app: Any) -> None:
    """Makes ``app.producer.buffer.flush`` drain the buffer (see the module's docstring)."""
    install(app.producer.buffer)


def install(buffer: Any) -> None:
    """Gives one Faust ``ProducerBuffer`` (not started yet) the draining flush."""
    buffer.agentgym_in_flight = 0  # taken off the queue, not yet handed to the producer
    send_pending = buffer._send_pending

    async def _send_pending(fut: Any) -> None:
        buffer.agentgym_in_flight += 1
        try:
            await send_pending(fut)
        finally:
            buffer.agentgym_in_flight -= 1

    async def flush(self: Any) -> None:
        await drain(self)

    buffer._send_pending = _send_pending
    buffer.flush = types.MethodType(flush, buffer)
