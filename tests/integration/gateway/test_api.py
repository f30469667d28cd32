"""The Agent Gym API against the real broker: auth, tenancy, atomic batches, limits, rate and plan limits, assignment."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import uuid
import zlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentgym.gateway.plans import set_plan
from agentgym.producers.assignment import assign
from agentgym.producers.records import RecordProducer
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import Served, auth, call, experience, new_key
from tests.kafka_utils import consume_all, decode_all
from tests.workers import wait_for

EXPERIENCES = TOPICS["experiences"].name
FEEDBACK = TOPICS["feedback"].name


def test_events_land_in_kafka_as_the_keys_tenant(served: Served, bootstrap: str, unique: str) -> None:
    tenant = f"t-{unique}"
    key = new_key(bootstrap, served, tenant)
    status, body, _ = call("POST", f"{served.url}/v1/experiences", {
        "events": [experience(i, steps=[{"name": "search", "kind": "tool", "input": {"q": i}}], metadata={"n": i}) for i in range(5)]},
        auth(key, **{"X-AgentGym-Agent": "http-agent"}))
    assert status == 202 and body["accepted"] == 5
    traces = body["trace_ids"]
    status, fb, _ = call("POST", f"{served.url}/v1/feedback", {"trace_id": traces[0], "rating": 4, "agent_id": "http-agent",
                                                              "tenant_id": tenant}, auth(key))
    assert status == 202 and len(fb["event_ids"]) == 1
    recs = decode_all(consume_all(bootstrap, EXPERIENCES, 5, match=lambda m: m.key().decode() in traces))
    assert sorted(r["trace_id"] for r in recs) == sorted(traces)
    assert {(r["tenant_id"], r["agent_id"]) for r in recs} == {(tenant, "http-agent")}
    assert sorted(r["metadata"]["n"] for r in recs) == ["0", "1", "2", "3", "4"]
    fbs = decode_all(consume_all(bootstrap, FEEDBACK, 1, match=lambda m: m.key().decode() == traces[0]))
    assert [(f["kind"], f["rating"], f["tenant_id"]) for f in fbs] == [("rating", 4.0, tenant)]


def test_missing_invalid_or_revoked_keys_get_401_and_missing_scopes_403(served: Served, bootstrap: str, unique: str) -> None:
    url = f"{served.url}/v1/experiences"
    ev = experience(agent_id="a")
    status, body, headers = call("POST", url, ev)
    assert status == 401 and body["field"] == "Authorization" and "Bearer" in headers["WWW-Authenticate"]
    for header in ("Basic dXNlcjpwdw==", "Bearer ", "Bearer agk_000000000000_wrong", "Bearer not-a-key"):
        status, body, _ = call("POST", url, ev, {"Authorization": header})
        assert status == 401, header
    key = new_key(bootstrap, served, f"t-{unique}")
    _, secret = key.rsplit("_", 1)
    status, _, _ = call("POST", url, ev, auth(key[: -len(secret)] + "x" * len(secret)))  # right id, wrong secret
    assert status == 401
    reader = new_key(bootstrap, served, f"t-{unique}", "read")
    status, body, _ = call("POST", url, ev, auth(reader))
    assert status == 403 and body["error"] == "forbidden_scope" and "ingest" in body["reason"]
    assert call("POST", url, ev, auth(key))[0] == 202


def test_naming_another_tenant_is_forbidden_and_writes_nothing(served: Served, bootstrap: str, unique: str) -> None:
    key = new_key(bootstrap, served, f"t-{unique}")
    trace = f"x-{unique}"
    status, body, _ = call("POST", f"{served.url}/v1/experiences", {"events": [
        experience(0, agent_id="a", trace_id=trace), experience(1, agent_id="a", trace_id=trace, tenant_id="victim")]}, auth(key))
    assert (status, body["field"], body["index"]) == (403, "tenant_id", 1)
    status, body, _ = call("POST", f"{served.url}/v1/experiences", experience(agent_id="a", trace_id=trace),
                           auth(key, **{"X-AgentGym-Tenant": "victim"}))
    assert (status, body["field"]) == (403, "X-AgentGym-Tenant")
    # a marker with the same key lands in the same partition after anything produced before it
    marker = call("POST", f"{served.url}/v1/experiences", experience(9, agent_id="a", trace_id=trace, event_id=f"m-{unique}"), auth(key))
    assert marker[0] == 202
    got = decode_all(consume_all(bootstrap, EXPERIENCES, 1, match=lambda m: m.key().decode() == trace))
    assert [r["event_id"] for r in got] == [f"m-{unique}"]


def test_a_batch_with_a_bad_third_event_writes_nothing(served: Served, bootstrap: str, unique: str) -> None:
    key = new_key(bootstrap, served, f"t-{unique}")
    trace = f"b-{unique}"
    batch = [experience(i, trace_id=trace) for i in range(3)]
    batch[2]["latency_ms"] = "slow"
    status, body, _ = call("POST", f"{served.url}/v1/experiences", {"events": batch}, auth(key, **{"X-AgentGym-Agent": "a"}))
    assert status == 400 and body["index"] == 2 and body["field"] == "latency_ms"
    marker = experience(9, trace_id=trace, event_id=f"m-{unique}")
    assert call("POST", f"{served.url}/v1/experiences", marker, auth(key, **{"X-AgentGym-Agent": "a"}))[0] == 202
    got = decode_all(consume_all(bootstrap, EXPERIENCES, 1, match=lambda m: m.key().decode() == trace))
    assert [r["event_id"] for r in got] == [f"m-{unique}"]


_DEEP = b"[" * 100_000 + b"]" * 100_000


def _nested(depth: int) -> list[object]:
    out: list[object] = [1]
    for _ in range(depth):
        out = [out]
    return out


@pytest.mark.parametrize(
    ("body", "headers", "status", "field", "text"),
    [
        (experience(latency_ms="slow"), {}, 400, "latency_ms", "expected double"),
        ({k: v for k, v in experience().items() if k != "model_version"}, {}, 400, "model_version", "missing"),
        (experience(colour="red"), {}, 400, "colour", "unknown field"),
        (b'{"input": "q", "output": "a", "model_name": "m", "model_version": "v", "latency_ms": NaN}', {}, 400, "body", "not valid JSON"),
        (b'{"input": "q", "output": "a", "model_name": "m", "model_version": "v", "latency_ms": 1e999}', {}, 400, "body", "not valid JSON"),
        (b"{not json", {}, 400, "body", "not valid JSON"),
        (b"", {}, 400, "body", "empty"),
        ([1, 2], {}, 400, "body", "expected a JSON object"),
        (gzip.compress(_DEEP), {"Content-Encoding": "gzip"}, 400, "body", "JSON"),
        (experience(metadata={"a": _nested(40)}), {}, 400, "body", "deeper than 32"),
        (b"x" * (65 * 1024), {}, 413, "body", "at most 65536 bytes"),
        (gzip.compress(b" " * (300 * 1024)), {"Content-Encoding": "gzip"}, 413, "body", "decompressed"),
        (b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}, 400, "body", "not valid gzip"),
        (b"{}", {"Content-Encoding": "br"}, 415, "Content-Encoding", "br"),
        ({"events": [experience(i) for i in range(21)]}, {}, 413, "events", "at most 20"),
        (experience(output="x" * 20_000), {}, 413, "event", "at most 16384"),
        (experience(agent_id="../../etc"), {}, 400, "agent_id", "not a valid id"),
        (experience(trace_id="a/b"), {}, 400, "trace_id", "not a valid id"),
        ({"rating": 3}, {}, 400, "trace_id", "missing"),
    ],
    ids=["type", "missing", "unknown", "nan", "inf", "not-json", "empty", "array", "100k-deep", "too-deep", "body-size",
         "gzip-bomb", "bad-gzip", "brotli", "too-many", "event-size", "agent-path", "trace-path", "feedback-no-trace"],
)
def test_bad_input_gets_4xx_naming_the_field(served: Served, bootstrap: str, body: object, headers: dict[str, str], status: int,
                                             field: str, text: str) -> None:
    key = _shared_key(served, bootstrap)
    path = "/v1/feedback" if isinstance(body, dict) and "rating" in body else "/v1/experiences"
    got, resp, _ = call("POST", f"{served.url}{path}", body, auth(key, **{"X-AgentGym-Agent": "a", **headers}))
    assert (got, resp["field"]) == (status, field), resp
    assert text in resp["reason"]


_KEYS: dict[str, str] = {}


def _shared_key(served: Served, bootstrap: str) -> str:
    if served.url not in _KEYS:
        _KEYS[served.url] = new_key(bootstrap, served, f"t-{uuid.uuid4().hex[:10]}")
    return _KEYS[served.url]


def test_gzip_bodies_within_the_limits_are_accepted(served: Served, bootstrap: str, unique: str) -> None:
    key = new_key(bootstrap, served, f"t-{unique}")
    import json

    raw = json.dumps({"events": [experience(i, agent_id="a") for i in range(3)]}).encode()
    for encoding, data in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        status, body, _ = call("POST", f"{served.url}/v1/experiences", data, auth(key, **{"Content-Encoding": encoding}))
        assert (status, body["accepted"]) == (202, 3)


@pytest.mark.parametrize("path", ["scanned", "parsed", "routed"])
def test_a_slow_body_times_out_with_408(served: Served, bootstrap: str, path: str) -> None:
    """On each path a request can take: the fast path reading with the compiled scanner (a new connection), the
    fast path after aiohttp's parser (a connection whose first request was not a hot one), the routed handler."""
    key = _shared_key(served, bootstrap)
    registry = served.gateway.metrics.registry
    counts = lambda: tuple(registry.get_sample_value(f"agentgym_gateway_fast_path{n}_requests_total") or 0.0  # noqa: E731
                           for n in ("", "_scanned"))
    with socket.create_connection(("127.0.0.1", served.settings.port), timeout=30) as sock:
        if path == "parsed":
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while b"\r\n\r\n" not in first or not first.endswith(b"}"):
                first += sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 200"), first
        before = counts()
        connection = "Connection: close\r\n" if path == "routed" else ""
        sock.sendall((f"POST /v1/experiences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n{connection}"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"input\": ").encode())
        answer = b""
        while True:  # the server answers (after body_timeout_s) while we still owe 990 bytes, then closes
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"body_timeout"' in answer, answer[:400]
    fast, scanned = (counts()[i] - before[i] for i in (0, 1))
    assert (fast, scanned) == {"scanned": (1, 1), "parsed": (1, 0), "routed": (0, 0)}[path]  # the path named answered


