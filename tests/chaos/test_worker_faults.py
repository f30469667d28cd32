"""The worker and the broker under faults, with real processes: a worker SIGKILLed
mid-batch and restarted; the broker SIGKILLed and restarted while agents produce;
SIGTERM to a worker whose broker is gone. Counts in ClickHouse are exact: nothing
lost, nothing visible twice. Recovery times are printed."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from agentgym import AgentGym
from agentgym.ops.kafka.broker import KafkaBroker
from tests.workers import Worker, wait_for, worker_env

pytestmark = pytest.mark.timeout(300)


def _count(port: int, sql: str) -> int:
    url = f"http://127.0.0.1:{port}/?" + urllib.parse.urlencode({"query": sql})
    with urllib.request.urlopen(url, timeout=10) as r:
        return int(r.read().decode().strip())


def _counts(port: int, tenant: str) -> tuple[int, int]:
    """(visible rows, distinct event ids) of the tenant's experiences."""
    visible = _count(port, f"SELECT count() FROM agentgym.v_experiences WHERE tenant_id = '{tenant}'")
    distinct = _count(port, f"SELECT uniqExact(event_id) FROM agentgym.v_experiences WHERE tenant_id = '{tenant}'")
    return visible, distinct


def _raw(port: int, tenant: str) -> int:
    return _count(port, f"SELECT count() FROM agentgym.experiences WHERE tenant_id = '{tenant}'")


def _record(gym: AgentGym, i: int) -> None:
    gym.record_experience(input=f"q{i}", output="a", model_name="m", model_version="v1", latency_ms=1.0,
                          event_id=f"{gym.tenant_id}-{i}", metadata={"i": i})


def test_worker_killed_mid_batch_restarts_fast_without_loss_or_duplicates(own_broker: KafkaBroker, unique: str,
                                                                           tmp_path: Path) -> None:
    tenant = f"w-{unique}"
    bootstrap = own_broker.bootstrap_servers
    env = worker_env(bootstrap, tmp_path / "home", f"app-{unique}", "sink,labeller",
                     AGENTGYM_SINK_GROUP=f"sink-{unique}", AGENTGYM_SINK_BATCH_SIZE="500", AGENTGYM_SINK_BATCH_MS="100")
    port = int(env["AGENTGYM_HTTP_PORT"])
    n = 10_000
    with AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        for i in range(n):
            _record(gym, i)
    worker = Worker(env, tmp_path / "worker-1.log").start()
    try:
        wait_for(lambda: _raw(port, tenant) >= 1000, 120, "the first batches", worker, every=0.05)
        worker.kill()  # mid-stream: some batches committed, others not
    finally:
        worker.kill()

    # more events while it is down, so there is something new to insert after the restart
    with AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        for i in range(n, n + 1000):
            _record(gym, i)
    t0 = time.monotonic()
    worker2 = Worker(env, tmp_path / "worker-2.log").start()
    try:
        wait_for(lambda: _raw(port, tenant) >= 0, 120, "the read interface after the restart", worker2, every=0.1)
        t_ready = time.monotonic() - t0
        first = _raw(port, tenant)
        wait_for(lambda: _raw(port, tenant) > first, 120, "the first insert after the restart", worker2, every=0.1)
        t_insert = time.monotonic() - t0
        wait_for(lambda: _counts(port, tenant)[0] >= n + 1000, 180, "every event after the restart", worker2)
        t_all = time.monotonic() - t0
        visible, distinct = _counts(port, tenant)
    finally:
        code = worker2.stop()
    print(f"\nworker kill -9 + restart: read interface up {t_ready:.1f}s, first insert {t_insert:.1f}s, "
          f"all {n + 1000} events {t_all:.1f}s after the restart")
    assert (visible, distinct) == (n + 1000, n + 1000), "nothing lost, nothing visible twice"
    assert code == 0, worker2.tail()


