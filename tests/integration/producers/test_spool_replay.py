"""Nothing is lost when Kafka is away: stop the real broker, record, restart, replay.

These tests run their own broker (not the session's), because they stop it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentgym.ops.kafka.broker import KafkaBroker
from agentgym.producers.admin import ensure_topics
from agentgym import AgentGym
from tests.conftest import start_broker
from tests.kafka_utils import consume_all, decode_all


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka-restartable"))
    ensure_topics(broker.bootstrap_servers)
    try:
        yield broker
    finally:
        broker.stop()


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def _record(gym: AgentGym, key: str, seq: int, phase: str) -> None:
    gym.record_experience(trace_id=key, input=f"{phase}-{seq}", output="o", model_name="m", model_version="v1",
                          latency_ms=1.0, metadata={"seq": seq, "phase": phase})


def test_spooled_while_broker_down_and_replayed_in_order(own_broker: KafkaBroker, tmp_path: Path, unique: str) -> None:
    gym = AgentGym(own_broker.bootstrap_servers, tenant_id=f"t-{unique}", agent_id="a", spool_dir=tmp_path / "spool",
                   delivery_timeout_s=3, spool_replay_interval_s=0.5)
    keys = [f"{unique}-k{i}" for i in range(4)]
    try:
        for i in range(8):
            _record(gym, keys[i % 4], i, "before")
        assert gym.flush(15) == 0
        own_broker.stop()

        t0 = time.monotonic()
        for i in range(40):
            _record(gym, keys[i % 4], i, "down")
        call_s = time.monotonic() - t0
        assert call_s < 1.0, f"recording blocked the agent for {call_s:.2f}s while Kafka was away"
        _wait(lambda: gym.stats["spooled"] >= 40, 30, "the 40 events to reach the spool")
        assert sum(1 for _ in gym.spool_dir.glob("segment-*.log")) >= 1

        own_broker.start(wait_s=120, quiet=True)
        _wait(lambda: gym.stats["replayed"] >= 40, 60, "the spool to be replayed")
        assert gym.flush(15) == 0
    finally:
        gym.close()

    msgs = consume_all(own_broker.bootstrap_servers, "gym-experiences-v1", 48,
                       match=lambda m: m.key().decode().startswith(unique))
    recs = decode_all(msgs)
    seen = [(r["metadata"]["phase"], int(r["metadata"]["seq"])) for r in recs]
    assert len(seen) == len(set(seen)) == 48, "every event exactly once"
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in recs:
        if r["metadata"]["phase"] == "down":
            per_key[r["trace_id"]].append(int(r["metadata"]["seq"]))
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs), f"replay out of order for {key}: {seqs}"
    assert not list(gym.spool_dir.glob("segment-*.log")), "replayed segments are removed"


def test_close_while_broker_down_spools_and_next_process_replays(own_broker: KafkaBroker, tmp_path: Path, unique: str) -> None:
    spool = tmp_path / "spool"
    own_broker.stop()
    gym = AgentGym(own_broker.bootstrap_servers, tenant_id=f"t-{unique}", agent_id="a", spool_dir=spool,
                   delivery_timeout_s=60, spool_replay_interval_s=0.5)
    for i in range(25):
        _record(gym, f"{unique}-x", i, "closed")
    gym.close(timeout_s=1)  # the agent exits while Kafka is away: in-flight events go to disk
    assert gym.stats["spooled"] == 25
    assert list(spool.glob("*/segment-*.log")), "the spool must hold the undelivered events"

    own_broker.start(wait_s=120, quiet=True)
    # a new process (new client) adopts the dead client's spool and replays it
    gym2 = AgentGym(own_broker.bootstrap_servers, tenant_id=f"t-{unique}", agent_id="a", spool_dir=spool,
                    spool_replay_interval_s=0.5)
    try:
        _wait(lambda: gym2.stats["replayed"] >= 25, 60, "the adopted spool to be replayed")
        gym2.flush(15)
    finally:
        gym2.close()
    recs = decode_all(consume_all(own_broker.bootstrap_servers, "gym-experiences-v1", 25,
                                  match=lambda m: m.key().decode() == f"{unique}-x"))
    assert [int(r["metadata"]["seq"]) for r in recs] == list(range(25))
    assert not list(spool.glob("*/segment-*.log")), "replayed segments are removed"
