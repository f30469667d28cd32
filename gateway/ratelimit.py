"""A token bucket per API key (pure; the clock is an argument).

Each key has a bucket of capacity ``burst`` refilled at ``rate`` tokens per second; a
request takes one token or is refused with the time until one is there (the
``Retry-After`` of the 429). Buckets live in the process: with N replicas behind a
balancer that spreads a key's requests evenly, a key gets up to N x ``rate`` in total
(see docs/api.md).
"""

from __future__ import annotations

import time

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """Token buckets keyed by API key id."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill (monotonic s)]

    def take(self, key: str, rate: float, burst: float, now: float | None = None) -> float:
        """Takes one token from ``key``'s bucket.

        Args:
            rate: refill, tokens per second (> 0).
            burst: capacity, tokens (>= 1); a new bucket starts full.
            now: monotonic seconds (default: ``time.monotonic()``).

        Returns:
            0.0 when the request may pass, else the seconds until a token is available.
        """
        now = time.monotonic() if now is None else now
        b = self._buckets.get(key)
        if b is None:
            self._buckets[key] = [burst - 1.0, now]
            return 0.0
        tokens = min(burst, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return 0.0
        b[0] = tokens
        return (1.0 - tokens) / rate
