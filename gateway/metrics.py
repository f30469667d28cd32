"""The gateway's Prometheus metrics (``GET /metrics``), one registry per process.

With several worker processes each serves its own figures (scrape each, or sum in
Prometheus); labels carry the route template and status, never a tenant or key.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["GatewayMetrics", "CONTENT_TYPE_LATEST"]

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _PerRequest(Collector):
    """The per-request counts (requests, latencies, events, fast-path answers) as plain numbers, read by
    prometheus_client at scrape time. Updated by the event loop's thread only (every request is answered
    there): no lock per update, where prometheus_client's own metrics take one per update (~2.5 us of
    a single-event request, 0.6 us here). tests/unit/gateway/test_metrics.py compares the exposition
    with prometheus_client's own Counter and Histogram."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # route -> a count per bucket (the last: +Inf), then the sum
        self.events: dict[str, int] = {}
        self.fast = 0
        self.scanned = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        counts = self.latency.get(route)
        if counts is None:
            counts = self.latency[route] = [0] * (len(_BUCKETS) + 2)
        counts[bisect_left(_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds ("le")
        counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("agentgym_gateway_requests", "HTTP requests answered", labels=["route", "status"])
        for (route, status), n in sorted(list(self.requests.items())):
            requests.add_metric([route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("agentgym_gateway_request_seconds", "time to answer, seconds", labels=["route"])
        for route, counts in sorted(list(self.latency.items())):
            counts = list(counts)
            cumulative, buckets = 0.0, []
            for bound, n in zip((*_BUCKETS, float("inf")), counts):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            latency.add_metric([route], buckets, sum_value=counts[-1])
        yield latency
        events = CounterMetricFamily("agentgym_gateway_events", "events accepted and produced", labels=["kind"])
        for kind, n in sorted(list(self.events.items())):
            events.add_metric([kind], n)
        yield events
        yield CounterMetricFamily("agentgym_gateway_fast_path_requests",
                                  "requests answered from the connection's protocol (gateway/fastpath.py), of the requests",
                                  value=self.fast)
        yield CounterMetricFamily("agentgym_gateway_fast_path_scanned_requests",
                                  "of those, requests read by the compiled scanner (gateway/_httpscan.c), not aiohttp's parser",
                                  value=self.scanned)


class GatewayMetrics:
    """Requests, latencies, rejections, producer queue and spool."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._per_request = _PerRequest()
        r.register(self._per_request)
        self.observe = self._per_request.observe
        self.rejections = Counter("agentgym_gateway_rejections", "requests refused, by reason", ["reason"], registry=r)
        self.producer_queue = Gauge("agentgym_gateway_producer_queue", "events waiting for Kafka's acknowledgement", registry=r)
        self.spooled = Gauge("agentgym_gateway_spooled", "events written to the durable spool since start", registry=r)
        self.replayed = Gauge("agentgym_gateway_spool_replayed", "spooled events replayed to Kafka since start", registry=r)
        self.dropped = Gauge("agentgym_gateway_events_dropped",
                             "events neither delivered nor kept: the spool's disk failed (full, read-only)", registry=r)
        self.quarantined = Gauge("agentgym_gateway_events_quarantined",
                                 "events Kafka can never take (too large), kept under <spool>/quarantine", registry=r)

    def fast_path(self, scanned: bool = False) -> None:
        """Counts one request answered from the connection's protocol (``scanned``: read by the compiled scanner)."""
        per = self._per_request
        per.fast += 1
        per.scanned += scanned

    def count_events(self, kind: str, n: int) -> None:
        events = self._per_request.events
        events[kind] = events.get(kind, 0) + n

    def render(self, queue_length: int, stats: dict[str, int]) -> bytes:
        self.producer_queue.set(queue_length)
        self.spooled.set(stats.get("spooled", 0))
        self.replayed.set(stats.get("replayed", 0))
        self.dropped.set(stats.get("dropped", 0))
        self.quarantined.set(stats.get("quarantined", 0))
        return generate_latest(self.registry)
