"""The configuration version and status that served a unit reach ClickHouse (Experience v3, Outcome v2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.producers.assignment import Assignment
from agentgym.schemas import AvroCodec, default_schema_set
from agentgym.producers.admin import ensure_topics
from agentgym.schemas.topics import TopicSpec
from tests.kafka_utils import drain_sink
from tests.unit.schemas.records import EXAMPLES


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


def test_served_config_version_and_status_are_stored(bootstrap: str, store: Store, unique: str) -> None:
    tenant = f"t-{unique}"
    # topics of this test alone: the sink reads from the earliest offset, and the shared
    # topics hold whatever the session's earlier tests wrote
    experiences = TopicSpec(f"served-exp-{unique}", "Experience", "trace_id", 1, "experiences")
    outcomes = TopicSpec(f"served-out-{unique}", "Outcome", "trace_id", 1, "outcomes")
    ensure_topics(bootstrap, [experiences, outcomes])
    codec = AvroCodec()
    served = Assignment("exp1", "control", "v3", "user", "u1", 7, "paused")
    base = dict(EXAMPLES["Experience"], tenant_id=tenant)
    new = dict(base, event_id=f"{unique}-new", trace_id="new", assignment=served.as_record())  # what the SDK records
    bare = dict(base, event_id=f"{unique}-bare", trace_id="bare", assignment=None)
    v2 = default_schema_set().get("Experience", 2)
    v2_fields = {f["name"] for f in v2.raw["fields"]}
    old = {k: v for k, v in dict(base, event_id=f"{unique}-old", trace_id="old").items() if k in v2_fields}
    outcome = dict(EXAMPLES["Outcome"], event_id=f"{unique}-o", tenant_id=tenant, trace_id="new", config_version=7,
                   experiment_status="paused")
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(experiences.name, codec.encode("Experience", new), "new")
    p.produce(experiences.name, codec.encode("Experience", bare), "bare")
    p.produce(experiences.name, codec.encode_version(v2, old), "old")  # an older SDK
    p.produce(outcomes.name, codec.encode("Outcome", outcome), "new")
    assert p.flush(10) == 0
    sink = ClickHouseSink(bootstrap, store, group=f"g-{unique}", batch_size=100, batch_ms=200, specs=[experiences, outcomes])
    q = "SELECT trace_id, config_version, experiment_status FROM v_experiences WHERE tenant_id = %(t)s ORDER BY trace_id"
    qo = "SELECT config_version, experiment_status FROM v_outcomes_latest WHERE tenant_id = %(t)s"
    try:
        drain_sink(sink, lambda: len(store.query(q, {"t": tenant}).rows) >= 3 and bool(store.query(qo, {"t": tenant}).rows))
    finally:
        sink.close()
    rows = {r[0]: r[1:] for r in store.query(q, {"t": tenant}).rows}
    assert rows == {"new": (7, "paused"), "bare": (None, None), "old": (0, "")}
    assert store.query(qo, {"t": tenant}).rows == [(7, "paused")]
    assert sink.stats.dead_letters == 0
