"""A three-broker KRaft cluster under faults, with real processes: the broker that leads
partitions of the trace topics is killed with kill -9 (a) while an agent records through
the SDK and (b) while the ClickHouse sink consumes a live stream.

What must hold: every event is in ClickHouse exactly once (count and distinct ids), no
``record_*`` call raised and none was lost; the agent's calls return while partitions
have no leader (the longest call is printed, not asserted: no timings in asserts). The
time to recover is printed: (a) from the kill until every partition the dead broker led
(of a probe topic) took an ``acks=all`` write, (b) from the kill to the first event
recorded after it into a partition the dead broker led that the sink inserted.

The cluster runs with ``broker.session.timeout.ms`` of 3 s instead of Kafka's 9 s, so
the controller fences a dead broker sooner, and its JVMs (the storage formatting too)
compile with C1 only (a start about twice as fast on two busy cores); everything else is
Kafka's default. The broker
killed in (a) starts again once writes recovered, while the agent still records; (b)
waits until every partition has its three replicas in sync again before it kills the
next leader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from agentgym import AgentGym
from agentgym.ops.kafka.broker import KafkaCluster, free_ports
from agentgym.ops.settings import StackSettings
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.producers.admin import create_topics, ensure_topics
from agentgym.schemas.topics import TOPICS
from tests.kafka_utils import drain_sink

pytestmark = pytest.mark.timeout(240)

EXPERIENCES = TOPICS["experiences"].name
SESSION_TIMEOUT_MS = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    s = StackSettings()
    ports = free_ports(6)
    c = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), 3, ports=list(zip(ports[::2], ports[1::2])),
                     version=s.kafka_version, jar_cache=s.jar_cache, heap="256m",
                     properties={"broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
                                 "broker.heartbeat.interval.ms": "500"},
                     jvm_options=["-XX:TieredStopAtLevel=1"])
    t0 = time.monotonic()
    try:
        c.start(wait_s=180, quiet=True)
        ensure_topics(c.bootstrap_servers)
        _wait(lambda: _fully_replicated(c.bootstrap_servers, [s.name for s in TOPICS.values()]), 60, "the topics' replicas")
        print(f"\n3-broker cluster up with topics in {time.monotonic() - t0:.1f}s")
        yield c
    finally:
        c.kill()  # a throw-away cluster: no clean shutdown to wait for


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('ch-cluster') / 'ch'}")
    migrate(s)
    yield s
    s.close()


# -- the cluster's state -------------------------------------------------------------------

def _partitions(bootstrap: str) -> dict[str, dict[int, Any]]:
    md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=10)
    return {name: dict(t.partitions) for name, t in md.topics.items()}


def _leader_of_partition_0(bootstrap: str) -> tuple[int, list[int]]:
    """The broker leading partition 0 of the experiences topic, and every partition it leads."""
    parts = _partitions(bootstrap)[EXPERIENCES]
    victim = parts[0].leader
    return victim, sorted(p for p, m in parts.items() if m.leader == victim)


def _fully_replicated(bootstrap: str, topics: list[str] | None = None) -> bool:
    """Every partition of every topic (of ``topics``, which must exist) has a live leader and 3 in-sync replicas."""
    try:
        parts = _partitions(bootstrap)
    except Exception:
        return False
    if topics is not None and not set(topics) <= set(parts):
        return False
    return all(m.leader >= 0 and len(m.isrs) == 3 for topic in parts.values() for m in topic.values())


def _wait(cond: Any, timeout_s: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


# -- the agent -----------------------------------------------------------------------------

class Agent(threading.Thread):
    """Records ``n`` experiences at ``rate`` per second through the SDK, timing every call."""

    def __init__(self, gym: AgentGym, n: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.gym, self.n, self.rate = gym, n, rate
        self.recorded = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.when: list[float] = []  # time.monotonic() after each call returned

    def run(self) -> None:
        t0 = time.monotonic()
        for i in range(self.n):
            s = time.perf_counter()
            try:
                self.gym.record_experience(input=f"q{i}", output="a", model_name="m", model_version="v1", latency_ms=1.0,
                                           trace_id=f"{self.gym.tenant_id}-{i}", event_id=f"{self.gym.tenant_id}-{i}")
            except Exception as exc:  # there must be none
                self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
            self.latencies.append(time.perf_counter() - s)
            self.when.append(time.monotonic())
            self.recorded = i + 1
            delay = t0 + (i + 1) / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def calls_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.when if t0 <= t < t1)


def _first_ack(bootstrap: str, topic: str, partitions: list[int], since: float, timeout_s: float = 60) -> float:
    """Produces to ``partitions`` of ``topic`` (acks=all) every 50 ms until each acknowledged a
    write; returns seconds from ``since`` to the first acknowledgement of all of them."""
    acked: dict[int, float] = {}
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0,
                  "message.timeout.ms": 5000, "log_level": 0})

    def done(err: Any, msg: Any) -> None:
        if err is None:
            acked.setdefault(msg.partition(), time.monotonic())

    deadline = time.monotonic() + timeout_s
    while len(acked) < len(partitions) and time.monotonic() < deadline:
        for part in partitions:
            if part not in acked:
                p.produce(topic, b"probe", partition=part, on_delivery=done)
        p.poll(0.05)
    p.flush(10)
    assert len(acked) == len(partitions), f"partitions {sorted(set(partitions) - set(acked))} took no write in {timeout_s}s"
    return max(acked.values()) - since


def _counts(store: Store, tenant: str) -> tuple[int, int]:
    """(visible rows, distinct event ids) of the tenant's experiences."""
    row = store.query("SELECT count(), uniqExact(event_id) FROM v_experiences WHERE tenant_id = %(t)s", {"t": tenant}).rows[0]
    return int(row[0]), int(row[1])


