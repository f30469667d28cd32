"""A worker stops within a deadline whatever the broker's state, and says so in one line.

Faust's shutdown commits offsets and flushes its producer; with the broker gone those
steps retry until their request timeouts (minutes), and aiokafka logs every retry. A
SIGTERMed worker must exit promptly: :func:`install` registers a service whose
``on_stop`` (one of the first steps of a shutdown) starts a timer; when the worker has
not exited ``deadline_s`` later, one line says what could not be done and the process
exits. Nothing is lost by that: offsets are committed only for processed events (the
sink's only after their insert), so whatever could not be committed is read again on
restart, and ClickHouse deduplicates by ``event_id``.

It also bounds the Kafka clients' logs in the worker: lines from ``aiokafka`` and from
librdkafka (``agentgym.kafka``) repeat at most once per 30 s per kind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

from agentgym.producers.ratelog import RateLimitFilter

__all__ = ["install", "DEADLINE_S", "bound_kafka_logs"]

log = logging.getLogger("agentgym.worker")
DEADLINE_S = 8.0
"""Seconds between the start of a shutdown and the forced exit."""

_KAFKA_LOGGERS = ("aiokafka", "agentgym.kafka", "kafka")


class _KafkaOnly(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._limit = RateLimitFilter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_KAFKA_LOGGERS):
            return True
        # key on librdkafka's facility (FAIL, ...) or on aiokafka's message template, not on variable arguments
        if record.name.startswith("agentgym") and isinstance(record.args, tuple) and record.args:
            kind = record.args[0]
        else:
            kind = record.msg
        return self._limit.allow(f"{record.name}|{record.levelno}|{kind}")


def bound_kafka_logs() -> None:
    """Adds the rate limit to every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _KafkaOnly) for f in handler.filters):
            handler.addFilter(_KafkaOnly())


def _force_exit(bootstrap: str) -> None:
    log.error("worker: shutdown did not finish within %.0fs (Kafka at %s unreachable?): exiting now. Offsets not "
              "committed are read again on restart and deduplicated in ClickHouse: nothing is lost.", DEADLINE_S, bootstrap)
    for h in logging.getLogger().handlers:
        try:
            h.flush()
        except Exception:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Deadline:
    """Starts the forced-exit timer once."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(DEADLINE_S, _force_exit, args=(self.bootstrap,))
                self._timer.daemon = True
                self._timer.start()


def _chain_signal(loop: asyncio.AbstractEventLoop, sig: int, first: Any) -> None:
    """Runs ``first()`` before the handler the worker installed for ``sig`` on ``loop``."""
    # asyncio keeps a loop's signal handlers in ``_signal_handlers`` (CPython's unix
    # event loop); where that is not there the deadline starts at the service's stop.
    handle = getattr(loop, "_signal_handlers", {}).get(sig)
    if handle is None:
        return

    def chained() -> None:
        first()
        handle._callback(*handle._args)

    loop.add_signal_handler(sig, chained)


def install(app: Any, settings: Any) -> None:
    """Registers the shutdown deadline and the Kafka log bound on ``app``."""
    from mode import Service

    deadline = _Deadline(settings.bootstrap_servers)

    @app.service
    class ShutdownDeadline(Service):
        """Starts the forced-exit timer when the worker is told to stop."""

        async def on_start(self) -> None:
            bound_kafka_logs()  # the worker's logging is configured by now
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                _chain_signal(loop, sig, deadline.start)

        async def on_stop(self) -> None:
            deadline.start()
