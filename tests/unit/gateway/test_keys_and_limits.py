"""The gateway's pure parts: keys, token buckets, body limits, plans, usage sums, the OpenAPI document."""

from __future__ import annotations

import hashlib
import json
import random

import orjson
import pytest

from agentgym.gateway import body as body_module
from agentgym.gateway.body import _walk_exceeds, events_of, json_depth_exceeds
from agentgym.gateway.exceptions import ApiError, InvalidIdError, PlanError
from agentgym.gateway.ids import check_id
from agentgym.gateway.keys import KeyRing, hash_secret, new_key, parse_key
from agentgym.gateway.plans import PLANS, plan_record
from agentgym.gateway.ratelimit import TokenBuckets
from agentgym.gateway.usage import UsageMeter, month_of


def test_a_new_key_is_random_and_only_its_hash_is_in_the_record() -> None:
    key, record = new_key("acme", ["read", "ingest"], "ci")
    key2, _ = new_key("acme", ["ingest"])
    assert key != key2 and key.startswith("agk_")
    key_id, secret = parse_key(key)  # type: ignore[misc]
    assert key_id == record["key_id"] and len(secret) >= 43  # 256 bits in base64url
    assert record["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest() == hash_secret(secret)
    assert secret not in json.dumps(record) and key not in json.dumps(record)
    assert record["scopes"] == ["ingest", "read"] and record["status"] == "active" and record["tenant_id"] == "acme"


@pytest.mark.parametrize("token", ["", "agk_", "agk_short_x", "xyz_0123456789ab_secret", "agk_0123456789ab_", "Bearer agk"])
def test_malformed_keys_do_not_parse(token: str) -> None:
    assert parse_key(token) is None


def test_a_secret_may_contain_underscores() -> None:
    assert parse_key("agk_0123456789ab_a_b") == ("0123456789ab", "a_b")


def test_unknown_scopes_and_bad_tenants_are_refused() -> None:
    with pytest.raises(InvalidIdError, match="scopes"):
        new_key("acme", ["ingest", "root"])
    for bad in ("", "../etc", "a/b", "x" * 201, ".hidden", "a\n", "a\x00b"):
        with pytest.raises(InvalidIdError):
            check_id("tenant_id", bad)
    assert check_id("tenant_id", "t-1.a_b") == "t-1.a_b"


def test_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    b = TokenBuckets()
    assert [b.take("k", rate=2.0, burst=3.0, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("k", rate=2.0, burst=3.0, now=0.0)
    assert wait == pytest.approx(0.5)
    assert b.take("k", rate=2.0, burst=3.0, now=0.5) == 0.0  # one token came back
    assert b.take("other", rate=2.0, burst=3.0, now=0.5) == 0.0  # buckets are per key
    assert b.take("k", rate=2.0, burst=3.0, now=100.0) == 0.0  # refill is capped at the burst...
    assert [b.take("k", rate=2.0, burst=3.0, now=100.0) for _ in range(3)][-1] > 0  # ...so only 3 in a row


def test_json_depth() -> None:
    deep = json.loads("[" * 40 + "]" * 40)
    assert json_depth_exceeds(b"[" * 40 + b"]" * 40, deep, 32)
    flat = {"a": [{"b": 1}] * 50}  # many brackets, shallow
    assert not json_depth_exceeds(json.dumps(flat).encode(), flat, 32)
    assert not json_depth_exceeds(b'{"a": "[[[[["}', {"a": "[[[[["}, 3)


def _depth(v: object) -> int:
    """Containers inside containers, by recursion over the parsed value (the definition)."""
    if isinstance(v, dict):
        return 1 + max(map(_depth, v.values()), default=0)
    if isinstance(v, list):
        return 1 + max(map(_depth, v), default=0)
    return 0


_TRICKY = ['"', "\\", "\\\"", "[", "]", "{", "}", "[[{{", "\\[", "\u00e9", "é", "\n", "🙂", ""]


def _random_json(rng: random.Random, depth: int) -> object:
    if depth == 0 or rng.random() < 0.25:
        return rng.choice([rng.choice(_TRICKY) * rng.randint(0, 3), rng.randint(-9, 99), 1.5, True, None])
    if rng.random() < 0.5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(_TRICKY) + str(i): _random_json(rng, depth - 1) for i in range(rng.randint(0, 4))}


def test_the_compiled_depth_scan_agrees_with_the_walk_and_the_definition() -> None:
    """gateway/_jsonscan.c reads the raw bytes (strings skipped: quotes escaped by odd runs of backslashes,
    brackets inside strings); the walk reads the parsed objects. Both must say what the recursive depth says,
    on text written by two different serialisers (spaces or none, escaped or raw unicode)."""
    assert body_module._native_depth_exceeds is not None  # built by the install (ops/setup.sh has gcc)
    rng = random.Random(7)
    checked = 0
    for _ in range(600):
        value = _random_json(rng, rng.randint(1, 9))
        depth = _depth(value)
        for raw in (json.dumps(value).encode(), orjson.dumps(value)):
            assert orjson.loads(raw) == value
            for limit in {max(1, depth - 1), max(1, depth), depth + 1}:
                want = depth > limit
                assert json_depth_exceeds(raw, value, limit) is want, (raw, limit)
                assert _walk_exceeds(raw, value, limit) is want, (raw, limit)
                checked += 1
    assert checked > 2000


def test_events_of() -> None:
    assert events_of({"input": "q"}, 10) == ([{"input": "q"}], False)
    assert events_of({"events": [{"a": 1}, {"b": 2}]}, 10) == ([{"a": 1}, {"b": 2}], True)
    for body, status, field in (([1], 400, "body"), ({"events": {}}, 400, "events"), ({"events": []}, 400, "events"),
                                ({"events": [{}] * 11}, 413, "events"), ({"events": [{}, 3]}, 400, "events[1]"),
                                ({"events": [{}], "x": 1}, 400, "x")):
        with pytest.raises(ApiError) as exc:
            events_of(body, 10)
        assert (exc.value.status, exc.value.field) == (status, field)


def test_plans_match_the_pricing_tiers_and_can_be_overridden() -> None:
    assert [(p.name, p.max_agents, p.max_runs_per_month) for p in PLANS.values()] == [
        ("free", 1, 100), ("pro", 5, 10_000), ("business", 20, 100_000), ("enterprise", None, None)]
    r = plan_record("acme", "pro", max_runs_per_month=50, rate_per_s=5.0)
    assert (r["plan"], r["max_agents"], r["max_runs_per_month"], r["rate_per_s"]) == ("pro", 5, 50, 5.0)
    with pytest.raises(PlanError, match="gold"):
        plan_record("acme", "gold")
    with pytest.raises(PlanError, match="burst"):
        plan_record("acme", "pro", burst=0.5)


def test_usage_sums_every_replica_and_counts_agents_once() -> None:
    m = UsageMeter("127.0.0.1:1", replica_id="me")  # the follower is not started: no broker needed
    month = month_of(0)
    assert month == "1970-01"
    m.add("acme", month, 3, ["a1"])
    m._report("k1", {"replica_id": "r2", "tenant_id": "acme", "month": month, "runs": 5, "agents": ["a1", "a2"]})
    m._report("k2", {"replica_id": "me", "tenant_id": "acme", "month": month, "runs": 999, "agents": []})  # own echo: ignored
    m._report("k3", {"replica_id": "r2", "tenant_id": "acme", "month": month, "runs": 7, "agents": ["a2"]})  # newer report replaces
    assert m.usage("acme", month) == (10, frozenset({"a1", "a2"}))
    m._report("k4", {"replica_id": "r3", "tenant_id": "acme", "month": month, "runs": 4, "agents": ["a3"]})
    assert m.usage("acme", month) == (14, frozenset({"a1", "a2", "a3"}))  # every other replica's latest, summed
    m._report("k5", {"replica_id": "r3", "tenant_id": "acme", "month": "1970-02", "runs": 1, "agents": ["a4"]})
    assert m.usage("acme", month) == (14, frozenset({"a1", "a2", "a3"}))  # another month apart
    assert m.usage("other", month) == (0, frozenset())
    [report] = m.reports()
    assert (report["usage_key"], report["runs"], report["agents"]) == (f"acme|{month}|me", 3, ["a1"])
    assert m.reports() == []  # nothing changed since


def test_a_verified_key_is_cached_until_its_record_changes() -> None:
    ring = KeyRing("127.0.0.1:1")  # the follower is not started: records are set as it would set them
    key, record = new_key("acme", ["ingest"])
    ring.follower._records[record["key_id"]] = record
    first = ring.verify(key)
    assert first is not None and first.scopes == frozenset({"ingest"})
    assert ring.verify(key) is first  # cached
    assert ring.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # a wrong secret is never a hit
    ring.follower._records[record["key_id"]] = {**record, "scopes": ["ingest", "read"]}  # a newer record: verified again
    assert ring.verify(key).scopes == frozenset({"ingest", "read"})  # type: ignore[union-attr]
    ring.follower._records[record["key_id"]] = {**record, "status": "revoked"}
    assert ring.verify(key) is None
    del ring.follower._records[record["key_id"]]
    assert ring.verify(key) is None


def test_openapi_document_is_valid_openapi_3_1() -> None:
    import schemathesis

    from agentgym.gateway.openapi import openapi_document

    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(doc)
    ops = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert {("POST", "/v1/experiences"), ("POST", "/v1/feedback"), ("GET", "/v1/experiments/{experiment_id}/assignment"),
            ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json")} <= ops
    resources = {(m, p) for m, p in ops
                 if p.startswith(("/v1/experiments", "/v1/datasets", "/v1/models", "/v1/training-jobs", "/v1/synthetic-jobs"))}
    e = "/v1/experiments/{experiment_id}"
    assert resources == {
        ("POST", "/v1/experiments"), ("GET", "/v1/experiments"), ("GET", e), ("GET", e + "/assignment"), ("GET", e + "/stream"),
        *{("POST", f"{e}/{verb}") for verb in ("start", "pause", "resume", "stop", "rollback")},
        ("GET", "/v1/datasets"), ("GET", "/v1/datasets/{dataset_id}"), ("GET", "/v1/datasets/{dataset_id}/export"),
        ("GET", "/v1/models"), ("GET", "/v1/models/{model_version}"), ("POST", "/v1/models/{model_version}/promote"),
        ("POST", "/v1/models/{model_version}/retire"),
        ("POST", "/v1/training-jobs"), ("GET", "/v1/training-jobs"), ("GET", "/v1/training-jobs/{job_id}"),
        ("POST", "/v1/synthetic-jobs"), ("GET", "/v1/synthetic-jobs"), ("GET", "/v1/synthetic-jobs/{job_id}")}
    exp = doc["components"]["schemas"]["ExperienceEvent"]
    assert {"input", "output", "model_name", "model_version", "latency_ms"} <= set(exp["required"])
    assert exp["properties"]["status"]["enum"] == ["ok", "error", "timeout", "cancelled"]