@pytest.mark.parametrize("order", ["broker-first", "worker-first"])
def test_sigterm_stops_the_worker_whatever_the_broker_state(own_broker: KafkaBroker, unique: str, tmp_path: Path,
                                                            order: str) -> None:
    tenant = f"s-{unique}"
    env = worker_env(own_broker.bootstrap_servers, tmp_path / "home", f"app-{unique}", "sink,labeller",
                     AGENTGYM_SINK_GROUP=f"sink-{unique}")
    port = int(env["AGENTGYM_HTTP_PORT"])
    with AgentGym(own_broker.bootstrap_servers, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        for i in range(500):
            _record(gym, i)
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: _counts(port, tenant)[0] >= 500, 120, "the events in ClickHouse", worker)
        if order == "broker-first":
            own_broker.kill()
        t0 = time.monotonic()
        assert worker.proc is not None
        worker.proc.terminate()
        code = worker.proc.wait(30)
        took = time.monotonic() - t0
    finally:
        worker.kill()
        if order == "broker-first":
            own_broker.start(wait_s=120, quiet=True)
    log = worker.log.read_text(errors="replace")
    errors = [line for line in log.splitlines() if "ERROR" in line or "FAIL" in line]
    print(f"\nSIGTERM ({order}): worker exited with {code} after {took:.1f}s; {len(errors)} error lines in its log")
    assert took < 15, f"the worker took {took:.1f}s to stop\n{worker.tail()}"
    assert len(errors) < 30, "\n".join(errors[-40:])
    if order == "broker-first":
        assert "unreachable" in log, worker.tail()


def test_broker_killed_and_restarted_during_produce(own_broker: KafkaBroker, unique: str, tmp_path: Path) -> None:
    """Agents keep recording through a broker kill -9 and restart; a worker sinks it all.

    Exact counts in ClickHouse: every event once. Printed: how long after the broker's
    restart the sink inserted again, and how long until every event was in.
    """
    tenant = f"b-{unique}"
    bootstrap = own_broker.bootstrap_servers
    env = worker_env(bootstrap, tmp_path / "home", f"app-{unique}", "sink",
                     AGENTGYM_SINK_GROUP=f"sink-{unique}", AGENTGYM_SINK_BATCH_MS="100")
    port = int(env["AGENTGYM_HTTP_PORT"])
    worker = Worker(env, tmp_path / "worker.log").start()
    n_before, n_down, n_after = 3000, 3000, 3000
    gym = AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool", delivery_timeout_s=5,
                   spool_replay_interval_s=0.5)
    try:
        wait_for(lambda: _raw(port, tenant) >= 0, 120, "the worker's read interface", worker)
        for i in range(n_before):
            _record(gym, i)
        assert gym.flush(30) == 0
        wait_for(lambda: _raw(port, tenant) >= n_before, 120, "the first events in ClickHouse", worker)
        own_broker.kill()
        for i in range(n_before, n_before + n_down):
            _record(gym, i)
            if i % 100 == 0:
                time.sleep(0.02)  # ~5,000 events/s while the broker is away
        before_restart = _raw(port, tenant)
        own_broker.start(wait_s=120, quiet=True)
        t0 = time.monotonic()
        for i in range(n_before + n_down, n_before + n_down + n_after):
            _record(gym, i)
        wait_for(lambda: _raw(port, tenant) > before_restart, 120, "the first insert after the restart", worker, every=0.1)
        t_insert = time.monotonic() - t0
        total = n_before + n_down + n_after
        wait_for(lambda: _counts(port, tenant)[0] >= total, 180, "every event", worker, every=0.2)
        t_all = time.monotonic() - t0
        visible, distinct = _counts(port, tenant)
        raw = _raw(port, tenant)
    finally:
        gym.close()
        worker.stop()
    print(f"\nbroker kill -9 during produce: {gym.stats['spooled']} events spooled, {gym.stats['replayed']} replayed; "
          f"first insert {t_insert:.1f}s and all {total} events {t_all:.1f}s after the broker restarted; "
          f"{raw - visible} raw duplicate rows merged away")
    assert (visible, distinct) == (total, total), "nothing lost, nothing visible twice"
    assert gym.stats["dropped"] == 0
