"""The SDK under faults, in real agent processes: a full or unusable spool, oversized
events, an agent killed while the broker is down.

What must hold: no ``record_*`` call and no ``close()`` raises because of I/O; every
event is delivered, kept in the spool, or counted as dropped (exact counts); an
oversized event is refused at the call and one already spooled is quarantined, not
resent; with ``durability="spool"`` a SIGKILLed agent loses nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentgym import AgentGym
from agentgym.ops.kafka.broker import KafkaBroker
from agentgym.producers.exceptions import ConfigError, InvalidEventError
from agentgym.producers.spool import QUARANTINE_DIR, Spool, read_segment
from tests.chaos.conftest import ROOT, agent_cmd, run_agent, small_filesystem
from tests.kafka_utils import consume_all

pytestmark = pytest.mark.timeout(300)


@contextmanager
def _unwritable(path: Path) -> Iterator[None]:
    """Makes an existing directory unwritable on any filesystem: as root (whom modes do not stop) a read-only
    bind mount of the directory over itself, otherwise mode 0500."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        mode = path.stat().st_mode
        path.chmod(0o500)
        try:
            yield
        finally:
            path.chmod(mode)


def _spooled_records(spool: Path) -> list[tuple[str, bytes | None, bytes]]:
    return [r for seg in sorted(spool.glob("*/segment-*.log")) for r in read_segment(seg)]


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def test_spool_on_a_full_filesystem_never_raises_and_counts_every_event(tmp_path: Path, dead_bootstrap: str) -> None:
    n = 20_000
    spool = tmp_path / "full"
    with small_filesystem(spool, 1024 * 1024) as fsize_limit:
        t0 = time.monotonic()
        opts = {"fsize_limit": fsize_limit} if fsize_limit else {}
        r = run_agent(dead_bootstrap, spool, n, size=300, **opts)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr[-3000:]
        report = _last_json(r.stdout)
        stats = report["stats"]
        kept = _spooled_records(spool)
    print(f"\nfull spool: {n} events in {took:.1f}s: {stats['spooled']} spooled, {stats['dropped']} dropped "
          f"(fsize limit {fsize_limit or 'none: tmpfs'}), stderr lines {len(r.stderr.splitlines())}")
    assert report["errors"] == {}, "no record_* call and no close() may raise because of the disk"
    assert stats["dropped"] > 0, "the filesystem was meant to fill up"
    assert stats["spooled"] + stats["dropped"] == n, "every event is either kept or counted as dropped"
    assert len(kept) == stats["spooled"], "every event counted as spooled is readable from the spool"
    assert len({k for _, k, _ in kept}) == len(kept)
    assert "cannot write" in r.stderr and "dropped and counted" in r.stderr, r.stderr[-3000:]
    assert len(r.stderr.splitlines()) < 40, f"the error log is bounded, got:\n{r.stderr[-3000:]}"


def test_spool_directory_made_unwritable_while_running(tmp_path: Path, dead_bootstrap: str) -> None:
    spool = tmp_path / "imm"
    gym = AgentGym(dead_bootstrap, tenant_id="chaos", agent_id="imm", spool_dir=spool, delivery_timeout_s=30)
    try:
        with _unwritable(gym.spool_dir):
            for i in range(500):
                gym.record_experience(input="q", output="o", model_name="m", model_version="v", latency_ms=1.0)
            gym.close(timeout_s=1)
    finally:
        gym.close(timeout_s=0.5)
    assert gym.stats["spooled"] + gym.stats["dropped"] == 500
    assert gym.stats["dropped"] > 0


def test_unusable_spool_directory_is_a_config_error_naming_path_and_reason(tmp_path: Path, dead_bootstrap: str) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match=r"spool directory .*file.* is unusable: Not a directory"):
        AgentGym(dead_bootstrap, spool_dir=not_a_dir / "spool")
    imm = tmp_path / "unwritable"
    imm.mkdir()
    with _unwritable(imm), pytest.raises(ConfigError, match=r"unwritable.* is unusable: (Read-only file system|Permission denied)"):
        AgentGym(dead_bootstrap, spool_dir=imm)


def test_oversized_event_is_refused_at_the_call(tmp_path: Path, dead_bootstrap: str) -> None:
    gym = AgentGym(dead_bootstrap, spool_dir=tmp_path / "s")
    try:
        with pytest.raises(InvalidEventError, match=r"is \d+ bytes .* over the limit of 1000000 bytes"):
            gym.record_experience(input="q", output="x" * 1_100_000, model_name="m", model_version="v", latency_ms=1)
        small = AgentGym(dead_bootstrap, spool_dir=tmp_path / "s2", max_event_bytes=5000)
        with pytest.raises(InvalidEventError, match="over the limit of 5000 bytes"):
            small.record_feedback("t", comment="c" * 6000)
        small.close(timeout_s=0.5)
    finally:
        gym.close(timeout_s=0.5)
    assert gym.stats["spooled"] == 0