def test_rate_limit_answers_429_with_retry_after(served: Served, bootstrap: str, unique: str) -> None:
    tenant = f"t-{unique}"
    set_plan(bootstrap, tenant, "enterprise", rate_per_s=0.2, burst=2)
    wait_for(lambda: served.gateway.plans.plan_of(tenant).rate_per_s == 0.2, 30, "the plan to reach the gateway")
    key = new_key(bootstrap, served, tenant)
    statuses = [call("POST", f"{served.url}/v1/experiences", experience(i, agent_id="a"), auth(key)) for i in range(3)]
    assert [s for s, _, _ in statuses] == [202, 202, 429]
    _, body, headers = statuses[2]
    assert body["error"] == "rate_limited" and "0.2 requests/s" in body["reason"]
    assert 1 <= int(headers["Retry-After"]) <= 5
    other = new_key(bootstrap, served, tenant)  # buckets are per key
    assert call("POST", f"{served.url}/v1/experiences", experience(agent_id="a"), auth(other))[0] == 202


def test_plan_limits_answer_429_naming_the_plan_and_the_limit(served: Served, bootstrap: str, unique: str) -> None:
    tenant = f"t-{unique}"
    set_plan(bootstrap, tenant, "free", max_runs_per_month=3)
    wait_for(lambda: served.gateway.plans.plan_of(tenant).max_runs_per_month == 3, 30, "the plan to reach the gateway")
    key = new_key(bootstrap, served, tenant)
    url = f"{served.url}/v1/experiences"
    assert call("POST", url, {"events": [experience(i, agent_id="one") for i in range(2)]}, auth(key))[0] == 202
    status, body, headers = call("POST", url, experience(agent_id="two"), auth(key))
    assert (status, body["error"], body["field"]) == (429, "plan_limit", "agent_id")
    assert "'free'" in body["reason"] and "1 agent" in body["reason"]
    status, body, headers = call("POST", url, {"events": [experience(i, agent_id="one") for i in range(2)]}, auth(key))
    assert (status, body["field"]) == (429, "events") and "'free' allows 3 runs per month; 2 used" in body["reason"]
    assert int(headers["Retry-After"]) >= 1
    assert call("POST", url, experience(agent_id="one"), auth(key))[0] == 202  # exactly the third run fits
    assert call("POST", url, experience(agent_id="one"), auth(key))[0] == 429
    # feedback is not a run
    assert call("POST", f"{served.url}/v1/feedback", {"trace_id": "t1", "thumbs_up": True, "agent_id": "one"}, auth(key))[0] == 202


