"""``agentgym up|status|down|logs``: the whole local stack as real background processes.

One module-scoped stack (its broker start is the cost): ``up`` starts the broker, the
Faust worker, the trainer and the API under an isolated ``AGENTGYM_HOME`` on free ports;
an event posted to the API and one the SDK sends reach ClickHouse through it; a second ``up`` changes
nothing; ``down`` leaves no process of any component's process group behind.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from agentgym import AgentGym
from agentgym.ops.kafka.broker import free_port
from tests.integration.gateway.conftest import auth, call, experience
from tests.workers import wait_for

pytestmark = pytest.mark.integration

AGENTGYM = Path(sys.executable).with_name("agentgym")
COMPONENTS = ["kafka", "processors", "trainer", "gateway"]


def _groups() -> dict[int, int]:
    """pid -> process group of every process of this machine (Linux's /proc)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # zombies hold no resources; their parent reaps them
                out[int(d.name)] = int(fields[2])
    return out


def _cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AGENTGYM), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(300)
def test_up_status_event_second_up_logs_down(tmp_path: Path, unique: str) -> None:
    home = tmp_path / "stack-home"
    env = dict(os.environ, AGENTGYM_HOME=str(home), AGENTGYM_KAFKA_PORT=str(free_port()),
               AGENTGYM_KAFKA_CONTROLLER_PORT=str(free_port()), AGENTGYM_HTTP_PORT=str(free_port()),
               AGENTGYM_FAUST_WEB_PORT=str(free_port()), AGENTGYM_GATEWAY_PORT=str(free_port()))
    try:
        r = _cli(env, "up")
        assert r.returncode == 0, r.stdout + r.stderr
        key = r.stdout.strip().splitlines()[-1]
        assert key.startswith("agk_"), r.stdout
        state = json.loads((home / "stack.json").read_text())
        gateway_url = f"http://127.0.0.1:{env['AGENTGYM_GATEWAY_PORT']}"
        assert gateway_url in r.stdout and f"127.0.0.1:{env['AGENTGYM_KAFKA_PORT']}" in r.stdout
        assert f"{gateway_url}/dashboard/" in r.stdout  # where the dashboard is

        # status: every component up, on the ports it was started on; status needs no environment
        bare = {k: v for k, v in env.items() if not k.startswith("AGENTGYM_")} | {"AGENTGYM_HOME": str(home)}
        r = _cli(bare, "status", "--json", "--sample-s", "0.2")
        assert r.returncode == 0, r.stdout + r.stderr
        st = json.loads(r.stdout)
        assert {n: c["up"] for n, c in st["components"].items()} == {n: True for n in COMPONENTS}
        assert st["components"]["gateway"]["port"] == int(env["AGENTGYM_GATEWAY_PORT"])
        assert {n: st["components"][n]["pid"] for n in state["pids"]} == state["pids"]

        # an event through the API reaches ClickHouse; status then names the last event
        agent = f"stack-{unique}"
        code, body, _ = call("POST", f"{gateway_url}/v1/experiences", experience(0, agent_id=agent), auth(key))
        assert code == 202, body
        # ... and so does one the Python SDK sends straight to the stack's broker
        gym = AgentGym(bootstrap_servers=f"127.0.0.1:{env['AGENTGYM_KAFKA_PORT']}", tenant_id="default", agent_id=agent)
        gym.record_experience(input="q-sdk", output="a", model_name="m", model_version="v1", latency_ms=3.0)
        gym.close()
        url = f"http://127.0.0.1:{env['AGENTGYM_HTTP_PORT']}/?" + urllib.parse.urlencode(
            {"query": f"SELECT count() FROM agentgym.experiences WHERE agent_id = '{agent}'"})
        wait_for(lambda: urllib.request.urlopen(url, timeout=3).read().strip() == b"2", 120,
                 "the API's and the SDK's events to reach ClickHouse through the stack")
        def caught_up() -> dict | None:  # the sink's group committed past the event: its lag on the topic is 0
            st = json.loads(_cli(bare, "status", "--json", "--sample-s", "0.2").stdout)
            return st if st["lag"].get("agentgym-clickhouse-sink", {}).get("gym-experiences-v1") == 0 else None

        st = wait_for(caught_up, 60, "status to show the sink's lag on gym-experiences-v1 at 0")
        assert st["last_event"] is not None

        # the dashboard, logged in with the key `up` printed, shows the agent's two runs: nothing else needed
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        login = urllib.request.Request(f"{gateway_url}/dashboard/login", urllib.parse.urlencode({"api_key": key}).encode(),
                                       method="POST", headers={"Origin": gateway_url})
        with browser.open(login, timeout=30) as resp:  # 303 to the overview, followed with the session cookie
            assert resp.url == f"{gateway_url}/dashboard/" and resp.status == 200
            page = resp.read().decode()
        runs = re.findall(rf'<tr[^>]*data-agent="{agent}"[^>]*>\s*<td>[^<]*</td><td>[^<]*</td>\s*'
                          r'<td data-metric="runs" data-value="([0-9.]+)"', page)
        assert runs and sum(float(n) for n in runs) == 2, page[:3000]  # one row per model version

        # a second up says so and changes nothing
        r2 = _cli(env, "up")
        assert r2.returncode == 0 and "already up" in r2.stdout, r2.stdout + r2.stderr
        assert "agk_" not in r2.stdout
        assert json.loads((home / "stack.json").read_text()) == state

        # one log file per component in one directory
        assert sorted(p.stem for p in (home / "logs").glob("*.log")) == sorted(COMPONENTS)
        r3 = _cli(bare, "logs", "gateway", "-n", "5")
        assert r3.returncode == 0 and r3.stdout.strip(), r3.stderr

        # down: no process of any component's process group survives
        groups = set(state["pids"].values()) | {int((home / "kafka-data" / "broker.pid").read_text())}
        before = [p for p, g in _groups().items() if g in groups]
        assert len(before) >= len(COMPONENTS)
        r4 = _cli(bare, "down")
        assert r4.returncode == 0, r4.stderr
        assert [p for p, g in _groups().items() if g in groups or p in before] == []
        r = _cli(bare, "status", "--json", "--sample-s", "0.2")
        assert r.returncode == 3
        st = json.loads(r.stdout)
        assert not any(c["up"] for c in st["components"].values())
    finally:
        _cli(env, "down")