def _sink(cluster: KafkaCluster, store: Store, group: str) -> ClickHouseSink:
    return ClickHouseSink(cluster.bootstrap_servers, store, group=group, batch_size=500, batch_ms=100, deletions=False)


# -- the tests -----------------------------------------------------------------------------

def test_topics_are_replicated_three_times_with_two_in_sync_required(cluster: KafkaCluster) -> None:
    from confluent_kafka.admin import ConfigResource

    parts = _partitions(cluster.bootstrap_servers)
    for spec in TOPICS.values():
        assert all(len(m.replicas) == 3 for m in parts[spec.name].values()), spec.name
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    topic = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, EXPERIENCES)])
    assert next(iter(topic.values())).result(10)["min.insync.replicas"].value == "2"
    # internal topics (consumer offsets, transactions) are made on first use, from the brokers' settings
    broker = next(iter(admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")]).values())).result(10)
    assert {k: broker[k].value for k in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                                         "default.replication.factor", "min.insync.replicas")} == {
        "offsets.topic.replication.factor": "3", "transaction.state.log.replication.factor": "3",
        "default.replication.factor": "3", "min.insync.replicas": "2"}


def test_a_faust_worker_creates_its_topics_with_three_replicas(cluster: KafkaCluster, tmp_path: Path) -> None:
    import faust

    from agentgym.processors import replication
    from agentgym.processors.settings import ProcessorSettings

    # the hook create_app installs, on a bare app (the whole app's imports are slow)
    app = faust.App("replication-test", broker=f"kafka://{cluster.members[0].bootstrap_servers}", topic_replication_factor=1)
    replication.install(app, ProcessorSettings(home=tmp_path, bootstrap_servers=cluster.bootstrap_servers))  # type: ignore[arg-type]
    app.on_worker_init.send()  # what `faust worker` does before the app starts and declares its topics
    assert app.conf.topic_replication_factor == 3


def test_leader_killed_during_produce_loses_nothing_and_never_blocks_the_agent(
        cluster: KafkaCluster, store: Store, unique: str, tmp_path: Path) -> None:
    tenant = f"cp-{unique}"
    probe = f"probe-{unique}"
    create_topics(cluster.bootstrap_servers, {probe: (6, {})})  # replication from the cluster: 3
    n, rate = 3000, 500.0
    gym = AgentGym(cluster.bootstrap_servers, tenant, "a", spool_dir=tmp_path / "spool", spool_replay_interval_s=0.5)
    agent = Agent(gym, n, rate)
    victim = -1
    try:
        agent.start()
        _wait(lambda: agent.recorded >= n // 4, 60, "the first quarter recorded")
        victim, _ = _leader_of_partition_0(cluster.bootstrap_servers)
        probe_parts = sorted(p for p, m in _partitions(cluster.bootstrap_servers)[probe].items() if m.leader == victim)
        t_kill = time.monotonic()
        cluster.kill_member(victim)
        recover_s = _first_ack(cluster.bootstrap_servers, probe, probe_parts, t_kill)
        during = agent.calls_between(t_kill, t_kill + recover_s)
        cluster.member(victim).launch(quiet=True)  # back for the next test: it catches up while the agent records
        agent.join(60)
        assert not agent.is_alive(), "the agent did not finish"
        unflushed = gym.flush(60)
    finally:
        gym.close()
    sink = _sink(cluster, store, f"g-{unique}")
    try:
        drain_sink(sink, lambda: _counts(store, tenant)[0] >= n)
    finally:
        sink.close()
    visible, distinct = _counts(store, tenant)
    print(f"\nleader kill -9 during produce: broker {victim} killed after {n // 4} of {n} events at {rate:.0f}/s; "
          f"first acks=all write to its partitions {recover_s:.2f}s after the kill; {during} record calls returned "
          f"meanwhile; longest call {max(agent.latencies) * 1000:.1f} ms; SDK stats {gym.stats}")
    assert agent.errors == {}, "no record_* call may raise because a broker died"
    assert unflushed == 0 and gym.stats["dropped"] == 0
    assert during > 0, "the agent kept recording while the partitions had no leader"
    assert (visible, distinct) == (n, n), "every event in ClickHouse exactly once"


def test_leader_killed_during_consumption_loses_nothing_and_duplicates_nothing(
        cluster: KafkaCluster, store: Store, unique: str, tmp_path: Path) -> None:
    tenant = f"cc-{unique}"
    t0 = time.monotonic()
    _wait(lambda: _fully_replicated(cluster.bootstrap_servers), 120, "3 in-sync replicas everywhere (a broker restarted)")
    print(f"\nevery partition had 3 in-sync replicas again {time.monotonic() - t0:.1f}s into the test")
    n, rate = 3000, 500.0
    gym = AgentGym(cluster.bootstrap_servers, tenant, "a", spool_dir=tmp_path / "spool", spool_replay_interval_s=0.5)
    agent = Agent(gym, n, rate)
    sink = _sink(cluster, store, f"g-{unique}")
    victim = -1
    marks: dict[str, float] = {}
    try:
        agent.start()
        drain_sink(sink, lambda: agent.recorded >= n // 4 and _counts(store, tenant)[0] > 0)
        victim, dead = _leader_of_partition_0(cluster.bootstrap_servers)
        i_kill = agent.recorded
        t_kill = time.monotonic()
        cluster.kill_member(victim)
        # the first event recorded after the kill into a partition the dead broker led, in ClickHouse
        # (librdkafka's default partitioner puts a key in partition CRC-32(key) % partitions)
        parts = ",".join(map(str, dead))
        after_kill = (f"SELECT count() FROM experiences WHERE tenant_id = %(t)s AND modulo(crc32(trace_id), 6) IN ({parts}) "
                      f"AND toUInt32(splitByChar('-', event_id)[-1]) >= {i_kill}")

        def until() -> bool:
            if "first" not in marks and store.query(after_kill, {"t": tenant}).rows[0][0] > 0:
                marks["first"] = time.monotonic() - t_kill
            return "first" in marks and not agent.is_alive() and _counts(store, tenant)[0] >= n

        drain_sink(sink, until, idle_rounds=300)  # partitions without a leader read nothing for a while
        marks["all"] = time.monotonic() - t_kill
        agent.join(60)
        visible, distinct = _counts(store, tenant)
        raw = store.query("SELECT count() FROM experiences WHERE tenant_id = %(t)s", {"t": tenant}).rows[0][0]
    finally:
        sink.close()
        gym.close()
    print(f"leader kill -9 during consumption: broker {victim} (leader of partitions {dead}) killed after {i_kill} of "
          f"{n} events; the first event recorded after the kill into those partitions was inserted "
          f"{marks['first']:.2f}s after the kill, every event {marks['all']:.2f}s after it; {raw - visible} raw "
          f"duplicate rows merged away; longest record call {max(agent.latencies) * 1000:.1f} ms; SDK stats {gym.stats}")
    assert agent.errors == {} and gym.stats["dropped"] == 0
    assert (visible, distinct) == (n, n), "every event in ClickHouse exactly once"
