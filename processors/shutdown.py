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

import logging
import os
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
        # key on the message template (aiokafka) or librdkafka's facility, not on variable arguments
        return self._limit._limiter.allow(f"{record.name}|{record.levelno}|{record.msg if not record.name.startswith('agentgym') else record.args[0] if record.args else record.msg}")


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


def install(app: Any, settings: Any) -> None:
    """Registers the shutdown deadline and the Kafka log bound on ``app``."""
    from mode import Service

    @app.service
    class ShutdownDeadline(Service):
        """Starts the forced-exit timer as the worker begins to stop."""

        async def on_start(self) -> None:
            bound_kafka_logs()  # the worker's logging is configured by now

        async def on_stop(self) -> None:
            timer = threading.Timer(DEADLINE_S, _force_exit, args=(settings.bootstrap_servers,))
            timer.daemon = True
            timer.start()
