"""The demo's own local stack: a Kafka broker, the Faust worker and the trainer service.

Everything lives under ``<home>/demo`` (``AGENTGYM_HOME`` of the children), on free
ports, so the demo neither touches nor depends on a stack the user runs. A demo run
starts from a clean slate -- it stops what an earlier run left running (the pids are
in ``<home>/demo/pids.json``) and removes its state -- which is what makes re-runs
idempotent; the pre-trained base model is kept outside, in ``<home>/models/base``.

Children run in their own process groups, so stopping one stops what it started too
(Ray's processes under the trainer). Stopping is SIGTERM, a grace period, then SIGKILL.

The children die with the demo even when the demo itself is killed with SIGKILL (no
``finally`` runs then): a small watchdog process, started before the first child,
holds the read end of a pipe whose write end only the demo holds. When the demo
exits for any reason the pipe closes, and the watchdog stops every process group
listed in ``pids.json`` and the broker of ``kafka-data/broker.pid``. After a clean
:meth:`DemoStack.stop` those files are gone, so it has nothing left to do.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentgym.ops.exceptions import StackError
from agentgym.ops.kafka.broker import KafkaBroker, free_port, free_ports
from agentgym.ops.settings import StackSettings
from agentgym.ops.stack import alive as _alive, spawn, stop_group as _stop_group
from agentgym.producers.admin import ensure_topics

__all__ = ["DemoStack"]

# The watchdog's whole program (run with ``python -c``: no imports of Agent Gym, so it
# starts in milliseconds). argv: the demo's state directory, the grace period in seconds.
_WATCHDOG = r"""
import json, os, signal, sys, time
root, grace = sys.argv[1], float(sys.argv[2])
while sys.stdin.buffer.read(4096):  # returns b"" once the demo's end of the pipe is closed
    pass
pids = []
try:
    with open(os.path.join(root, "pids.json")) as fh:
        pids += [int(p) for p in json.load(fh).values()]
except (OSError, ValueError):
    pass
try:
    with open(os.path.join(root, "kafka-data", "broker.pid")) as fh:
        pids.append(int(fh.read().strip()))
except (OSError, ValueError):
    pass
def alive(pid):
    try:
        os.killpg(pid, 0)
        return True
    except OSError:
        return False