def test_oversized_event_in_the_spool_is_quarantined_and_replay_goes_on(own_broker: KafkaBroker, tmp_path: Path,
                                                                        unique: str) -> None:
    """An event spooled by an older SDK (or a bigger limit) that the broker will never take."""
    from agentgym.schemas.codec import AvroCodec

    root = tmp_path / "spool"
    codec = AvroCodec()
    old = Spool(root)

    def event(i: int, size: int) -> bytes:
        return codec.encode("Experience", {
            "event_id": f"{unique}-{i}", "tenant_id": "chaos", "agent_id": "a", "trace_id": f"{unique}-{i}",
            "timestamp_ms": 0, "input": [{"role": "user", "content": "q"}], "output": "x" * size, "model_name": "m",
            "model_version": "v", "latency_ms": 1.0, "status": "ok"})

    for i in range(100):
        old.append("gym-experiences-v1", f"{unique}-{i}".encode(), event(i, 2_000_000 if i == 40 else 100))
    old.take_segments()
    os.close(old._lock_fd)  # the old agent died: its spool is adopted

    gym = AgentGym(own_broker.bootstrap_servers, tenant_id="chaos", agent_id="a", spool_dir=root,
                   spool_replay_interval_s=0.3)
    try:
        deadline = time.monotonic() + 60
        while gym.stats["replayed"] < 99 and time.monotonic() < deadline:
            time.sleep(0.2)
        gym.flush(15)
        passes_seen = gym.stats["replayed"]
        time.sleep(1.0)  # a few more replay intervals: nothing may be sent again
        assert gym.stats["replayed"] == passes_seen == 99
    finally:
        gym.close()
    msgs = consume_all(own_broker.bootstrap_servers, "gym-experiences-v1", 99,
                       match=lambda m: m.key().decode().startswith(f"{unique}-"))
    keys = sorted(int(m.key().decode().rsplit("-", 1)[1]) for m in msgs)
    assert keys == [i for i in range(100) if i != 40], "the rest delivered exactly once, before and after it"
    assert gym.stats["quarantined"] == 1
    quarantined = [r for q in (root / QUARANTINE_DIR).glob("*.log") for r in read_segment(q)]
    assert [k for _, k, _ in quarantined] == [f"{unique}-40".encode()]
    assert not list(root.glob("*/segment-*.log")), "the replayed segment is removed"


@pytest.mark.parametrize("durability", ["spool", "memory"])
def test_agent_sigkilled_while_the_broker_is_down(own_broker: KafkaBroker, tmp_path: Path, unique: str,
                                                  durability: str) -> None:
    """The broker dies (kill -9) while the agent records; the agent is SIGKILLed; both come back.

    ``spool``: every call that returned is in Kafka after the replay (zero loss).
    ``memory``: what was in librdkafka's queue when the agent died and had not yet been
    moved to the spool is lost; the figure is printed (README's guarantees).
    """
    spool = tmp_path / "spool"
    tag = f"{unique}-{durability}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    err = open(tmp_path / "agent.err", "w")
    proc = subprocess.Popen(agent_cmd(own_broker.bootstrap_servers, spool, 4000, tag=tag, durability=durability,
                                      rate=2000, hold=True),
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env)
    err.close()
    assert proc.stdout is not None
    returned = -1
    killed_broker = False
    for line in proc.stdout:
        if line.startswith("recorded "):
            returned = int(line.split()[1])
            if returned == 1000 and not killed_broker:
                own_broker.kill()
                killed_broker = True
        elif line.startswith("held"):
            break
    proc.kill()  # SIGKILL: no close(), no atexit
    proc.wait(30)
    assert returned == 3999, (tmp_path / "agent.err").read_text()[-3000:]

    own_broker.start(wait_s=120, quiet=True)
    t0 = time.monotonic()
    # the next agent process on the same spool root adopts and replays what the dead one kept
    gym = AgentGym(own_broker.bootstrap_servers, tenant_id="chaos", agent_id="next", spool_dir=spool,
                   spool_replay_interval_s=0.3)
    try:
        deadline = time.monotonic() + 90
        while list(spool.glob("*/segment-*.log")) and time.monotonic() < deadline:
            time.sleep(0.2)
        gym.flush(15)
    finally:
        gym.close()
    msgs = consume_all(own_broker.bootstrap_servers, "gym-experiences-v1", 4000, timeout_s=30,
                       match=lambda m: m.key().decode().startswith(f"{tag}-"))
    ids = {int(m.key().decode().rsplit("-", 1)[1]) for m in msgs}
    lost = sorted(set(range(4000)) - ids)
    print(f"\nagent SIGKILLed with the broker down (durability={durability}): {len(lost)} of 4000 lost, "
          f"{len(msgs) - len(ids)} duplicates in Kafka (deduplicated by event_id downstream); "
          f"spool replayed {time.monotonic() - t0:.1f}s after the broker came back")
    if durability == "spool":
        assert lost == [], f"lost {len(lost)} events: {lost[:20]}"
    else:
        # only the queue at the moment of the crash can be lost: events recorded after
        # the client saw the broker down (well within 1000 events = 0.5 s) went to the spool at once
        assert max(lost, default=0) < 2000, f"events recorded long after the broker died were lost: {lost[-20:]}"
