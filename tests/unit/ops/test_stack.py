"""``agentgym up`` refuses, before starting anything, a taken port or a stack that is partly up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentgym.ops.exceptions import StackError
from agentgym.ops.kafka.broker import free_port
from agentgym.ops.stack import LocalStack, group_alive, spawn, start_time, stop_group


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    chosen = {var: free_port() for var in ("AGENTGYM_KAFKA_PORT", "AGENTGYM_KAFKA_CONTROLLER_PORT", "AGENTGYM_HTTP_PORT",
                                           "AGENTGYM_FAUST_WEB_PORT", "AGENTGYM_GATEWAY_PORT")}
    for var, port in chosen.items():
        monkeypatch.setenv(var, str(port))
    return chosen


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn(["sh", "-c", "sleep 60 & sleep 60"], dict(os.environ), tmp_path / "sleeper.log")
    yield proc
    stop_group(proc.pid, 5)


def test_a_taken_port_is_refused_naming_its_variable(ports: dict[str, int], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports["AGENTGYM_GATEWAY_PORT"]))
        s.listen()
        with pytest.raises(StackError, match="AGENTGYM_GATEWAY_PORT"):
            LocalStack().up()
    assert not (Path(os.environ["AGENTGYM_HOME"]) / "stack.json").exists()


def test_a_partly_up_stack_is_refused(ports: dict[str, int], sleeper: subprocess.Popen[bytes]) -> None:
    home = Path(os.environ["AGENTGYM_HOME"])
    home.mkdir(parents=True)
    (home / "stack.json").write_text(json.dumps({"pids": {"trainer": sleeper.pid}, "ports": {}}))
    with pytest.raises(StackError, match="partly up.*trainer running.*agentgym down"):
        LocalStack().up()
    assert sleeper.poll() is None  # refused: nothing was stopped or started


def test_stop_group_leaves_no_process_of_the_group(sleeper: subprocess.Popen[bytes]) -> None:
    assert group_alive(sleeper.pid)
    stop_group(sleeper.pid, 5)
    assert not group_alive(sleeper.pid)  # the background sleep of the shell too, not only the leader


def test_a_reused_pid_is_not_the_stack_s_and_down_leaves_it_alone(ports: dict[str, int],
                                                                   sleeper: subprocess.Popen[bytes]) -> None:
    # stack.json names a pid that now belongs to another process (it started at another time)
    home = Path(os.environ["AGENTGYM_HOME"])
    home.mkdir(parents=True)
    started = start_time(sleeper.pid)
    assert started is not None
    (home / "stack.json").write_text(json.dumps({"pids": {"trainer": sleeper.pid}, "started": {"trainer": started - 1},
                                                 "ports": {}}))
    stack = LocalStack()
    assert stack.running() == {}
    assert stack.down(grace_s=1) == []
    assert sleeper.poll() is None and group_alive(sleeper.pid)
