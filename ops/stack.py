"""The local stack as a product: ``agentgym up``, ``status``, ``down``, ``logs``.

:class:`LocalStack` starts the embedded default in the background -- the Kafka broker,
the Faust worker with every processor, the trainer service and the API -- and keeps
its state under ``<home>`` (``AGENTGYM_HOME``): ``stack.json`` holds the children's pids
and ports, ``logs/<component>.log`` their output (``logs/kafka.log`` links to the
broker's own log). Children run in their own process groups (:func:`spawn`), so
:func:`stop_group` stops what each started too; the demo's stack uses the same pieces.

Ports come from the settings (``AGENTGYM_KAFKA_PORT``, ``AGENTGYM_HTTP_PORT``,
``AGENTGYM_FAUST_WEB_PORT``, ``AGENTGYM_GATEWAY_PORT``); a taken one is an error naming
its variable, never a silent second stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentgym.gateway.keys import create_key
from agentgym.gateway.settings import GatewaySettings
from agentgym.ops.exceptions import StackError
from agentgym.ops.kafka.broker import KafkaBroker
from agentgym.ops.settings import StackSettings
from agentgym.processors.settings import ProcessorSettings
from agentgym.producers.admin import ensure_topics
from agentgym.producers.settings import ProducerSettings
from agentgym.schemas.topics import TOPICS

__all__ = ["COMPONENTS", "LocalStack", "alive", "spawn", "stop_group"]

# in start order; ``down`` stops them in reverse
COMPONENTS = ("kafka", "processors", "trainer", "gateway")
ADMIN_TENANT = "default"


def alive(pid: int) -> bool:
    """Whether the process ``pid`` exists (zombies of our own children count as gone)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, Linux's /proc); None when it is gone.

    Recorded beside each pid, it tells a component from an unrelated process that got
    its pid after a reboot: ``down`` must never stop someone else's process group.
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Starts ``argv`` in its own session (process group), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as fh:
        return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop_group(pid: int, grace_s: float) -> None:
    """SIGTERM to the process group of ``pid``, then SIGKILL to what is left of it after ``grace_s``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (an earlier command's): poll for it
            done = 0 if alive(pid) else pid
        if done:
            break
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)  # whatever is left of the group (Ray's workers, gateway workers)
    except OSError:
        pass
    deadline = time.monotonic() + grace_s
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class LocalStack:
    """The user's local stack under ``<home>`` (see the module docstring).

    Args:
        log: where progress lines go.
    """

    def __init__(self, log: Callable[[str], None] = lambda _: None) -> None:
        self.log = log
        self.settings = StackSettings()
        self.root = self.settings.home.expanduser().resolve()
        self.state_file = self.root / "stack.json"
        self.logs_dir = self.root / "logs"
        proc = ProcessorSettings()
        gw = GatewaySettings()
        self.configured_ports = {"kafka": (self.settings.kafka_port, "AGENTGYM_KAFKA_PORT"),
                                 "processors": (proc.http_port, "AGENTGYM_HTTP_PORT"),
                                 "faust_web": (proc.faust_web_port, "AGENTGYM_FAUST_WEB_PORT"),
                                 "gateway": (gw.port, "AGENTGYM_GATEWAY_PORT")}
        # a stack that was started keeps the ports it was started on (status, down, logs
        # need no environment); a new start takes the configured ones
        saved = self.state().get("ports", {})
        self._use_ports({name: (int(saved.get(name, port)), var) for name, (port, var) in self.configured_ports.items()})
        self.gateway_host = gw.host
        self.app_id = proc.app_id
        self.sink_group = proc.sink_group
        # the API's durable spool (events it took while Kafka was away) and this user's SDK spool
        self.spools = {"gateway": Path(gw.spool_dir or self.root / "gateway-spool"), "sdk": Path(ProducerSettings().spool_dir)}

    def _use_ports(self, ports: dict[str, tuple[int, str]]) -> None:
        self.ports = ports
        self.broker = KafkaBroker.from_settings(self.settings.model_copy(update={"kafka_port": ports["kafka"][0]}))

    # -- state -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def log_file(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def running(self) -> dict[str, int]:
        """component -> pid of those whose process is alive."""
        out: dict[str, int] = {}
        st = self.broker.status()
        if st.pid is not None and alive(st.pid):
            out["kafka"] = st.pid
        state = self.state()
        for name, pid in state.get("pids", {}).items():
            if alive(int(pid)) and self._ours(state, name, int(pid)):
                out[name] = int(pid)
        return out

    @staticmethod
    def _ours(state: dict[str, Any], name: str, pid: int) -> bool:
        """False when ``pid`` now belongs to another process than the component started (a reused pid)."""
        recorded = state.get("started", {}).get(name)
        now = start_time(pid)
        return recorded is None or now is None or now == recorded

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def endpoints(self) -> dict[str, str]:
        return {"kafka": self.bootstrap,
                "processors": f"http://127.0.0.1:{self.ports['processors'][0]} (ClickHouse, read-only)",
                "trainer": "(no port; follows gym-datasets-v1)",
                "gateway": f"http://{self.gateway_host}:{self.ports['gateway'][0]}",
                "dashboard": f"http://{self.gateway_host}:{self.ports['gateway'][0]}/dashboard/ (log in with an API key: read scope)"}

    # -- up ----------------------------------------------------------------------------
    def up(self, timeout_s: float = 180.0) -> dict[str, Any]:
        """Starts what is not running; returns ``{"started": bool, "admin_key": str | None}``.

        With every component already up it changes nothing and returns ``started=False``;
        with some up and some not it raises (``agentgym down`` first).
        """
        up = self.running()
        if set(up) == set(COMPONENTS):
            return {"started": False, "admin_key": None}
        if up:
            raise StackError(f"the stack under {self.root} is partly up ({', '.join(sorted(up))} running, "
                             f"{', '.join(c for c in COMPONENTS if c not in up)} not): run `agentgym down` first")
        self._use_ports(self.configured_ports)
        for name, (port, var) in self.ports.items():
            if _listening(port):
                raise StackError(f"port {port} on 127.0.0.1 ({name}) is taken by another process; choose another ({var})")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        state = self.state()
        state["pids"], state["started"] = {}, {}
        state["ports"] = {name: port for name, (port, _) in self.ports.items()}
        self._save(state)
        try:
            self.log(f"starting the Kafka broker on {self.bootstrap}")
            self.broker.start(quiet=True)
            link = self.log_file("kafka")
            if not link.exists():
                link.unlink(missing_ok=True)
                link.symlink_to(self.broker.log_file)
            ensure_topics(self.bootstrap)
            env = dict(os.environ, AGENTGYM_HOME=str(self.root), AGENTGYM_BOOTSTRAP_SERVERS=self.bootstrap,
                       AGENTGYM_HTTP_PORT=str(self.ports["processors"][0]),
                       AGENTGYM_FAUST_WEB_PORT=str(self.ports["faust_web"][0]),
                       AGENTGYM_GATEWAY_PORT=str(self.ports["gateway"][0]))
            cli = [sys.executable, "-m", "agentgym.ops.cli"]
            for name, argv in (("processors", cli + ["processors", "run"]), ("trainer", cli + ["trainer", "run"]),
                               ("gateway", cli + ["gateway", "run"])):
                self.log(f"starting the {name}")
                pid = spawn(argv, env, self.log_file(name)).pid
                state["pids"][name], state["started"][name] = pid, start_time(pid)
                self._save(state)
            self._wait(lambda: self._query("SELECT 1") is not None, timeout_s, "the processors' ClickHouse interface")
            self._wait(lambda: _http_ok(f"http://127.0.0.1:{self.ports['gateway'][0]}/readyz"), timeout_s, "the API")
            admin_key = None
            if not state.get("admin_key_id"):
                admin_key, record = create_key(self.bootstrap, ADMIN_TENANT, ["admin", "read", "ingest"], "agentgym up")
                state["admin_key_id"] = record["key_id"]
                self._save(state)
        except BaseException:
            self.down()
            raise
        return {"started": True, "admin_key": admin_key, "admin_key_id": state["admin_key_id"]}

    def _wait(self, cond: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, pid in self.state().get("pids", {}).items():
                if not alive(int(pid)):
                    raise StackError(f"the {name} process exited; see {self.log_file(name)}")
            try:
                if cond():
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}; logs in {self.logs_dir}")

    # -- down --------------------------------------------------------------------------
    def down(self, grace_s: float = 30.0) -> list[str]:
        """Stops every component (children's process groups, then the broker); returns the names stopped."""
        stopped = []
        state = self.state()
        pids = state.get("pids", {})
        for name in reversed(COMPONENTS):
            pid = pids.get(name)
            if pid is not None and group_alive(int(pid)) and not (alive(int(pid)) and not self._ours(state, name, int(pid))):
                stop_group(int(pid), grace_s)
                stopped.append(name)
        if self.broker.stop(timeout_s=grace_s):
            stopped.append("kafka")
        if state:
            state["pids"], state["started"] = {}, {}
            self._save(state)
        return stopped

    # -- status ------------------------------------------------------------------------
    def _query(self, sql: str) -> str | None:
        url = f"http://127.0.0.1:{self.ports['processors'][0]}/?" + urllib.parse.urlencode({"query": sql})
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.read().decode().strip()

    def status(self, sample_s: float = 1.0) -> dict[str, Any]:
        """Each component (up, pid, port), consumer lag per topic, events/s, the last event's time, the spool."""
        running = self.running()
        pids = self.state().get("pids", {})
        comps: dict[str, dict[str, Any]] = {}
        for name in COMPONENTS:
            port = {"kafka": self.ports["kafka"][0], "processors": self.ports["processors"][0],
                    "gateway": self.ports["gateway"][0]}.get(name)
            pid = running.get(name) or (self.broker.status().pid if name == "kafka" else pids.get(name))
            up = name in running and (port is None or _listening(port))
            comps[name] = {"up": up, "pid": pid if name in running else None, "port": port,
                           "log": str(self.log_file(name))}
        out: dict[str, Any] = {"home": str(self.root), "components": comps, "lag": {}, "events_per_s": None,
                               "last_event": None, "spool": {name: _spool(path) for name, path in self.spools.items()}}
        if comps["kafka"]["up"]:
            try:
                out["lag"] = self._lag()
                first = self._event_offsets()
                time.sleep(sample_s)
                out["events_per_s"] = round((self._event_offsets() - first) / sample_s, 1)
            except Exception as exc:  # a status report names the failure rather than failing
                out["kafka_error"] = str(exc)
        if comps["processors"]["up"]:
            try:
                last = self._query("SELECT max(ts) FROM agentgym.experiences WHERE ts > 0")
                out["last_event"] = last if last and not last.startswith("1970") else None
            except Exception as exc:
                out["clickhouse_error"] = str(exc)
        return out

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap})

    def _event_offsets(self) -> int:
        """The sum of the high watermarks of the event topics (experiences, feedback, outcomes)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "agentgym-status", "enable.auto.commit": False})
        try:
            total = 0
            for base in ("experiences", "feedback", "outcomes"):
                spec = TOPICS[base]
                for p in range(spec.partitions):
                    total += c.get_watermark_offsets(TopicPartition(spec.name, p), timeout=5)[1]
            return total
        finally:
            c.close()

    def _lag(self) -> dict[str, dict[str, int]]:
        """group -> topic -> lag (high watermark minus committed offset, summed over partitions)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, Consumer, TopicPartition

        admin = self._admin()
        groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid
                  if g.group_id.startswith(self.app_id) or g.group_id == self.sink_group]
        out: dict[str, dict[str, int]] = {}
        if not groups:
            return out
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "agentgym-status", "enable.auto.commit": False})
        try:
            for group in sorted(groups):
                res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
                per_topic: dict[str, int] = {}
                for tp in res.topic_partitions:
                    if tp.offset < 0:
                        continue
                    high = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)[1]
                    per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(0, high - tp.offset)
                out[group] = dict(sorted(per_topic.items()))
        finally:
            c.close()
        return out


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _spool(path: Path) -> dict[str, Any]:
    sizes = [p.stat().st_size for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    # empty files are the spool's locks and fresh segments: no event waits in them
    return {"dir": str(path), "files": sum(1 for n in sizes if n), "bytes": sum(sizes)}
