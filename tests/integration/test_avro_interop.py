"""Avro single-object encoding against Apache ``avro``, through the real broker and sink.

Bytes a spec-following implementation writes land in ClickHouse with no dead letter;
bytes Agent Gym's SDK writes decode with Apache avro after a trip through Kafka.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import avro.io
import avro.schema
import pytest
from confluent_kafka import Producer

from agentgym import AgentGym
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.producers.admin import ensure_topics
from agentgym.schemas import AvroCodec, default_schema_set
from agentgym.schemas.codec import SINGLE_OBJECT_MARKER
from agentgym.schemas.topics import TOPICS, TopicSpec
from tests.kafka_utils import consume_all, drain_sink
from tests.unit.schemas.records import EXAMPLES


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


def _apache_schema(version: int | None = None) -> avro.schema.Schema:
    schemas = default_schema_set()
    sv = schemas.latest("Experience") if version is None else schemas.get("Experience", version)
    return avro.schema.parse(json.dumps(sv.raw))


def _apache_single_object(schema: avro.schema.Schema, record: dict) -> bytes:
    out = io.BytesIO()
    out.write(b"\xc3\x01" + schema.fingerprint("CRC-64-AVRO"))
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


def _full(record: dict) -> dict:
    """The example with every nested default filled in, as Apache avro's writer wants it."""
    return AvroCodec().decode(AvroCodec().encode("Experience", record)).record


def test_apache_avro_bytes_land_in_clickhouse_with_no_dead_letter(bootstrap: str, store: Store, unique: str) -> None:
    tenant = f"t-{unique}"
    spec = TopicSpec(base=f"interop-{unique}", record="Experience", key_field="trace_id", partitions=1, table="experiences")
    ensure_topics(bootstrap, [spec])
    latest = _apache_schema()
    v1 = _apache_schema(1)
    v1_fields = {f.name for f in v1.fields}
    messages = {}
    for i in range(3):  # the newest schema: ClickHouse's own Avro reader takes the bodies
        messages[f"new{i}"] = _apache_single_object(latest, _full(dict(
            EXAMPLES["Experience"], event_id=f"{unique}-new{i}", tenant_id=tenant, trace_id=f"new{i}", latency_ms=float(i))))
    old = {k: v for k, v in _full(EXAMPLES["Experience"]).items() if k in v1_fields}
    messages["old"] = _apache_single_object(v1, dict(old, event_id=f"{unique}-old", tenant_id=tenant, trace_id="old"))
    # one event from a pre-spec Agent Gym producer (big-endian fingerprint): read and counted
    sv = default_schema_set().latest("Experience")
    body = AvroCodec().encode("Experience", dict(EXAMPLES["Experience"], event_id=f"{unique}-legacy", tenant_id=tenant, trace_id="legacy"))[10:]
    messages["legacy"] = SINGLE_OBJECT_MARKER + sv.legacy_fingerprint_bytes + body
    p = Producer({"bootstrap.servers": bootstrap})
    for key, value in messages.items():
        p.produce(spec.name, value, key)
    assert p.flush(10) == 0
    sink = ClickHouseSink(bootstrap, store, group=f"g-{unique}", batch_size=100, batch_ms=200, specs=[spec])
    q = "SELECT trace_id, latency_ms, model_version FROM v_experiences WHERE tenant_id = %(t)s ORDER BY trace_id"
    try:
        drain_sink(sink, lambda: len(store.query(q, {"t": tenant}).rows) >= len(messages))
    finally:
        sink.close()
    rows = store.query(q, {"t": tenant}).rows
    assert [r[0] for r in rows] == sorted(messages)
    assert [r[1] for r in rows if r[0].startswith("new")] == [0.0, 1.0, 2.0]
    assert sink.stats.dead_letters == 0
    assert sink.stats.legacy_framed == 1


def test_sdk_bytes_through_kafka_decode_with_apache_avro(bootstrap: str, unique: str, tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    with AgentGym(bootstrap, tenant, "a", spool_dir=tmp_path / "spool") as gym:
        trace = gym.record_experience(input="where is order 42?", output="shipped", model_name="m",
                                      model_version="v7", latency_ms=12.5)
    got = consume_all(bootstrap, TOPICS["experiences"].name, 1, match=lambda m: m.key() == trace.encode())
    assert len(got) == 1
    data = got[0].value()
    schema = _apache_schema()
    assert data[:10] == b"\xc3\x01" + schema.fingerprint("CRC-64-AVRO")
    record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert (record["tenant_id"], record["trace_id"], record["model_version"], record["latency_ms"]) == (tenant, trace, "v7", 12.5)
    assert record["input"][-1]["content"] == "where is order 42?"
