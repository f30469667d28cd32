"""The README's first command, reduced: ``agentgym demo`` on a fresh home, end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ops.kafka.broker import free_port


def test_demo_runs_the_pipeline_and_stops_what_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    env.update(AGENTGYM_HOME=str(tmp_path / "home"), AGENTGYM_KAFKA_PORT=str(free_port()),
               AGENTGYM_HTTP_PORT=str(free_port()), AGENTGYM_FAUST_WEB_PORT=str(free_port()))
    out = subprocess.run([sys.executable, "-m", "ops.cli", "demo", "--events", "60"], env=env,
                         capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert re.search(r"experiences\s+60\s+60", out.stdout), out.stdout
    sent, stored = map(int, re.search(r"feedback\s+(\d+)\s+(\d+)", out.stdout).groups())  # type: ignore[union-attr]
    assert sent == stored > 0
    labelled = sum(int(n) for n in re.findall(r"^\s+(?:success|failure|unknown)\s+\S+\s+(\d+)$", out.stdout, re.M))
    assert labelled == 60, out.stdout
    assert "stopped the processors worker" in out.stdout and "stopped the local Kafka broker" in out.stdout
    # nothing left running: the broker's pid file is gone
    assert not (tmp_path / "home" / "kafka-data" / "broker.pid").exists()
