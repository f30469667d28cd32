"""The gateway's per-request metrics (plain numbers read at scrape time) against prometheus_client's own
Counter and Histogram fed the same observations: the same exposition, sample for sample."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentgym.gateway.metrics import _BUCKETS, GatewayMetrics


def _samples(text: bytes, names: set[str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) if f.name in names
            for s in f.samples if not s.name.endswith("_created")}


def test_the_per_request_metrics_expose_what_prometheus_clients_own_would() -> None:
    ours = GatewayMetrics()
    ref = CollectorRegistry()
    requests = Counter("agentgym_gateway_requests", "HTTP requests answered", ["route", "status"], registry=ref)
    latency = Histogram("agentgym_gateway_request_seconds", "time to answer, seconds", ["route"], buckets=_BUCKETS, registry=ref)
    events = Counter("agentgym_gateway_events", "events accepted and produced", ["kind"], registry=ref)
    fast = Counter("agentgym_gateway_fast_path_requests", "fast", registry=ref)
    rng = random.Random(3)
    for _ in range(5000):
        route, status = rng.choice(["experiences", "feedback", "assignment"]), rng.choice([202, 400, 429])
        seconds = rng.choice([*_BUCKETS, 0.0, 30.0, rng.random() * 0.01, rng.random() * 3])  # bounds themselves included
        ours.observe(route, status, seconds)
        requests.labels(route, str(status)).inc()
        latency.labels(route).observe(seconds)
        kind, n = rng.choice(["Experience", "Feedback"]), rng.randint(1, 100)
        ours.count_events(kind, n)
        events.labels(kind).inc(n)
        if rng.random() < 0.7:
            ours.fast_path()
            fast.inc()
    names = {"agentgym_gateway_requests", "agentgym_gateway_request_seconds", "agentgym_gateway_events",
             "agentgym_gateway_fast_path_requests"}
    got, want = _samples(ours.render(0, {}), names), _samples(generate_latest(ref), names)
    assert len(want) == 60 and got.keys() == want.keys()
    for k, v in want.items():
        assert abs(got[k] - v) <= 1e-9 * max(1.0, abs(v)), k
    assert ours.registry.get_sample_value("agentgym_gateway_fast_path_requests_total") == want[("agentgym_gateway_fast_path_requests_total", ())]
