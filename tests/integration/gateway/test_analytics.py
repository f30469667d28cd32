"""Analytics reads through the API: tenant isolation by ClickHouse's parameterised views, limits, and the audit log.

One module-scoped gateway reads a real embedded store through its read-only HTTP
interface (what the worker serves); the audit records go through the real broker and
the real sink into ``audit_log``.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest

from agentgym.gateway import analytics
from agentgym.gateway.analytics import CATALOGUE, NamedQuery
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.store.http_server import serve_readonly
from agentgym.processors.store.rows import insert_records
from agentgym.producers.records import read_topic
from agentgym.schemas.topics import TOPICS
from tests import store_samples as samples
from tests.integration.gateway.conftest import Served, ServedGateway, auth, call, new_key, test_settings
from tests.workers import wait_for

T0 = calendar.timegm((2026, 11, 15, 10, 0, 0)) * 1000
WINDOW = {"from": "2026-11-01", "to": "2026-12-01T00:00:00Z"}


@dataclass
class Env:
    served: Served
    store: Store
    a_admin: str
    a_read: str
    b_read: str
    b_admin: str
    tenant_a: str
    tenant_b: str
    reader: analytics.AnalyticsReader


@pytest.fixture(scope="module")
def env(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    store = open_store(f"chdb://{tmp_path_factory.mktemp('analytics') / 'ch'}")
    migrate(store)
    http = serve_readonly(store)
    settings = test_settings(bootstrap, tmp_path_factory.mktemp("gateway-spool"), clickhouse_url=http.url)
    try:
        gateway = ServedGateway(settings)
        with gateway as served:
            suffix = served.settings.port
            a, b = f"ana-a-{suffix}", f"ana-b-{suffix}"
            yield Env(served, store, new_key(bootstrap, served, a, "read,admin"), new_key(bootstrap, served, a, "read"),
                      new_key(bootstrap, served, b, "read"), new_key(bootstrap, served, b, "admin"), a, b,
                      gateway.app[analytics.ANALYTICS])
    finally:
        http.stop()
        store.close()


def _insert_tenant(store: Store, tenant: str, runs: int) -> None:
    """``runs`` runs of two model versions with feedback and outcomes, and one of every other record."""
    exps = [samples.experience(tenant, ts_ms=T0 + i * 60_000, model_version=f"v{1 + i % 2}", latency_ms=100.0 + i,
                               status="error" if i == 0 else "ok", experiment_id="exp1") for i in range(runs)]
    insert_records(store, "Experience", exps)
    insert_records(store, "Feedback", [samples.feedback(tenant, e["trace_id"], ts_ms=T0 + 1000) for e in exps])
    insert_records(store, "Outcome", [samples.outcome(tenant, e["trace_id"], label="success" if i % 3 else "failure",
                                                      ts_ms=T0 + 2000) for i, e in enumerate(exps)])
    insert_records(store, "DeadLetter", [samples.dead_letter(tenant, ts_ms=T0, offset=i) for i in range(runs)])
    insert_records(store, "ExperimentConfig", [samples.experiment_config(tenant, "exp1", updated_ms=T0)])
    insert_records(store, "StatsSnapshot", [samples.stats_snapshot(tenant, "exp1", ts_ms=T0 + i) for i in range(runs)])
    insert_records(store, "Decision", [samples.decision(tenant, "exp1", ts_ms=T0 + 5000)])
    insert_records(store, "ModelVersion", [samples.model_version(tenant, f"m{i}", updated_ms=T0 + i) for i in range(runs)])
    insert_records(store, "DriftAlert", [samples.decoded("DriftAlert", {
        "event_id": samples.new_id(), "tenant_id": tenant, "agent_id": "support", "model_version": "v1",
        "timestamp_ms": T0 + i, "metric": "success_rate", "detector": "ADWIN(delta=0.002)", "estimate_before": 0.8,
        "estimate_after": 0.4, "n": 100 + i}) for i in range(runs)])


def _params(name: str, **extra: Any) -> dict[str, Any]:
    takes = CATALOGUE[name].params
    return {**{k: v for k, v in WINDOW.items() if k in takes}, **({"limit": 1000} if "limit" in takes else {}), **extra}


def run(env: Env, key: str, name: str, **params: Any) -> tuple[int, Any]:
    status, body, _ = call("GET", f"{env.served.url}/v1/analytics/queries/{name}?{urlencode(params)}", headers=auth(key))
    return status, body


DATA_QUERIES = [n for n in CATALOGUE if n != "audit_log"]


@pytest.mark.timeout(120)
def test_a_tenant_reads_only_its_own_rows_through_every_named_query(env: Env) -> None:
    _insert_tenant(env.store, env.tenant_a, 3)
    before = {}
    for name in DATA_QUERIES:
        status, body = run(env, env.a_read, name, **_params(name))
        assert status == 200, (name, body)
        assert body["row_count"] > 0, name  # the data reaches every query, so a leak would show
        assert body["tenant_id"] == env.tenant_a
        before[name] = body["rows"]
    # tenant B: more of the same (same agents, model versions, experiment ids), so any row of B leaking
    # into A's answers changes them
    _insert_tenant(env.store, env.tenant_b, 5)
    for name in DATA_QUERIES:
        status, a_body = run(env, env.a_read, name, **_params(name))
        assert status == 200 and a_body["rows"] == before[name], name
        status, b_body = run(env, env.b_read, name, **_params(name))
        assert status == 200 and b_body["row_count"] > 0 and b_body["rows"] != before[name], name
    runs = run(env, env.a_read, "model_versions", **_params("model_versions"))[1]["rows"]
    assert {(r["model_version"], r["runs"]) for r in runs} == {("v1", 2), ("v2", 1)}
    # the tenant comes from the key only: naming one is refused, as is any parameter a query does not take
    status, body = run(env, env.a_read, "runs_over_time", tenant=env.tenant_b)
    assert (status, body["field"]) == (400, "tenant")
    status, body, _ = call("GET", f"{env.served.url}/v1/analytics/queries/models",
                           headers=auth(env.a_read, **{"X-AgentGym-Tenant": env.tenant_b}))
    assert (status, body["error"]) == (403, "forbidden_tenant")
    # the views themselves refuse a read without the tenant: never every tenant's rows
    with pytest.raises(Exception, match="(?i)parameter|columns|tenant"):
        env.store.query("SELECT count() FROM pv_runs")


@pytest.mark.timeout(60)
def test_parameters_are_typed_and_errors_name_them(env: Env) -> None:
    cases = [
        ("runs_over_time", {"from": "yesterday"}, "from"),
        ("runs_over_time", {"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ("runs_over_time", {"from": "2020-01-01", "to": "2026-01-01"}, "from"),
        ("runs_over_time", {"bucket": "week"}, "bucket"),
        ("runs_over_time", {"agent_id": "../etc"}, "agent_id"),
        ("models", {"limit": "0"}, "limit"),
        ("models", {"limit": "many"}, "limit"),
        ("models", {"from": "2026-11-01"}, "from"),  # models takes no window
    ]
    for name, params, field in cases:
        status, body = run(env, env.a_read, name, **params)
        assert (status, body["error"], body["field"]) == (400, "invalid_parameter", field), (name, params, body)
    status, body = run(env, env.a_read, "no_such_query")
    assert (status, body["field"]) == (404, "name")
    status, body, _ = call("GET", f"{env.served.url}/v1/analytics/queries")
    assert status == 401
    status, body = run(env, env.b_admin, "models")  # admin alone may read (the read scope is implied)
    assert status == 200
    # audit_log needs admin; the catalogue lists what the key may run
    status, body = run(env, env.a_read, "audit_log")
    assert (status, body["error"]) == (403, "forbidden_scope")
    status, cat, _ = call("GET", f"{env.served.url}/v1/analytics/queries", headers=auth(env.a_read))
    assert status == 200 and "audit_log" not in {q["name"] for q in cat["queries"]}
    status, cat, _ = call("GET", f"{env.served.url}/v1/analytics/queries", headers=auth(env.a_admin))
    assert {q["name"] for q in cat["queries"]} == set(CATALOGUE)


@pytest.mark.timeout(60)
def test_limits_stop_a_heavy_query_with_an_error_naming_the_limit(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # heavy queries put into the catalogue for this test; the limits come from the gateway's settings
    heavy = {
        "max_execution_time": "SELECT count() FROM numbers(1000000000000) WHERE {tenant:String} != ''",
        "max_memory_usage": "SELECT length(groupArray(number)) FROM numbers(20000000) WHERE {tenant:String} != ''",
        "max_result_rows": "SELECT number FROM numbers(1000) WHERE {tenant:String} != ''",
    }
    for limit, sql in heavy.items():
        monkeypatch.setitem(CATALOGUE, f"heavy_{limit}", NamedQuery(f"heavy_{limit}", "a heavy query", (), sql))
    gw = env.served.gateway
    monkeypatch.setattr(gw, "settings", gw.settings.model_copy(update={
        "analytics_max_execution_time_s": 0.5, "analytics_max_memory_usage": 1024 * 1024, "analytics_max_result_rows": 10}))
    for limit in heavy:
        status, body = run(env, env.a_read, f"heavy_{limit}")
        assert (status, body["error"], body["field"]) == (422, "query_limit", limit), body
        assert "stopped" in body["reason"]
    status, body = run(env, env.a_read, "models", limit=11)  # limit is held to max_result_rows before the engine runs
    assert (status, body["field"]) == (400, "limit")


@pytest.mark.timeout(120)
def test_every_query_is_audited_in_the_topic_and_the_table(env: Env, bootstrap: str, unique: str) -> None:
    marker = f"req-{unique}"
    assert run(env, env.a_read, "models", limit=5)[0] == 200
    status, _, _ = call("GET", f"{env.served.url}/v1/analytics/queries/dead_letters?limit=5",
                        headers=auth(env.a_read, **{"X-Request-Id": marker}))
    assert status == 200
    assert run(env, env.a_read, "audit_log")[0] == 403  # refused: audited as such
    assert run(env, env.b_read, "models", limit=3)[0] == 200
    a_read_id = env.a_read.split("_")[1]

    def in_topic() -> list[dict[str, Any]]:
        return read_topic(bootstrap, "audit", match=lambda r: r["tenant_id"] in (env.tenant_a, env.tenant_b))

    wait_for(lambda: any(r.get("request_id") == marker for r in in_topic()), 30, "the audit records in gym-audit-v1")
    records = in_topic()
    mine = [r for r in records if r["key_id"] == a_read_id]
    assert {(r["action"], r["target"], r["outcome"], r["status"]) for r in mine} >= {
        ("analytics.query", "models", "ok", 200), ("analytics.query", "dead_letters", "ok", 200),
        ("analytics.query", "audit_log", "refused", 403)}
    assert all(r["tenant_id"] == env.tenant_a for r in mine)
    assert json.loads(next(r for r in mine if r["request_id"] == marker)["detail"])["limit"] == 5

    sink = ClickHouseSink(bootstrap, env.store, group=f"audit-{unique}", batch_ms=200, specs=[TOPICS["audit"]])
    try:
        def landed() -> bool:
            sink.process_batch()
            return env.store.query("SELECT count() FROM v_audit_log WHERE request_id = {m:String}", {"m": marker}).scalar() == 1

        wait_for(landed, 60, "the audit record in ClickHouse", every=0.0)
    finally:
        sink.close()
    row = env.store.query("SELECT tenant_id, key_id, action, target, outcome, status FROM v_audit_log WHERE request_id = {m:String}",
                          {"m": marker}).rows[0]
    assert row == (env.tenant_a, a_read_id, "analytics.query", "dead_letters", "ok", 200)
    # A's admin reads A's audit log through the API: A's records only, B's queries are not there
    status, body = run(env, env.a_admin, "audit_log", **_params("audit_log", **{"from": "2026-06-01", "to": "2027-06-01"}))
    assert status == 200 and body["row_count"] >= 3
    b_read_id = env.b_read.split("_")[1]
    assert b_read_id not in {r["key_id"] for r in body["rows"]} and a_read_id in {r["key_id"] for r in body["rows"]}


def test_the_catalogue_is_in_the_openapi_document(env: Env) -> None:
    status, doc, _ = call("GET", f"{env.served.url}/openapi.json")
    op = doc["paths"]["/v1/analytics/queries/{name}"]["get"]
    names = next(p for p in op["parameters"] if p["name"] == "name")["schema"]["enum"]
    assert set(names) == set(analytics.CATALOGUE) and "422" in op["responses"]
    assert "/v1/analytics/queries" in doc["paths"]


@pytest.mark.timeout(90)
def test_admin_actions_are_audited_with_their_outcome(env: Env, bootstrap: str, unique: str) -> None:
    exp_id = f"aud-{unique}"[:60]
    body = {"experiment_id": exp_id, "agent_id": "bot", "draft": True, "primary_metric": "success_rate",
            "variants": [{"name": "control", "model_version": "v1", "weight": 0.5}, {"name": "candidate", "model_version": "v2", "weight": 0.5}]}
    status, created, _ = call("POST", f"{env.served.url}/v1/experiments", body, auth(env.a_admin))
    assert status == 201, created
    assert call("POST", f"{env.served.url}/v1/experiments/{exp_id}/pause", {}, auth(env.a_read))[0] == 403  # no admin scope
    assert call("POST", f"{env.served.url}/v1/models/m-{unique}/promote", {}, auth(env.a_admin))[0] == 404
    a_admin_id, a_read_id = env.a_admin.split("_")[1], env.a_read.split("_")[1]
    # a created resource's target is the id the response gives it
    want = {(a_admin_id, "experiment.create", created["experiment_id"], "ok", 201), (a_read_id, "experiment.pause", exp_id, "refused", 403),
            (a_admin_id, "model.promote", f"m-{unique}", "refused", 404)}

    def seen() -> set[tuple[Any, ...]]:
        records = read_topic(bootstrap, "audit", match=lambda r: r["tenant_id"] == env.tenant_a)
        return {(r["key_id"], r["action"], r["target"], r["outcome"], r["status"]) for r in records} & want

    wait_for(lambda: seen() == want, 30, "the admin actions in gym-audit-v1")


def test_no_reachable_store_is_503_and_the_reader_reconnects(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Any) -> None:
    reader = env.reader
    reader.close()
    monkeypatch.setattr(reader, "url", f"chdb://{tmp_path / 'no-worker'}")
    status, body = run(env, env.a_read, "models")
    assert (status, body["error"]) == (503, "analytics_unavailable") and "no worker" in body["reason"]
    monkeypatch.undo()
    assert run(env, env.a_read, "models")[0] == 200