def _experiment(tenant: str, experiment_id: str, status: str = "running") -> dict[str, object]:
    now = int(time.time() * 1000)
    return {"event_id": uuid.uuid4().hex, "tenant_id": tenant, "experiment_id": experiment_id, "agent_id": "a", "name": "n",
            "salt": f"salt-{experiment_id}", "unit_type": "user",
            "variants": [{"name": "control", "model_version": "v1", "weight": 0.3, "is_control": True},
                         {"name": "candidate", "model_version": "v2", "weight": 0.7, "is_control": False}],
            "primary_metric": {"name": "success_rate", "kind": "proportion", "direction": "increase", "cap": None, "limit": None},
            "guardrails": [], "alpha": 0.05, "min_samples_per_arm": 100, "status": status, "config_version": 3,
            "updated_ms": now, "updated_by": "test"}


def test_assignment_equals_the_sdks_and_is_tenant_scoped(served: Served, bootstrap: str, unique: str) -> None:
    tenant = f"t-{unique}"
    exp, draft = f"e-{unique}", f"d-{unique}"
    config = _experiment(tenant, exp)
    with RecordProducer(bootstrap) as producer:
        producer.send("experiments", config)
        producer.send("experiments", _experiment(tenant, draft, status="draft"))
    wait_for(lambda: served.gateway.experiments.get(draft) is not None, 30, "the experiments to reach the gateway")
    key = new_key(bootstrap, served, tenant)
    variants = set()
    for i in range(40):
        unit = f"user-{i}"
        status, body, _ = call("GET", f"{served.url}/v1/experiments/{exp}/assignment?unit_id={unit}", headers=auth(key))
        sdk = assign(config, unit)
        assert status == 200 and sdk is not None
        a = body["assignment"]
        assert (a["variant"], a["model_version"], a["config_version"], a["active"]) == (sdk.variant, sdk.model_version, 3, True)
        variants.add(a["variant"])
    assert variants == {"control", "candidate"}
    status, body, _ = call("GET", f"{served.url}/v1/experiments/{draft}/assignment?unit_id=u", headers=auth(key))
    assert status == 200 and body["assignment"] is None
    assert call("GET", f"{served.url}/v1/experiments/{exp}/assignment", headers=auth(key))[1]["field"] == "unit_id"
    other = new_key(bootstrap, served, f"other-{unique}", "read")
    status, body, _ = call("GET", f"{served.url}/v1/experiments/{exp}/assignment?unit_id=u", headers=auth(other))
    assert (status, body["field"]) == (404, "experiment_id")


