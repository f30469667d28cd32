"""Running the real Faust worker (``faust -A agentgym.processors.app worker``) from tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentgym.ops.kafka.broker import free_port


class Worker:
    """A worker subprocess; its output goes to ``log``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Worker":
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "agentgym.processors.app", "worker", "-l", "info"],
            env=self.env, stdout=fh, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
        )
        fh.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(30)

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM and wait: a clean shutdown."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no worker log)"


def worker_env(bootstrap: str, home: Path, app_id: str, processors: str, **extra: str) -> dict[str, str]:
    """Environment for a worker on the test broker with its own state under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    env.update({
        "AGENTGYM_BOOTSTRAP_SERVERS": bootstrap,
        "AGENTGYM_HOME": str(home),
        "AGENTGYM_APP_ID": app_id,
        "AGENTGYM_PROCESSORS": processors,
        "AGENTGYM_FAUST_WEB_PORT": str(free_port()),
        "AGENTGYM_CLICKHOUSE_URL": f"chdb://{home / 'clickhouse'}",
        "AGENTGYM_HTTP_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def wait_for(cond, timeout_s: float, what: str, worker: Worker | None = None, every: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died while waiting for {what}:\n{worker.tail()}")
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # e.g. the HTTP interface not up yet
            last_exc = exc
        time.sleep(every)
    tail = worker.tail() if worker is not None else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_exc})\n{tail}")
