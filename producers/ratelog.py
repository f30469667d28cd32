"""A log line at a bounded rate: the first occurrence at once, then at most one per interval.

An outage repeats the same failure thousands of times a second (a full disk, a broker
that refuses connections); the operator needs one line that says what happens, and a
count of what was suppressed, not a flood.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitedLog", "RateLimitFilter"]


class RateLimitedLog:
    """Logs one message per ``key`` at most once every ``interval_s`` seconds.

    Args:
        logger: where the lines go.
        interval_s: the shortest gap between two lines of the same key, seconds (default 30).
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Logs ``msg % args`` unless ``key`` was logged less than ``interval_s`` ago. Returns whether it logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg = f"{msg} ({suppressed} similar lines suppressed in the last {self.interval_s:.0f}s)"
        self.logger.log(level, msg, *args)
        return True

    def reset(self, key: str) -> None:
        """Forgets ``key``, so its next occurrence logs at once (e.g. after a recovery)."""
        with self._lock:
            self._last.pop(key, None)
            self._suppressed.pop(key, None)


class RateLimitFilter(logging.Filter):
    """A logging filter that lets the same line through at most once per ``interval_s``.

    Lines are the same when their logger, level and first argument (librdkafka's
    facility, e.g. ``FAIL``) or, without arguments, their message agree. Attach it to
    a logger that relays a library's repetitive output (librdkafka via confluent-kafka).
    """

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self._limiter = _Limiter(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        first = record.args[0] if isinstance(record.args, tuple) and record.args else record.msg
        return self._limiter.allow(f"{record.name}|{record.levelno}|{first}")

    def allow(self, key: str) -> bool:
        """Whether a line of kind ``key`` may pass now (and, if so, starts its interval)."""
        return self._limiter.allow(key)


class _Limiter:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                return False
            if len(self._last) > 1000:
                self._last.clear()
            self._last[key] = now
            return True
