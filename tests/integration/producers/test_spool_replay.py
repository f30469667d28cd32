"""Nothing is lost when Kafka is away: stop the real broker, record, restart, replay.

These tests run their own broker (not the session's), because they stop it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentgym.ops.kafka.broker import KafkaBroker
from agentgym.producers.admin import ensure_topics
from agentgym.producers.spool import read_segment
from agentgym.schemas.codec import AvroCodec
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


def test_events_recorded_as_the_client_finds_kafka_gone_are_spooled_in_their_order(own_broker: KafkaBroker, tmp_path: Path,
                                                                                    unique: str) -> None:
    """Kafka stops under an agent that keeps recording: events wait in librdkafka's queue until the client learns
    that no broker answers, and reach the spool as that queue is moved there. The events recorded after that
    moment must follow them in the spool, which the replay sends in order (they used to be appended at once, ahead
    of the queued ones: the next test's agent then saw its events 2..24 arrive before 0 and 1)."""
    spool = tmp_path / "spool"
    gym = AgentGym(own_broker.bootstrap_servers, tenant_id=f"t-{unique}", agent_id="a", spool_dir=spool,
                   delivery_timeout_s=60, spool_replay_interval_s=3600)
    state: dict[str, int | None] = {"n": 0, "gone_at": None}

    def agent() -> None:  # bursts of 100 calls without a pause, as a busy agent records
        deadline, n = time.monotonic() + 60, 0
        while time.monotonic() < deadline:
            for _ in range(100):
                _record(gym, f"{unique}-o", n, "x")
                n += 1
                if state["gone_at"] is None and gym._broker_down:  # white-box: when the background thread learnt it
                    state["gone_at"] = n
            state["n"] = n
            gone = state["gone_at"]
            if gone is not None and n >= gone + 300:
                return
            time.sleep(0.002)

    try:
        assert gym.flush(15) == 0
        recording = threading.Thread(target=agent)
        recording.start()
        time.sleep(0.3)
        own_broker.stop()
        recording.join(90)
        gym.close(timeout_s=1)
    finally:
        own_broker.start(wait_s=120, quiet=True)
    assert state["gone_at"] is not None, state
    segments = sorted(spool.glob("*/segment-*.log"))
    codec = AvroCodec()
    seqs = [int(codec.decode(value).record["metadata"]["seq"]) for seg in segments for _t, _k, value in read_segment(seg)]
    assert gym.stats["spooled"] == len(seqs) > 300 and gym.stats["dropped"] == 0, gym.stats
    # what Kafka did not take is a suffix of the recording, in its order (the first events were delivered)
    assert seqs == list(range(seqs[0], state["n"] or 0)), (
        f"spooled out of order (the client learnt it at event {state['gone_at']}): "
        f"{[(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1][:5]}")

