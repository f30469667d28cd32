"""The configuration version and status that served a unit reach ClickHouse (Experience v3, Outcome v2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agentgym import AgentGym
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.producers.assignment import Assignment
from agentgym.schemas import AvroCodec, default_schema_set
from agentgym.schemas.topics import TOPICS
from tests.unit.schemas.records import EXAMPLES


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


def test_served_config_version_and_status_are_stored(bootstrap: str, store: Store, unique: str, tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    served = Assignment("exp1", "control", "v3", "user", "u1", 7, "paused")
    with AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        new = gym.record_experience(input="q", output="a", model_name="m", model_version="v3", latency_ms=1.0, assignment=served)
        bare = gym.record_experience(input="q", output="a", model_name="m", model_version="v3", latency_ms=1.0)
    codec = AvroCodec()
    v2 = default_schema_set().get("Experience", 2)
    v2_fields = {f["name"] for f in v2.raw["fields"]}
    old = {k: v for k, v in EXAMPLES["Experience"].items() if k in v2_fields}
    old.update(event_id=f"{unique}-old", tenant_id=tenant, trace_id=f"{unique}-old")
    outcome = dict(EXAMPLES["Outcome"], event_id=f"{unique}-o", tenant_id=tenant, trace_id=new, config_version=7,
                   experiment_status="paused")
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(TOPICS["experiences"].name, codec.encode_version(v2, old), old["trace_id"])  # an older SDK
    p.produce(TOPICS["outcomes"].name, codec.encode("Outcome", outcome), new)
    assert p.flush(10) == 0
    sink = ClickHouseSink(bootstrap, store, group=f"g-{unique}", batch_size=2000, batch_ms=200,
                          specs=[TOPICS["experiences"], TOPICS["outcomes"]])
    q = "SELECT trace_id, config_version, experiment_status FROM v_experiences WHERE tenant_id = %(t)s ORDER BY trace_id"
    qo = "SELECT config_version, experiment_status FROM v_outcomes_latest WHERE tenant_id = %(t)s"
    try:
        for _ in range(60):
            sink.process_batch()
            if len(store.query(q, {"t": tenant}).rows) >= 3 and store.query(qo, {"t": tenant}).rows:
                break
    finally:
        sink.close()
    rows = {r[0]: r[1:] for r in store.query(q, {"t": tenant}).rows}
    assert rows == {new: (7, "paused"), bare: (None, None), old["trace_id"]: (0, "")}
    assert store.query(qo, {"t": tenant}).rows == [(7, "paused")]
