"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real stack.

What a user does and sees: log in with a read key, read the overview and find the numbers
``agentgym sql`` gives for the same store and tenant, watch an experiment's confidence
sequence grow and its decision appear without reloading the page, and get refused with a
bad key. Every page is photographed into the artefacts folder (see ``conftest.py``).

Runs reach the store the way they do in production: the Python SDK writes to the broker,
outcomes are produced to ``gym-outcomes-v1`` (as the labeller writes them), the real Faust
worker's sink stores them and its experiments processor publishes statistics and decisions,
which the API streams to the page over Server-Sent Events.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.parse
from typing import Any

import pytest

from agentgym import AgentGym, Assignment
from tests.integration.browser.conftest import Stack, outcome, screenshot, send_outcomes
from tests.integration.gateway.conftest import auth, call, new_key
from tests.workers import wait_for

pytestmark = pytest.mark.integration

# Timeouts: whichever test runs first also starts the module's stack (the worker's start is most of it).
METRICS = ("runs", "success_rate", "confident_share", "latency_p50_ms", "latency_p95_ms", "tokens", "cost")


# -- helpers -------------------------------------------------------------------------------
def login(page: Any, stack: Stack, key: str) -> Any:
    """Types ``key`` into the login form and submits it; returns the response to the submission."""
    shown = page.goto(f"{stack.url}/dashboard/login")
    assert shown is not None and shown.status == 200, f"GET /dashboard/login answered {shown and shown.status}"
    page.locator("#api-key").fill(key)
    with page.expect_navigation() as nav:
        page.locator("#login").click()
    return nav.value


def logged_in(page: Any, stack: Stack, key: str) -> None:
    login(page, stack, key)
    assert page.url == f"{stack.url}/dashboard/", page.url


