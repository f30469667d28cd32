"""Several gateway replicas: a revoked key stops working on every one; plan usage is shared between them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentgym.gateway.plans import set_plan
from agentgym.gateway.usage import month_of
from agentgym.ops.commands.keys import keys
from agentgym.ops.commands.tenants import tenants
from agentgym.ops.kafka.broker import free_port
from tests.integration.gateway.conftest import ServedGateway, auth, call, experience, test_settings
from tests.workers import wait_for

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def two_processes(bootstrap: str, tmp_path: Path) -> Iterator[list[str]]:
    procs, urls = [], []
    for i in range(2):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
        env.update({"AGENTGYM_BOOTSTRAP_SERVERS": bootstrap, "AGENTGYM_GATEWAY_SPOOL_DIR": str(tmp_path / f"spool-{i}"),
                    "AGENTGYM_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"})
        log = open(tmp_path / f"gateway-{i}.log", "wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "agentgym.ops.cli", "gateway", "run", "--port", str(port)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for i, url in enumerate(urls):
            wait_for(lambda: procs[i].poll() is None and call("GET", f"{url}/readyz", timeout_s=2)[0] == 200, 90,
                     f"gateway process {i} to be ready (log: {tmp_path / f'gateway-{i}.log'})")
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.timeout(240)
def test_a_revoked_key_is_refused_by_every_replica(two_processes: list[str], bootstrap: str, unique: str) -> None:
    tenant = f"t-{unique}"
    runner = CliRunner()
    created = runner.invoke(keys, ["create", "--bootstrap", bootstrap, "--tenant", tenant, "--scopes", "ingest,read"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]  # printed once, as the last line
    assert key.startswith("agk_")
    listed = runner.invoke(keys, ["list", "--bootstrap", bootstrap, "--tenant", tenant])
    key_id = key.split("_")[1]
    assert key_id in listed.output and "active" in listed.output and key.split("_", 2)[2] not in listed.output
    for url in two_processes:
        wait_for(lambda: call("POST", f"{url}/v1/experiences", experience(agent_id="a"), auth(key))[0] == 202, 30,
                 f"{url} to accept the new key")
    revoked = runner.invoke(keys, ["revoke", "--bootstrap", bootstrap, key_id])
    assert revoked.exit_code == 0, revoked.output
    t0 = time.monotonic()
    for url in two_processes:
        wait_for(lambda: call("POST", f"{url}/v1/experiences", experience(agent_id="a"), auth(key))[0] == 401, 30,
                 f"{url} to refuse the revoked key")
    print(f"revocation reached both replicas in {time.monotonic() - t0:.2f} s")  # the bound (5 s) is measured by ops/bench/gateway.py
    assert "revoked" in runner.invoke(keys, ["list", "--bootstrap", bootstrap, "--tenant", tenant]).output
    assert runner.invoke(keys, ["revoke", "--bootstrap", bootstrap, "ffffffffffff"]).exit_code != 0


def test_plan_usage_is_shared_between_replicas(bootstrap: str, tmp_path: Path, unique: str) -> None:
    tenant = f"t-{unique}"
    set_plan(bootstrap, tenant, "pro", max_runs_per_month=4)
    with ServedGateway(test_settings(bootstrap, tmp_path / "a")) as a, ServedGateway(test_settings(bootstrap, tmp_path / "b")) as b:
        for s in (a, b):
            wait_for(lambda: s.gateway.plans.plan_of(tenant).max_runs_per_month == 4, 30, "the plan to reach the gateways")
        from tests.integration.gateway.conftest import new_key

        key = new_key(bootstrap, [a, b], tenant)
        assert call("POST", f"{a.url}/v1/experiences", {"events": [experience(i, agent_id="x") for i in range(3)]}, auth(key))[0] == 202
        month = month_of()
        wait_for(lambda: b.gateway.usage.usage(tenant, month)[0] == 3, 30, "replica b to see replica a's usage")
        status, body, _ = call("POST", f"{b.url}/v1/experiences", {"events": [experience(i, agent_id="x") for i in range(2)]}, auth(key))
        assert (status, body["error"]) == (429, "plan_limit") and "3 used" in body["reason"]
        assert call("POST", f"{b.url}/v1/experiences", experience(agent_id="x"), auth(key))[0] == 202
    # both replicas flushed their reports when they stopped: the operator's view adds them up
    out = CliRunner().invoke(tenants, ["usage", "--bootstrap", bootstrap, "--tenant", tenant])
    assert out.exit_code == 0, out.output
    [row] = [line.split() for line in out.output.splitlines() if line.startswith(tenant)]
    assert row[1:] == [month, "4", "1", "2"]
