"""Fixtures of the chaos suite: real processes, faults injected for real.

Each module that stops or kills a broker runs its own (``own_broker``); the rest use
the session's. A full disk is a real small tmpfs where the tests run as root (CI
containers, these machines), else ``RLIMIT_FSIZE`` on the agent process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentgym.ops.kafka.broker import KafkaBroker, free_port
from agentgym.producers.admin import ensure_topics
from tests.conftest import start_broker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka-chaos"))
    ensure_topics(broker.bootstrap_servers)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def dead_bootstrap() -> str:
    """A bootstrap address where nothing listens: a broker that is away."""
    return f"127.0.0.1:{free_port()}"


@contextlib.contextmanager
def small_filesystem(path: Path, size_bytes: int) -> Iterator[int]:
    """Makes ``path`` a filesystem of ``size_bytes``; yields the RLIMIT_FSIZE to apply instead (0: none needed)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], capture_output=True)
        mounted = r.returncode == 0
    try:
        yield 0 if mounted else size_bytes
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def agent_cmd(bootstrap: str, spool: Path, count: int, **opts: object) -> list[str]:
    cmd = [sys.executable, "-m", "tests.chaos.agent", "--bootstrap", bootstrap, "--spool", str(spool), "--count", str(count)]
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        cmd += [flag] if v is True else [flag, str(v)]
    return cmd


def run_agent(bootstrap: str, spool: Path, count: int, timeout_s: float = 120, **opts: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    return subprocess.run(agent_cmd(bootstrap, spool, count, **opts), capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout_s)
