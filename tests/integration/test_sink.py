"""The ClickHouse sink against the real broker and the real embedded ClickHouse engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from confluent_kafka import Producer

from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym import AgentGym
from agentgym.schemas import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests.kafka_utils import consume_all, decode_all, drain_sink
from tests.workers import Worker, wait_for, worker_env


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


_drain = drain_sink


def test_every_event_arrives_exactly_once(bootstrap: str, store: Store, unique: str, tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    with AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        traces = [gym.record_experience(input=f"q{i}", output="a", model_name="m", model_version="v1", latency_ms=float(i))
                  for i in range(3000)]
        for t in traces[:500]:
            gym.record_feedback(t, thumbs_up=True)
    sink = ClickHouseSink(bootstrap, store, group=f"g-{unique}", batch_size=1000, batch_ms=200)
    try:
        count = lambda table: store.query(f"SELECT count() FROM {table} WHERE tenant_id = %(t)s", {"t": tenant}).rows[0][0]  # noqa: E731
        _drain(sink, lambda: count("experiences") >= 3000 and count("feedback") >= 500)
    finally:
        sink.close()
    # raw tables hold each event once (no replay happened), and so do the analyst views
    assert count("experiences") == count("v_experiences") == 3000
    assert count("feedback") == count("v_feedback") == 500
    rows = store.query("SELECT trace_id, latency_ms, input.content[1] FROM v_experiences WHERE tenant_id = %(t)s ORDER BY latency_ms",
                       {"t": tenant}).rows
    assert [r[0] for r in rows] == traces
    assert rows[7][1:] == (7.0, "q7")


def test_bad_input_goes_to_dead_letters_and_the_sink_keeps_going(bootstrap: str, store: Store, unique: str, tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    codec = AvroCodec()
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce("gym-experiences-v1", b"this is not avro", f"{unique}-garbage".encode())
    fb = codec.encode("Feedback", {"event_id": f"{unique}-fb", "tenant_id": tenant, "agent_id": "a", "trace_id": "x",
                                   "timestamp_ms": 1, "kind": "rating", "rating": 3.0})
    p.produce("gym-feedback-v1", fb[:-4], f"{unique}-truncated".encode())  # a body cut short
    p.produce("gym-outcomes-v1", codec.encode("Decision", {"event_id": "d", "tenant_id": tenant, "experiment_id": "e",
                                                           "timestamp_ms": 1, "action": "stop", "reason": "r"}), f"{unique}-wrongtype".encode())
    p.flush(10)
    with AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        gym.record_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=-1.0,
                              trace_id=f"{unique}-negative")
        for i in range(20):
            gym.record_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=1.0)
    sink = ClickHouseSink(bootstrap, store, group=f"g-{unique}", batch_size=500, batch_ms=200)
    q = "SELECT key, error_type, reason, source_topic, length(payload) FROM v_dead_letters WHERE startsWith(key, %(u)s) ORDER BY key"
    try:
        _drain(sink, lambda: len(store.query(q, {"u": unique}).rows) >= 4
               and store.query("SELECT count() FROM experiences WHERE tenant_id = %(t)s", {"t": tenant}).rows[0][0] >= 20)
    finally:
        sink.close()
    dead = {r[0].decode() if isinstance(r[0], bytes) else r[0]: r[1:] for r in store.query(q, {"u": unique}).rows}
    assert dead[f"{unique}-garbage"][:3] == ("BadMarkerError", dead[f"{unique}-garbage"][1], "gym-experiences-v1")
    assert "expected marker 'c301'" in dead[f"{unique}-garbage"][1]
    assert dead[f"{unique}-garbage"][3] == len(b"this is not avro")  # the payload is kept whole
    assert dead[f"{unique}-truncated"][0] == "TruncatedMessageError" and "Feedback" in dead[f"{unique}-truncated"][1]
    assert dead[f"{unique}-wrongtype"][0] == "UnknownSchemaError" and "expected a Outcome record, got Decision" in dead[f"{unique}-wrongtype"][1]
    assert dead[f"{unique}-negative"][:2] == ("InvalidEvent", "Experience.latency_ms is negative (-1)")
    # the good events of the same batches were stored; the invalid one was not
    assert store.query("SELECT count() FROM v_experiences WHERE tenant_id = %(t)s", {"t": tenant}).rows[0][0] == 20
    # and each dead letter is on the dead-letter topic too, with its reason
    dlq = decode_all(consume_all(bootstrap, "gym-deadletter-v1", 4, match=lambda m: (m.key() or b"").decode().startswith(unique)))
    assert sorted(d["error_type"] for d in dlq) == ["BadMarkerError", "InvalidEvent", "TruncatedMessageError", "UnknownSchemaError"]


def test_killed_worker_restarts_without_loss_or_duplicates(bootstrap: str, unique: str, tmp_path: Path) -> None:
    """The real Faust worker (sink only), SIGKILLed mid-stream, then restarted."""
    tenant = f"t-{unique}"
    env = worker_env(bootstrap, tmp_path / "home", f"app-{unique}", "sink",
                     AGENTGYM_SINK_GROUP=f"sink-{unique}", AGENTGYM_SINK_BATCH_SIZE="500", AGENTGYM_SINK_BATCH_MS="100")
    port = int(env["AGENTGYM_HTTP_PORT"])
    n = 20000
    with AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        for i in range(n):
            gym.record_experience(input=f"q{i}", output="a", model_name="m", model_version="v1", latency_ms=1.0,
                                  metadata={"i": i})
    worker = Worker(env, tmp_path / "worker-1.log").start()

    def count(sql: str) -> int:
        client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        try:
            return int(client.query(sql, parameters={"t": tenant}).result_rows[0][0])
        finally:
            client.close()

    raw = "SELECT count() FROM agentgym.experiences WHERE tenant_id = %(t)s"
    try:
        # kill it once part of the stream is in: some batches committed, others not yet
        wait_for(lambda: count(raw) >= 2000, 120, "the first batches", worker, every=0.05)
        worker.kill()
    finally:
        worker.kill()
    stored_at_kill = count_offline(tmp_path / "home" / "clickhouse", tenant)
    assert 0 < stored_at_kill < n, f"the kill came too late or too early to test anything ({stored_at_kill})"

    worker2 = Worker(env, tmp_path / "worker-2.log").start()
    try:
        wait_for(lambda: count("SELECT count() FROM agentgym.v_experiences WHERE tenant_id = %(t)s") >= n, 180,
                 "all events after the restart", worker2)
        distinct = count("SELECT uniqExact(event_id) FROM agentgym.v_experiences WHERE tenant_id = %(t)s")
        visible = count("SELECT count() FROM agentgym.v_experiences WHERE tenant_id = %(t)s")
        seqs = count("SELECT uniqExact(metadata['i']) FROM agentgym.v_experiences WHERE tenant_id = %(t)s")
    finally:
        code = worker2.stop()
    assert (visible, distinct, seqs) == (n, n, n), "nothing lost, nothing visible twice"
    assert code == 0, worker2.tail()


def count_offline(path: Path, tenant: str) -> int:
    """Rows in the store right after the crash, read with the engine in a child process."""
    import subprocess
    import sys

    code = (
        "import sys; from processors.store import open_store; "
        f"s = open_store('chdb://{path}'); "
        f"print(s.query(\"SELECT count() FROM experiences WHERE tenant_id = '{tenant}'\").rows[0][0]); s.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


def test_events_from_an_older_schema_version_are_stored_with_defaults(bootstrap: str, store: Store, unique: str) -> None:
    """A v1 StatsSnapshot (older producer) and a v2 one, through ClickHouse's Avro reader."""
    from agentgym.schemas import default_schema_set
    from tests.unit.schemas.records import EXAMPLES

    codec = AvroCodec()
    v1 = default_schema_set().get("StatsSnapshot", 1)
    v1_fields = {f["name"] for f in v1.raw["fields"]}
    old = {k: v for k, v in EXAMPLES["StatsSnapshot"].items() if k in v1_fields}
    old.update(event_id=f"{unique}-v1", experiment_id=f"exp-{unique}")
    new = dict(EXAMPLES["StatsSnapshot"], event_id=f"{unique}-v2", experiment_id=f"exp-{unique}", role="guardrail")
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce("gym-experiment-stats-v1", codec.encode_version(v1, old), f"exp-{unique}")
    p.produce("gym-experiment-stats-v1", codec.encode("StatsSnapshot", new), f"exp-{unique}")
    p.flush(10)
    # only the stats topic: from earliest on every topic, the sink would first wade through
    # what earlier tests of the session left (28,500 events after the experiments and
    # labeller tests), more than the drain's rounds
    sink = ClickHouseSink(bootstrap, store, group=f"g-{unique}", batch_size=500, batch_ms=200,
                          specs=[TOPICS["experiment-stats"]])
    q = "SELECT event_id, role, config_version, details_json, arms.n FROM v_stats_snapshots WHERE experiment_id = %(e)s ORDER BY event_id"
    try:
        _drain(sink, lambda: len(store.query(q, {"e": f"exp-{unique}"}).rows) >= 2)
    finally:
        sink.close()
    rows = store.query(q, {"e": f"exp-{unique}"}).rows
    assert rows[0][:4] == (f"{unique}-v1", "primary", 0, "{}")  # the v2 fields' defaults
    assert rows[1][:3] == (f"{unique}-v2", "guardrail", new["config_version"])
    assert list(rows[0][4]) == list(rows[1][4]) == [a["n"] for a in new["arms"]]
