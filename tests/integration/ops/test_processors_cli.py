"""``agentgym processors run``: the CLI starts the one Faust worker against the real broker.

The app is built when the worker asks for it (not at import), registers the processors
named with ``--only``, creates their internal topics as the worker starts, and serves
Faust's web interface on loopback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.workers import wait_for, worker_env

pytestmark = pytest.mark.integration

AGENTGYM = Path(sys.executable).with_name("agentgym")


def _listening(port: int) -> set[str]:
    """The IPv4 addresses a socket of this machine listens on ``port`` (Linux's /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
    return found


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        pass  # an HTTP answer of any status: the server is up
    return True


@pytest.mark.timeout(240)
def test_processors_run_starts_the_named_processors_and_creates_their_topics(bootstrap: str, tmp_path: Path, unique: str) -> None:
    app_id = f"cli-{unique}"
    env = worker_env(bootstrap, tmp_path / "home", app_id, "sink")  # --only below wins over the environment
    wanted = {f"{app_id}-labeller-commands", f"{app_id}-labeller-traces-changelog",
              f"{app_id}-experiments-units", f"{app_id}-experiments-partials"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert not wanted & set(admin.list_topics(timeout=10).topics)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(AGENTGYM), "processors", "run", "--only", "labeller,experiments", "-l", "info"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"the worker exited:\n{log.read_text(errors='replace')[-4000:]}"
            return "Worker]: Ready" in log.read_text(errors="replace")

        wait_for(ready, 150, "the worker to be ready")
        assert wanted <= set(admin.list_topics(timeout=10).topics)
        web_port = int(env["AGENTGYM_FAUST_WEB_PORT"])
        assert _answers(f"http://127.0.0.1:{web_port}/")
        assert _listening(web_port) == {"127.0.0.1"}  # loopback only, not 0.0.0.0
        text = log.read_text(errors="replace")
        assert "ClickHouseSinkService" not in text  # only the named processors run
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text(errors="replace")[-4000:]
