"""The dashboard over HTTP (no browser): the session, tenant scoping, numbers equal to the store's, the live plot's
points, admin-only buttons behind a CSRF token, empty states.

One module-scoped gateway reads a real embedded store through its read-only HTTP
interface (what the worker serves), follows the session's broker, and keeps datasets
under its own home. Pages are parsed with the standard library's ``html.parser``.
"""

from __future__ import annotations

import calendar
import http.client
import statistics
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from agentgym.gateway.dashboard.session import COOKIE, csrf_token
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.store.http_server import serve_readonly
from agentgym.processors.store.rows import insert_records
from agentgym.producers.records import RecordProducer, read_topic
from agentgym.trainers.registry import ModelRegistry, ModelVersion
from agentgym.trainers.synth.output import write_scenarios
from tests import store_samples as samples
from tests.integration.gateway.conftest import Served, ServedGateway, auth, call, new_key, test_settings
from tests.integration.gateway.test_resources import experiment_body, write_dataset
from tests.workers import wait_for

T0 = calendar.timegm((2026, 11, 15, 10, 0, 0)) * 1000
WINDOW = "from=2026-11-01&to=2026-12-01"
PAGES = ("/dashboard/", "/dashboard/experiments", "/dashboard/models", "/dashboard/datasets", "/dashboard/dead-letters")


# -- a small DOM from html.parser ---------------------------------------------------------
@dataclass(eq=False)
class Node:
    tag: str
    attrs: dict[str, str]
    children: list["Node | str"] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, **attrs: str | None) -> list["Node"]:
        """Descendants with ``tag`` and every attribute given (``class_`` for class, matched as one of the classes;
        None: the attribute is present)."""
        out = []
        for c in self.children:
            if isinstance(c, str):
                continue
            if (tag is None or c.tag == tag) and all(_attr_matches(c, k, v) for k, v in attrs.items()):
                out.append(c)
            out.extend(c.all(tag, **attrs))
        return out

    def one(self, tag: str | None = None, **attrs: str | None) -> "Node":
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]


def _attr_matches(node: Node, key: str, want: str | None) -> bool:
    name = "class" if key == "class_" else key.replace("_", "-")
    if name not in node.attrs:
        return False
    if want is None:
        return True
    return want in node.attrs[name].split() if name == "class" else node.attrs[name] == want