for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
"""
_WATCHDOG_GRACE_S = 10.0


class DemoStack:
    """Starts, watches and stops the demo's processes.

    Args:
        home: the user's Agent Gym home; the demo's state goes to ``<home>/demo``.
        log: where progress lines go.
    """

    def __init__(self, home: Path, log: Callable[[str], None]) -> None:
        self.root = Path(home).expanduser().resolve() / "demo"
        self.log = log
        kafka_port, controller_port = free_ports(2)
        self.settings = StackSettings(home=self.root, kafka_port=kafka_port, kafka_controller_port=controller_port,
                                      kafka_data_dir=self.root / "kafka-data")
        self.broker = KafkaBroker.from_settings(self.settings)
        self.bootstrap = ""
        self.http_port = 0
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._query_client: Any = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def reset(self) -> None:
        """Stops what an earlier demo run left running and removes its state."""
        pids_file = self.root / "pids.json"
        if pids_file.is_file():
            try:
                pids = json.loads(pids_file.read_text())
            except ValueError:
                pids = {}
            for name, pid in pids.items():
                if _alive(int(pid)):
                    self.log(f"      stopping the {name} an earlier demo run left running (pid {pid})")
                    _stop_group(int(pid), 20.0)
        old = KafkaBroker.from_settings(StackSettings(home=self.root, kafka_data_dir=self.root / "kafka-data"))
        if old.status().running:
            self.log("      stopping the Kafka broker an earlier demo run left running")
            old.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self._start_watchdog()

    def _start_watchdog(self) -> None:
        """Starts the process that stops this stack's children if the demo dies (see the module docstring)."""
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        # its own session: a Ctrl-C in the terminal reaches the demo, which stops the
        # children itself; the watchdog then finds nothing to do. The pipe's write end
        # is not inheritable, so no other child keeps it open.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.root), str(_WATCHDOG_GRACE_S)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The children's environment: this stack, and ``extra`` (``AGENTGYM_*`` settings)."""
        return dict(os.environ, AGENTGYM_HOME=str(self.root), AGENTGYM_BOOTSTRAP_SERVERS=self.bootstrap,
                    AGENTGYM_CLICKHOUSE_URL=f"chdb://{self.root / 'clickhouse'}", **extra)

    def start_kafka(self) -> str:
        st = self.broker.start()
        self.bootstrap = st.bootstrap_servers
        ensure_topics(self.bootstrap)
        return self.bootstrap

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Path:
        """Starts a child (its output goes to ``<root>/logs/<name>.log``); returns the log's path."""
        log_path = self.root / "logs" / f"{name}.log"
        self.children[name] = spawn(argv, env, log_path)
        (self.root / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.children.items()}))
        return log_path

    def start_worker(self, **settings: str) -> int:
        """The Faust worker; returns the port of its read-only ClickHouse HTTP interface."""
        self.http_port = free_port()
        self.start("processors", [sys.executable, "-m", "faust", "-A", "agentgym.processors.app", "worker", "-l", "info"],
                   self.env(AGENTGYM_HTTP_PORT=str(self.http_port), AGENTGYM_FAUST_WEB_PORT=str(free_port()), **settings))
        self.wait(lambda: self.query("SELECT 1"), 180, "the processors' ClickHouse interface")
        return self.http_port

    def start_trainer(self, **settings: str) -> None:
        self.start("trainer", [sys.executable, "-m", "agentgym.ops.cli", "trainer", "run", "--poll-s", "0.5"], self.env(**settings))

    def check(self) -> None:
        """Raises when a child has exited."""
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise StackError(f"the {name} process exited ({proc.returncode}); see {self.root / 'logs' / (name + '.log')}")

    def stop_child(self, name: str) -> None:
        """Stops one child (and its process group) now, if it runs."""
        proc = self.children.pop(name, None)
        if proc is not None and proc.poll() is None:
            _stop_group(proc.pid, 60.0)
            self.log(f"stopped the {name} process")
        (self.root / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.children.items()}))

    def stop(self) -> None:
        """Stops the children, then the broker."""
        if self._query_client is not None:
            try:
                self._query_client.close()
            except Exception:
                pass
            self._query_client = None
        for name, proc in reversed(list(self.children.items())):
            if proc.poll() is None:
                _stop_group(proc.pid, 60.0)
                self.log(f"stopped the {name} process")
        self.children.clear()
        (self.root / "pids.json").unlink(missing_ok=True)
        if self.bootstrap and self.broker.status().running:
            self.broker.stop()
            self.log("stopped the demo's Kafka broker")
        if self._watchdog is not None:  # nothing is left for it to stop: let it exit
            if self._watchdog.stdin is not None:
                self._watchdog.stdin.close()
            try:
                self._watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None

    # -- reading ClickHouse ------------------------------------------------------------
    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query against the worker's embedded ClickHouse."""
        import clickhouse_connect

        if self._query_client is None:
            for name in ("clickhouse_connect", "urllib3"):
                logging.getLogger(name).setLevel(logging.ERROR)
            self._query_client = clickhouse_connect.get_client(host="127.0.0.1", port=self.http_port,
                                                               database="agentgym")
        return [tuple(r) for r in self._query_client.query(sql, parameters=params or None).result_rows]

    def wait(self, cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """Polls ``cond`` until it is truthy (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            try:
                value = cond()
                if value:
                    return value
            except StackError:
                raise
            except Exception:
                self._query_client = None  # reconnect on the next try
            time.sleep(0.5)
        raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}; logs in {self.root / 'logs'}")