def test_health_readiness_metrics_and_openapi(served: Served, bootstrap: str) -> None:
    assert call("GET", f"{served.url}/healthz")[:2] == (200, {"status": "ok", "events_dropped": 0, "events_quarantined": 0})
    assert call("GET", f"{served.url}/readyz")[0] == 200
    status, doc, _ = call("GET", f"{served.url}/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0" and "/v1/experiences" in doc["paths"]
    call("POST", f"{served.url}/v1/experiences", {})  # a 401, counted as a rejection
    status, text, headers = call("GET", f"{served.url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"agentgym_gateway_requests", "agentgym_gateway_request_seconds", "agentgym_gateway_rejections",
            "agentgym_gateway_producer_queue", "agentgym_gateway_spooled"} <= set(families)
    rejected = {s.labels["reason"]: s.value for s in families["agentgym_gateway_rejections"].samples if s.name.endswith("_total")}
    assert rejected.get("unauthorized", 0) >= 1


def test_many_tenants_and_agents_share_one_producer_and_no_path(served: Served, bootstrap: str, unique: str) -> None:
    def producers() -> int:
        return sum(t.name == "agentgym-producer" for t in threading.enumerate())

    before = producers()
    for i in range(3):
        key = new_key(bootstrap, served, f"many-{unique}-{i}")
        batch = {"events": [experience(j, agent_id=f"agent-{i}-{j}") for j in range(15)]}
        assert call("POST", f"{served.url}/v1/experiences", batch, auth(key))[0] == 202
    assert producers() == before  # 45 tenant/agent pairs: no client, thread or spool of their own
    assert sorted(p.name for p in served.settings.spool_root.iterdir()) == ["worker-0"]