class _Parser(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    p = _Parser()
    p.feed(html)
    p.close()
    return p.root


# -- HTTP without following redirects -------------------------------------------------------
@dataclass
class Page:
    status: int
    headers: http.client.HTTPMessage
    body: str

    @property
    def doc(self) -> Node:
        return parse(self.body)


def request(served: Served, method: str, path: str, *, session: str | None = None, form: dict[str, str] | None = None,
            headers: dict[str, str] | None = None) -> Page:
    url = urllib.parse.urlsplit(served.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    hdrs = dict(headers or {})
    if session is not None:
        hdrs["Cookie"] = f"{COOKIE}={session}"
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Page(resp.status, resp.headers, resp.read().decode())
    finally:
        conn.close()


def login(served: Served, key: str) -> str:
    page = request(served, "POST", "/dashboard/login", form={"api_key": key})
    assert page.status == 303 and page.headers["Location"] == "/dashboard/", (page.status, page.body[:500])
    cookie = next(v for k, v in page.headers.items() if k.lower() == "set-cookie" and v.startswith(COOKIE + "="))
    return cookie.split(";", 1)[0].split("=", 1)[1]


# -- the world ---------------------------------------------------------------------------
@dataclass
class Env:
    served: Served
    store: Store
    home: Path
    tenant_a: str
    tenant_b: str
    a_read: str
    a_admin: str
    b_read: str
    a_session: str
    a_admin_session: str
    b_session: str


def _runs(store: Store, tenant: str, agent: str, versions: tuple[str, ...], n: int, latency0: float) -> None:
    """``n`` runs spread over ``versions``, with outcomes (some low-confidence, some unknown), feedback on some, and drift."""
    exps = [samples.experience(tenant, agent=agent, ts_ms=T0 + i * 60_000, model_version=versions[i % len(versions)],
                               latency_ms=latency0 + 7.0 * i + (i % 3) * 13.0, cost_usd=0.001 * (1 + i % 4),
                               prompt_tokens=20 + i, completion_tokens=5 + i % 7) for i in range(n)]
    insert_records(store, "Experience", exps)
    outcomes = []
    for i, e in enumerate(exps):
        if i % 5 == 4:
            continue  # unlabelled
        o = samples.outcome(tenant, e["trace_id"], agent=agent, label="success" if i % 3 else "failure", ts_ms=T0 + i * 60_000 + 500)
        o["confidence"] = 0.5 if i % 4 == 0 else 0.9
        outcomes.append(o)
    insert_records(store, "Outcome", outcomes)
    insert_records(store, "Feedback", [samples.feedback(tenant, e["trace_id"], agent=agent, ts_ms=T0 + i * 60_000 + 30_000,
                                                        thumbs_up=i % 2 == 0) for i, e in enumerate(exps) if i % 2 == 0])
    insert_records(store, "DeadLetter", [samples.dead_letter(tenant, ts_ms=T0, offset=1000 + i) for i in range(2)])
    insert_records(store, "DriftAlert", [samples.decoded("DriftAlert", {
        "event_id": samples.new_id(), "tenant_id": tenant, "agent_id": agent, "model_version": versions[0],
        "timestamp_ms": T0 + 5, "metric": "success_rate", "detector": "ADWIN(delta=0.002)", "estimate_before": 0.8,
        "estimate_after": 0.4, "n": 100})])


@pytest.fixture(scope="module")
def env(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("dashboard")
    store = open_store(f"chdb://{base / 'ch'}")
    migrate(store)
    http_server = serve_readonly(store)
    settings = test_settings(bootstrap, base / "spool", clickhouse_url=http_server.url, home=base / "home")
    suffix = uuid.uuid4().hex[:8]
    a, b = f"dash-a-{suffix}", f"dash-b-{suffix}"
    _runs(store, a, "support", ("v1", "v2"), 23, 100.0)
    _runs(store, b, "b-agent", ("vb",), 11, 900.0)  # a leak of B into A's pages would show its agent and version
    try:
        with ServedGateway(settings) as served:
            keys = [new_key(bootstrap, served, t, scopes) for t, scopes in ((a, "read"), (a, "read,admin"), (b, "read"))]
            yield Env(served, store, base / "home", a, b, *keys, *(login(served, k) for k in keys))
    finally:
        http_server.stop()
        store.close()


# -- the session --------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_login_sets_an_httponly_strict_cookie_and_a_bad_key_is_refused_with_the_apis_message(env: Env, bootstrap: str) -> None:
    form = request(env.served, "GET", "/dashboard/login")
    doc = form.doc
    assert form.status == 200
    key_input = doc.one("input", id="api-key")
    assert (key_input.attrs["name"], key_input.attrs["type"]) == ("api_key", "password")
    assert doc.one("button", id="login").attrs["type"] == "submit"
    assert not doc.all("p", class_="error")

    bad = request(env.served, "POST", "/dashboard/login", form={"api_key": "agk_000000000000_not-a-real-secret"})
    assert bad.status == 401
    assert "unknown or revoked API key" in bad.doc.one("p", class_="error").text()
    assert "set-cookie" not in {k.lower() for k in bad.headers}
    ingest_only = new_key(bootstrap, env.served, env.tenant_a, "ingest")
    refused = request(env.served, "POST", "/dashboard/login", form={"api_key": ingest_only})
    assert refused.status == 403 and "lacks the scope" in refused.doc.one("p", class_="error").text()

    ok = request(env.served, "POST", "/dashboard/login", form={"api_key": env.a_read})
    assert ok.status == 303 and ok.headers["Location"] == "/dashboard/"
    cookie = ok.headers["Set-Cookie"]
    attrs = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= attrs and "secure" not in attrs
    assert "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    behind_tls = request(env.served, "POST", "/dashboard/login", form={"api_key": env.a_read}, headers={"X-Forwarded-Proto": "https"})
    assert "secure" in {p.strip().split("=")[0].lower() for p in behind_tls.headers["Set-Cookie"].split(";")}

    overview = request(env.served, "GET", "/dashboard/", session=env.a_session)
    nav = overview.doc.one("nav", id="nav")
    assert {a.attrs["href"] for a in nav.all("a")} == set(PAGES)
    assert nav.one("span", id="tenant").text() == env.tenant_a
    assert "default-src 'self'" in overview.headers["Content-Security-Policy"]
    out = request(env.served, "POST", "/dashboard/logout", session=env.a_session,
                  form={"csrf_token": csrf_token(env.a_read)})
    assert out.status == 303 and out.headers["Location"] == "/dashboard/login"
    assert out.headers["Set-Cookie"].startswith(f'{COOKIE}=""') or f"{COOKIE}=;" in out.headers["Set-Cookie"]


@pytest.mark.timeout(60)
def test_pages_without_a_valid_session_redirect_to_the_login(env: Env) -> None:
    exp_page = "/dashboard/experiments/" + urllib.parse.quote(f"{env.tenant_a}:nope")
    for path in (*PAGES, exp_page):
        for session in (None, "agk_000000000000_forged", env.b_read + "x"):
            page = request(env.served, "GET", path, session=session)
            assert (page.status, page.headers.get("Location")) == (303, "/dashboard/login"), (path, session, page.status)
            assert env.tenant_a not in page.body
    stream = request(env.served, "GET", exp_page + "/stream")
    assert stream.status == 401


# -- the overview ------------------------------------------------------------------------
def _cells(row: Node) -> dict[str, str]:
    return {td.attrs["data-metric"]: td.attrs["data-value"] for td in row.all("td", data_metric=None)}


@pytest.mark.timeout(60)
def test_the_overview_shows_the_stores_numbers_for_the_tenant_only(env: Env) -> None:
    page = request(env.served, "GET", f"/dashboard/?{WINDOW}", session=env.a_session)
    assert page.status == 200, page.body[:2000]
    doc = page.doc
    rows = {(r.attrs["data-agent"], r.attrs["data-model-version"]): _cells(r) for r in doc.one("table", id="overview").all("tr", data_agent=None)}
    assert set(rows) == {("support", "v1"), ("support", "v2")}  # nothing of tenant B's agent or version
    # the same figures straight from the store for tenant A (percentiles computed here, independently of the engine)
    sql = """SELECT model_version, count(), countIf(outcome_label = 'success'), countIf(outcome_label IN ('success', 'failure')),
                 countIf(outcome_label IN ('success', 'failure') AND outcome_confidence >= 0.7), sum(total_tokens), sum(cost_usd),
                 groupArray(latency_ms)
             FROM v_runs WHERE tenant_id = {t:String} GROUP BY model_version"""
    for version, runs, successes, labelled, confident, tokens, cost, latencies in env.store.query(sql, {"t": env.tenant_a}).rows:
        got = rows[("support", version)]
        assert int(got["runs"]) == runs and int(got["tokens"]) == tokens
        assert float(got["success_rate"]) == pytest.approx(successes / labelled)
        assert float(got["confident_share"]) == pytest.approx(confident / runs)
        assert float(got["cost"]) == pytest.approx(cost)
        q = statistics.quantiles(sorted(latencies), n=100, method="inclusive")
        assert float(got["latency_p50_ms"]) == pytest.approx(statistics.median(latencies))
        assert float(got["latency_p95_ms"]) == pytest.approx(q[94])
    assert 0 < float(rows[("support", "v1")]["confident_share"]) < 1  # the data has both kinds
    # feedback, labeller agreement, drift: the tenant's
    feedback = doc.one("section", id="feedback")
    rate = feedback.one("tr", data_agent="support").one("td", data_metric="feedback_rate").attrs["data-value"]
    assert float(rate) == pytest.approx(12 / 23)
    assert feedback.one("tr", data_kind="thumbs").one("td", data_metric="events").attrs["data-value"] == "12"
    agreement = doc.one("section", id="labeller").one("tr", data_labeller="rules")
    assert 0 <= float(agreement.one("td", data_metric="agreement").attrs["data-value"]) <= 1
    assert doc.one("section", id="drift").all("tr", data_agent="support")
    assert "b-agent" not in page.body and "vb" not in {r[1] for r in rows}
    # tenant B sees its own, and none of A's
    b_doc = request(env.served, "GET", f"/dashboard/?{WINDOW}", session=env.b_session).doc
    assert {(r.attrs["data-agent"], r.attrs["data-model-version"]) for r in b_doc.one("table", id="overview").all("tr", data_agent=None)} == {("b-agent", "vb")}
    # a bad window is the API's error, in the page
    bad = request(env.served, "GET", "/dashboard/?from=yesterday", session=env.a_session)
    assert bad.status == 400 and "is not an RFC 3339 date-time" in bad.doc.one("p", class_="error").text()


@pytest.mark.timeout(60)
def test_every_page_shows_what_to_do_next_when_the_tenant_has_nothing(env: Env, bootstrap: str) -> None:
    fresh = login(env.served, new_key(bootstrap, env.served, f"dash-empty-{uuid.uuid4().hex[:8]}", "read"))
    for path, needle in (("/dashboard/", "agentgym up"), ("/dashboard/experiments", "no experiments yet: agentgym experiments create"),
                         ("/dashboard/models", "agentgym models register"), ("/dashboard/datasets", "agentgym synth generate"),
                         ("/dashboard/dead-letters", "No dead letters")):
        page = request(env.served, "GET", path, session=fresh)
        assert page.status == 200, (path, page.body[:1000])
        empties = " ".join(" ".join(p.text().split()) for p in page.doc.all("p", class_="empty"))
        assert needle in empties, (path, empties)


# -- experiments ---------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_the_experiment_page_has_one_point_per_snapshot_and_the_decision(env: Env, bootstrap: str, unique: str) -> None:
    status, exp, _ = call("POST", f"{env.served.url}/v1/experiments", experiment_body(f"cs-{unique}"[:60]), auth(env.a_admin))
    assert status == 201, exp
    exp_id = exp["experiment_id"]
    snaps = []
    for i in range(4):
        s = samples.stats_snapshot(env.tenant_a, exp_id, ts_ms=T0 + i * 10_000)
        s["comparisons"][0].update(ci_low=-0.5 / (i + 1), ci_high=0.5 / (i + 1) + 0.05)
        s["arms"][0]["n"] = 100 * (i + 1)
        snaps.append(s)
    guardrail = dict(samples.stats_snapshot(env.tenant_a, exp_id, ts_ms=T0 + 5), role="guardrail", metric="latency_ms")
    other = samples.stats_snapshot(env.tenant_b, exp_id, ts_ms=T0 + 7)  # another tenant's row under the same id
    insert_records(env.store, "StatsSnapshot", [*snaps, guardrail, other])
    path = "/dashboard/experiments/" + urllib.parse.quote(exp_id)
    page = request(env.served, "GET", path, session=env.a_session)
    assert page.status == 200, page.body[:2000]
    doc = page.doc
    svg = doc.one("svg", id="cs-plot")
    points = svg.all("circle", class_="cs-point")
    assert [(int(p.attrs["data-n"]), float(p.attrs["data-lo"]), float(p.attrs["data-hi"])) for p in points] == [
        (100 * (i + 1) + 110, pytest.approx(-0.5 / (i + 1)), pytest.approx(0.5 / (i + 1) + 0.05)) for i in range(4)]
    assert len(svg.all("line", class_="cs-interval")) == 4
    assert svg.attrs["data-stream"] == f"/dashboard/experiments/{exp_id}/stream" and svg.attrs["data-metric"] == "success_rate"
    assert doc.one("span", id="units").text() == "control 400 · treatment 110"
    assert doc.one("span", id="p-value").attrs["data-value"] == "0.2"
    assert "ok" in doc.one("span", id="srm").text()
    assert doc.one("span", id="guardrails").text().startswith("latency_ms")
    assert doc.one("div", id="decision").text().strip() == ""
    assert not doc.all("span", id="estimate-corrected")  # no audit sample
    listed = request(env.served, "GET", "/dashboard/experiments", session=env.a_session).doc
    row = listed.one("tr", data_experiment_id=exp_id)
    assert row.one("td", class_="units").one("span", data_variant="control").attrs["data-value"] == "400"
    assert row.one("td", class_="split").one("span", data_variant="candidate").attrs["data-value"] == "0.5"

    insert_records(env.store, "Decision", [samples.decision(env.tenant_a, exp_id, ts_ms=T0 + 60_000)])
    decided = request(env.served, "GET", path, session=env.a_session).doc.one("div", id="decision")
    assert decided.one("strong", class_="action").text() == "promote_winner" and "treatment better" in decided.text()
    summary = request(env.served, "GET", "/dashboard/experiments", session=env.a_session).doc
    assert float(summary.one("dd", id="time-to-decision").attrs["data-value"]) == pytest.approx(60.0)
    # with an audit sample, both estimates: as labelled and corrected (the plot shows the corrected one)
    audited = samples.stats_snapshot(env.tenant_a, exp_id, ts_ms=T0 + 50_000)
    audited.update(estimator="prediction_powered", audit_units=30,
                   labelled_comparisons=[dict(audited["comparisons"][0], estimate=0.3, ci_low=0.1, ci_high=0.5)])
    insert_records(env.store, "StatsSnapshot", [audited])
    doc = request(env.served, "GET", path, session=env.a_session).doc
    assert len(doc.one("svg", id="cs-plot").all("circle", class_="cs-point")) == 5
    assert doc.one("span", id="estimate-labelled").text().startswith("0.3 [0.1, 0.5]")
    assert doc.one("span", id="estimate-corrected").text().startswith("0.1 [-0.02, 0.22]")
    # another tenant's experiment does not exist for this session
    theirs = request(env.served, "GET", path, session=env.b_session)
    assert theirs.status == 404 and "no experiment" in theirs.doc.one("p", class_="error").text()


@pytest.mark.timeout(60)
def test_the_dashboards_stream_is_the_experiments_live_stream_behind_the_session(env: Env, bootstrap: str, unique: str) -> None:
    exp_id = call("POST", f"{env.served.url}/v1/experiments", experiment_body(f"live-{unique}"[:60]), auth(env.a_admin))[1]["experiment_id"]
    url = urllib.parse.urlsplit(env.served.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request("GET", "/dashboard/experiments/" + urllib.parse.quote(exp_id) + "/stream", headers={"Cookie": f"{COOKIE}={env.a_session}"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.readline() == b"event: ready\n"
        snap = samples.stats_snapshot(env.tenant_a, exp_id)
        with RecordProducer(bootstrap) as producer:
            producer.send("experiment-stats", snap)
        lines = [resp.readline() for _ in range(4)]
        assert b"event: stats\n" in lines and any(snap["event_id"].encode() in line for line in lines)
    finally:
        conn.close()


# -- models ------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_promote_and_retire_are_for_admin_sessions_with_the_csrf_token(env: Env, bootstrap: str, unique: str) -> None:
    version = f"mv-{unique}"[:60]
    registry = ModelRegistry(bootstrap)
    try:
        registry.register(ModelVersion(tenant_id=env.tenant_a, model_version=version, agent_id="support", base_model="tiny:llama",
                                       status="candidate", metrics={"train_runtime_s": 12.5, "train_tokens_per_s": 850.0}))
    finally:
        registry.close()
    wait_for(lambda: call("GET", f"{env.served.url}/v1/models/{version}", headers=auth(env.a_read))[0] == 200, 30, "the version")

    read_doc = request(env.served, "GET", "/dashboard/models", session=env.a_session).doc
    row = read_doc.one("tr", data_model_version=version)
    assert row.attrs["data-status"] == "candidate" and "850 tokens/s" in " ".join(row.text().split())
    assert not read_doc.all("button", class_="promote") and not read_doc.all("button", class_="retire")
    admin_doc = request(env.served, "GET", "/dashboard/models", session=env.a_admin_session).doc
    admin_row = admin_doc.one("tr", data_model_version=version)
    admin_row.one("button", class_="promote")
    admin_row.one("button", class_="retire")
    token = admin_row.all("form")[0].one("input", name="csrf_token").attrs["value"]
    action = f"/dashboard/models/{version}/promote"

    def status() -> str:
        return call("GET", f"{env.served.url}/v1/models/{version}", headers=auth(env.a_read))[1]["status"]

    for form in ({}, {"csrf_token": "0" * 64}, {"csrf_token": csrf_token(env.a_read)}):  # none, forged, another session's
        refused = request(env.served, "POST", action, session=env.a_admin_session, form=form)
        assert refused.status == 403 and "CSRF" in refused.doc.one("p", class_="error").text(), form
    cross = request(env.served, "POST", action, session=env.a_admin_session, form={"csrf_token": token},
                    headers={"Origin": "https://evil.example"})
    assert cross.status == 403
    read_only = request(env.served, "POST", action, session=env.a_session, form={"csrf_token": csrf_token(env.a_read)})
    assert read_only.status == 403 and "lacks the scope admin" in read_only.doc.one("p", class_="error").text()
    assert status() == "candidate"
    theirs = request(env.served, "POST", action, session=env.b_session, form={"csrf_token": csrf_token(env.b_read)})
    assert theirs.status == 403

    done = request(env.served, "POST", action, session=env.a_admin_session, form={"csrf_token": token})
    assert done.status == 303 and done.headers["Location"].startswith("/dashboard/models?done=promote")
    assert status() == "champion"
    after = request(env.served, "GET", done.headers["Location"], session=env.a_admin_session).doc
    assert after.one("tr", data_model_version=version).attrs["data-status"] == "champion"
    assert "promoted" in after.one("p", class_="notice").text()
    # audited like the API's promotion, with the dashboard's refusals
    admin_id = env.a_admin.split("_")[1]
    wait_for(lambda: {(r["action"], r["outcome"]) for r in read_topic(bootstrap, "audit", match=lambda r: r["target"] == version)
                      if r["key_id"] == admin_id} >= {("model.promote", "ok"), ("model.promote", "refused")}, 30, "the audit records")
    assert any(r["action"] == "dashboard.view" and r["key_id"] == admin_id
               for r in read_topic(bootstrap, "audit", match=lambda r: r["tenant_id"] == env.tenant_a))


# -- datasets, dead letters -----------------------------------------------------------------
@pytest.mark.timeout(60)
def test_datasets_and_dead_letters_are_the_tenants(env: Env) -> None:
    mine = write_dataset(env.home, f"ds-{env.tenant_a}", env.tenant_a, train=12)
    theirs = write_dataset(env.home, f"ds-{env.tenant_b}", env.tenant_b, train=8)
    quality = {"candidates": 50, "accepted": 40, "diversity": {"score": 0.61}, "timing": {"scenarios_per_s": 250.0},
               "rejected": {"duplicate": 10}}
    write_scenarios(DatasetStore(str(env.home / "datasets")), dataset_id=f"syn-{env.tenant_a}", tenant_id=env.tenant_a,
                    agent_id="support", created_ms=T0, splits={}, counts={"quality": quality})
    doc = request(env.served, "GET", "/dashboard/datasets", session=env.a_session).doc
    table = doc.one("table", id="datasets")
    row = table.one("tr", data_dataset_id=mine.dataset_id)
    assert row.one("td", data_metric="examples").attrs["data-value"] == "16"
    assert {s.attrs["data-split"]: s.attrs["data-value"] for s in row.all("span", data_split=None)} == {"train": "12", "eval": "4"}
    assert not table.all("tr", data_dataset_id=theirs.dataset_id)
    syn = doc.one("table", id="synthetic").one("tr", data_dataset_id=f"syn-{env.tenant_a}")
    assert float(syn.one("td", data_metric="quality").attrs["data-value"]) == pytest.approx(0.8)
    assert float(syn.one("td", data_metric="diversity").attrs["data-value"]) == pytest.approx(0.61)
    assert float(syn.one("td", data_metric="speed").attrs["data-value"]) == pytest.approx(250.0)

    dead = request(env.served, "GET", f"/dashboard/dead-letters?{WINDOW}", session=env.a_session).doc
    counts = dead.one("table", id="dead-letter-counts").all("tr", data_topic=None)
    assert [(r.attrs["data-reason"], r.one("td", data_metric="records").attrs["data-value"]) for r in counts] == [("BadMarkerError", "2")]
    assert len(dead.one("table", id="dead-letters").all("tr", data_topic=None)) == 2