def agentgym_sql(stack: Stack, query: str, **params: str) -> list[dict[str, Any]]:
    """Rows of ``agentgym sql QUERY --format json`` against the stack's store; ``{t:String}`` is the stack's tenant."""
    named = [f"--param={k}={v}" for k, v in {"t": stack.tenant, **params}.items()]
    out = subprocess.run([sys.executable, "-m", "agentgym.ops.cli", "sql", query, "--url", stack.store_url,
                          "--format", "json", *named],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def overview_rows(page: Any) -> dict[tuple[str, str], dict[str, str]]:
    """(agent, model version) -> {metric: data-value} of the overview's table, as the page holds them."""
    rows = page.eval_on_selector_all("#overview tr[data-agent]", """rows => rows.map(r => [
        r.dataset.agent, r.dataset.modelVersion,
        Object.fromEntries([...r.querySelectorAll('td[data-metric]')].map(td => [td.dataset.metric, td.dataset.value]))])""")
    return {(agent, mv): cells for agent, mv, cells in rows}


def create_experiment(stack: Stack, name: str, agent: str, min_samples: int) -> str:
    """An experiment through the API (admin key); returns its id (``<tenant>:<name>``)."""
    body = {"experiment_id": name, "agent_id": agent, "min_samples_per_arm": min_samples, "primary_metric": "success_rate",
            "variants": [{"name": "control", "model_version": "model-v1"}, {"name": "treatment", "model_version": "model-v2"}]}
    status, created, _ = call("POST", f"{stack.url}/v1/experiments", body, auth(stack.admin_key))
    assert status == 201 or status == 200, created
    return str(created["experiment_id"])


def traffic(stack: Stack, gym: AgentGym, exp: str, units: range, success: dict[str, float]) -> int:
    """Units assigned by the SDK, served, recorded and labelled; within each arm the share ``success[variant]``
    of units succeeds, spread evenly (no randomness: no chance effect). Returns the units sent."""
    seen: dict[str, int] = {}
    outs = []
    for i in units:
        unit = f"user-{i}"
        a = gym.assign(exp, unit)
        assert isinstance(a, Assignment) and a.active, a
        k = seen[a.variant] = seen.get(a.variant, 0) + 1
        ok = int(k * success[a.variant]) > int((k - 1) * success[a.variant])
        trace = gym.record_experience(input="hi", output="hello", model_name="llama", model_version=a.model_version,
                                      latency_ms=500.0, assignment=a, user_id=unit)
        outs.append(outcome(gym, trace, "success" if ok else "failure", 0.9, model_version=a.model_version,
                            experiment_id=exp, variant=a.variant, unit_id=unit))
    assert gym.flush(30) == 0
    send_outcomes(stack.bootstrap, outs)
    return len(units)


def open_experiment(page: Any, stack: Stack, exp: str) -> None:
    """From the experiments list, the experiment's page, once its live stream is connected."""
    page.goto(f"{stack.url}/dashboard/experiments")
    row = page.locator(f'#experiments tr[data-experiment-id="{exp}"]')
    row.wait_for()
    link = row.locator("a")
    if link.count():
        link.first.click()
    else:  # the contract names the page's path; a row without a link is navigated to directly
        page.goto(f"{stack.url}/dashboard/experiments/{urllib.parse.quote(exp, safe='')}")
    page.wait_for_selector('#cs-plot[data-live="connected"]', state="attached", timeout=20_000)
    # a marker that a reload would erase: what follows must arrive without one
    page.evaluate("window.__agentgymNoReload = true")


def points(page: Any) -> list[dict[str, float]]:
    return page.eval_on_selector_all("#cs-plot circle.cs-point", """cs => cs.map(c => ({
        n: Number(c.dataset.n), lo: Number(c.dataset.lo), hi: Number(c.dataset.hi)}))""")


# -- tests ---------------------------------------------------------------------------------
@pytest.mark.timeout(150)
def test_a_read_key_logs_in_and_lands_on_the_overview_of_its_tenant(stack: Stack, page: Any) -> None:
    # a tenant of its own: nothing stored yet, so every list shows its empty state
    tenant = f"{stack.tenant}-new"
    key = new_key(stack.bootstrap, stack.served, tenant, "read")
    logged_in(page, stack, key)
    assert page.locator("#nav").is_visible()
    assert page.locator("#tenant").inner_text().strip() == tenant
    assert page.locator("p.empty").first.is_visible()
    screenshot(page, "overview-empty")
    page.goto(f"{stack.url}/dashboard/experiments")
    assert page.locator("p.empty").first.is_visible()
    assert "agentgym experiments create" in page.locator("p.empty").first.inner_text()
    screenshot(page, "experiments-empty")


@pytest.mark.timeout(150)
def test_the_overview_shows_the_numbers_agentgym_sql_gives(stack: Stack, page: Any, browser: Any) -> None:
    # runs of two agents and three model versions; every run labelled, some with low confidence.
    # Latency is constant per group, so p50 and p95 do not depend on the quantile's interpolation.
    groups = {("support", "v1"): (7, 120.0), ("support", "v2"): (5, 340.0), ("billing", "v1"): (4, 80.0)}
    outs = []
    for (agent, mv), (n, latency) in groups.items():
        with stack.gym(agent) as gym:
            for i in range(n):
                trace = gym.record_experience(input=f"q{i}", output="a", model_name="llama", model_version=mv,
                                              latency_ms=latency, prompt_tokens=10 + i, completion_tokens=3 * i,
                                              cost_usd=0.001 * (i + 1), status="error" if i == 1 else "ok")
                outs.append(outcome(gym, trace, "success" if i % 3 else "failure", 0.95 if i % 2 else 0.3,
                                    model_version=mv))
            assert gym.flush(30) == 0
    send_outcomes(stack.bootstrap, outs)
    total = sum(n for n, _ in groups.values())
    stored = ("SELECT countIf(outcome_label IS NOT NULL) FROM agentgym.v_runs"
              " WHERE tenant_id = {t:String} AND agent_id IN ('support', 'billing')")
    wait_for(lambda: stack.scalar(stored, t=stack.tenant) == str(total),
             45, f"the sink to store the tenant's {total} labelled runs", stack.worker)

    expected = {(r["agent_id"], r["model_version"]): r for r in agentgym_sql(stack, """
        SELECT agent_id, model_version, count() AS runs,
            countIf(outcome_label = 'success') / countIf(outcome_label IN ('success', 'failure')) AS success_rate,
            countIf(outcome_confidence >= 0.8) / countIf(outcome_label IS NOT NULL) AS confident_share,
            quantile(0.5)(latency_ms) AS latency_p50_ms, quantile(0.95)(latency_ms) AS latency_p95_ms,
            sum(total_tokens) AS tokens, sum(cost_usd) AS cost
        FROM v_runs WHERE tenant_id = {t:String} GROUP BY agent_id, model_version""")}
    assert set(groups) <= set(expected)  # the CLI read the same store (other tests' agents may be there too)

    logged_in(page, stack, stack.read_key)
    shown = overview_rows(page)
    screenshot(page, "overview")
    assert set(shown) == set(expected), shown
    for group, row in expected.items():
        cells = shown[group]
        assert set(METRICS) <= set(cells), (group, cells)
        assert int(float(cells["runs"])) == row["runs"], (group, cells)
        for metric in METRICS[1:]:
            assert float(cells[metric]) == pytest.approx(float(row[metric]), rel=1e-6, abs=1e-9), (group, metric, cells)

    # another tenant's reader sees none of it
    other = browser.new_context()
    try:
        p2 = other.new_page()
        logged_in(p2, stack, new_key(stack.bootstrap, stack.served, f"{stack.tenant}-other", "read"))
        assert overview_rows(p2) == {}
        assert p2.locator("p.empty").first.is_visible()
    finally:
        other.close()


@pytest.mark.timeout(150)
def test_the_confidence_sequence_grows_live_as_events_arrive(stack: Stack, page: Any) -> None:
    with stack.gym("cs-bot") as gym:
        exp = create_experiment(stack, "cs-grows", "cs-bot", min_samples=10)
        follower = gym.follow_experiments(wait_s=20)
        wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")
        even = {"control": 0.5, "treatment": 0.5}  # no effect: the sequence keeps growing, nothing is decided
        traffic(stack, gym, exp, range(0, 60), even)
        # until the store holds a snapshot of all 60 units with its interval (the page draws what the store holds)
        snapshot = ("SELECT max(arraySum(arrayMap(a -> a.n, arms))) FROM agentgym.v_stats_snapshots"
                    " WHERE experiment_id = {e:String} AND metric = 'success_rate' AND length(comparisons) > 0")
        wait_for(lambda: stack.scalar(snapshot, e=exp) == "60", 45, "a snapshot of the 60 units in the store", stack.worker)

        logged_in(page, stack, stack.read_key)
        open_experiment(page, stack, exp)
        before = points(page)
        assert before, "the page shows no point of the confidence sequence although the store holds snapshots"
        bounded = [p for p in before if math.isfinite(p["lo"]) and math.isfinite(p["hi"])]
        assert bounded and all(p["lo"] <= p["hi"] for p in bounded), before  # below min samples a point has no interval
        screenshot(page, "experiment-before")

        traffic(stack, gym, exp, range(60, 120), even)
        # new points arrive over the stream until one counts the new units (the first may only repeat the old count)
        page.wait_for_function("n => [...document.querySelectorAll('#cs-plot circle.cs-point')].some(c => Number(c.dataset.n) > n)",
                               arg=max(p["n"] for p in before), timeout=45_000)
        assert page.evaluate("window.__agentgymNoReload === true"), "the page reloaded"
        after = points(page)
        assert len(after) > len(before) and [p["n"] for p in after[:len(before)]] == [p["n"] for p in before], (before, after)  # appended, none replaced
        assert page.locator("#decision").inner_text().strip() == ""
        for part in ("#units", "#p-value", "#srm", "#guardrails"):
            assert page.locator(part).count() == 1, part
        screenshot(page, "experiment-live")


@pytest.mark.timeout(180)
def test_a_decision_appears_live(stack: Stack, page: Any) -> None:
    with stack.gym("dec-bot") as gym:
        exp = create_experiment(stack, "decides", "dec-bot", min_samples=30)
        follower = gym.follow_experiments(wait_s=20)
        wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")

        logged_in(page, stack, stack.read_key)
        open_experiment(page, stack, exp)
        assert page.locator("#decision").inner_text().strip() == ""

        # a large true effect: the real processor's sequential test decides within a few hundred units
        traffic(stack, gym, exp, range(0, 300), {"control": 0.1, "treatment": 0.9})
        page.wait_for_function("() => document.querySelector('#decision').innerText.trim() !== ''", timeout=60_000)
        assert page.evaluate("window.__agentgymNoReload === true"), "the page reloaded"
        shown = page.locator("#decision").inner_text()
        status = page.locator("#status").inner_text()
        screenshot(page, "experiment-decided")

    assert status.startswith("concluded"), status  # the status follows the decision without a reload

    assert "treatment" in shown and "promot" in shown.lower(), shown
    # the decision the page showed is the one the processor recorded
    query = "SELECT action, winner FROM v_decisions WHERE tenant_id = {t:String} AND experiment_id = {e:String}"
    rows = wait_for(lambda: agentgym_sql(stack, query, e=exp), 30, "the decision in the store", stack.worker)
    assert [(r["action"], r["winner"]) for r in rows] == [("promote_winner", "treatment")], rows


@pytest.mark.timeout(150)
def test_a_bad_key_is_refused_and_no_page_is_reachable_without_logging_in(stack: Stack, page: Any) -> None:
    for path in ("/dashboard/", "/dashboard/experiments", f"/dashboard/experiments/{stack.tenant}%3Aany", "/dashboard/models",
                 "/dashboard/datasets", "/dashboard/dead-letters"):
        page.goto(f"{stack.url}{path}")
        assert urllib.parse.urlsplit(page.url).path == "/dashboard/login", (path, page.url)
        assert page.locator("#tenant").count() == 0
    screenshot(page, "login")
    # nor the live stream: without a session it answers no event
    stream = page.request.get(f"{stack.url}/dashboard/experiments/{stack.tenant}%3Aany/stream", max_redirects=0)
    assert stream.status != 200 and "text/event-stream" not in stream.headers.get("content-type", ""), stream.status

    response = login(page, stack, "agk_not-a-key")
    assert response.status == 401
    error = page.locator("p.error")
    assert error.is_visible() and "unknown or revoked API key" in error.inner_text(), error.inner_text()
    screenshot(page, "login-refused")
    # and the refusal left no session behind
    page.goto(f"{stack.url}/dashboard/")
    assert urllib.parse.urlsplit(page.url).path == "/dashboard/login"

    # a valid key without the read scope is refused too, saying why
    response = login(page, stack, new_key(stack.bootstrap, stack.served, stack.tenant, "ingest"))
    assert response.status in (401, 403)
    assert page.locator("p.error").is_visible() and "read" in page.locator("p.error").inner_text()
    page.goto(f"{stack.url}/dashboard/")
    assert urllib.parse.urlsplit(page.url).path == "/dashboard/login"


@pytest.mark.timeout(150)
def test_every_page_renders_for_a_logged_in_reader(stack: Stack, page: Any) -> None:
    logged_in(page, stack, stack.read_key)
    pages = {"overview": ("/dashboard/", ["#overview"]), "experiments": ("/dashboard/experiments", ["#experiments"]),
             "models": ("/dashboard/models", ["#models"]), "datasets": ("/dashboard/datasets", ["#datasets", "#synthetic"]),
             "dead-letters": ("/dashboard/dead-letters", ["#dead-letter-counts", "#dead-letters"])}
    for name, (path, tables) in pages.items():
        response = page.goto(f"{stack.url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        assert page.locator("#tenant").inner_text().strip() == stack.tenant
        for table in tables:  # each part shows its table, or an empty state that says what to do next
            if page.locator(table).count() == 0:
                assert page.locator("p.empty").count() > 0, (path, table)
        screenshot(page, name)
