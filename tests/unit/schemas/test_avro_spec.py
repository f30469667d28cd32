"""Avro single-object encoding, pinned to the specification and to Apache ``avro``.

Independent references: the CRC-64-AVRO of ``"null"`` (0x63dd24e7cc258f8a) and the
Experience.v2 header given in issue 12 (worked out from the Avro 1.11 specification,
"Single object encoding": ``C3 01`` then the fingerprint's 8 bytes little-endian),
and the Apache Software Foundation's own ``avro`` package for the bodies.
"""

from __future__ import annotations

import io
import json
import logging

import avro.io
import avro.schema
import pytest

from agentgym.schemas import AvroCodec, CorruptBodyError, TruncatedMessageError, default_schema_set
from agentgym.schemas.codec import SINGLE_OBJECT_MARKER
from agentgym.schemas.registry import schema_fingerprint
from tests.unit.schemas.records import EXAMPLES

_SPEC_RECORDS = ["Experience", "Feedback", "Outcome", "ExperimentConfig", "Decision"]


def _apache(name: str, version: int | None = None) -> avro.schema.Schema:
    schemas = default_schema_set()
    sv = schemas.latest(name) if version is None else schemas.get(name, version)
    return avro.schema.parse(json.dumps(sv.raw))


def _apache_single_object(schema: avro.schema.Schema, record: dict) -> bytes:
    """Single-object encoding done with Apache avro's fingerprint and BinaryEncoder."""
    out = io.BytesIO()
    out.write(b"\xc3\x01" + schema.fingerprint("CRC-64-AVRO"))
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


def _apache_read(schema: avro.schema.Schema, data: bytes) -> dict:
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema.fingerprint("CRC-64-AVRO"), "header fingerprint differs from Apache avro's"
    buf = io.BytesIO(data[10:])
    record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(buf))
    assert buf.tell() == len(data) - 10
    return record


def test_crc64_avro_of_null_is_the_published_value() -> None:
    assert schema_fingerprint('"null"') == 0x63DD24E7CC258F8A


def test_experience_v2_header_is_the_specs_byte_order() -> None:
    v2 = default_schema_set().get("Experience", 2)
    assert v2.fingerprint == 0x13A88F5C17999E92
    assert SINGLE_OBJECT_MARKER + v2.fingerprint_bytes == bytes.fromhex("c301929e99175c8fa813")
    old = {k: v for k, v in EXAMPLES["Experience"].items() if k in {f["name"] for f in v2.raw["fields"]}}
    assert AvroCodec().encode_version(v2, old)[:10] == bytes.fromhex("c301929e99175c8fa813")


@pytest.mark.parametrize("name", _SPEC_RECORDS)
def test_agent_gym_bytes_decode_with_apache_avro(name: str) -> None:
    data = AvroCodec().encode(name, EXAMPLES[name])
    theirs = _apache_read(_apache(name), data)
    assert AvroCodec().decode(data).record == theirs


@pytest.mark.parametrize("name", _SPEC_RECORDS)
def test_apache_avro_bytes_decode_with_agent_gym(name: str) -> None:
    schema = _apache(name)
    data = _apache_single_object(schema, AvroCodec().decode(AvroCodec().encode(name, EXAMPLES[name])).record)
    codec = AvroCodec()
    decoded = codec.decode(data, expected=name)
    assert decoded.record == _apache_read(schema, data)
    assert codec.legacy_framed == 0


def test_legacy_byte_order_still_reads_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    sv = default_schema_set().latest("Outcome")
    spec = AvroCodec().encode("Outcome", EXAMPLES["Outcome"])
    legacy = SINGLE_OBJECT_MARKER + sv.legacy_fingerprint_bytes + spec[10:]
    assert legacy[2:10] == spec[9:1:-1]  # the old writers reversed the spec's bytes
    codec = AvroCodec()
    with caplog.at_level(logging.WARNING, logger="agentgym.schemas"):
        for _ in range(3):
            assert codec.decode(legacy, expected="Outcome").record == codec.decode(spec).record
    assert codec.legacy_framed == 3
    assert "legacy big-endian schema fingerprint" in caplog.text


def test_out_of_range_enum_index_is_corruption_not_truncation() -> None:
    # rewrite the label enum index of a valid Outcome to 9 (there are three symbols)
    name = "Outcome"
    sv = default_schema_set().latest(name)
    good = AvroCodec().encode(name, EXAMPLES[name])
    fields = [f["name"] for f in sv.raw["fields"]]
    prefix = {k: EXAMPLES[name][k] for k in fields[: fields.index("label")]}
    # the body up to the label: the same bytes the full record starts with
    head_len = 10 + sum(len(_apache_field(sv.raw, f, prefix[f])) for f in prefix)
    assert good[head_len] == 2  # zig-zag 1: "failure"
    bad = good[:head_len] + b"\x12" + good[head_len + 1:]  # zig-zag 9: no such symbol
    with pytest.raises(CorruptBodyError, match="enum or union index is out of range"):
        AvroCodec().decode(bad)
    with pytest.raises(TruncatedMessageError):
        AvroCodec().decode(good[: head_len - 1])


def _apache_field(record_schema: dict, field: str, value: object) -> bytes:
    ftype = next(f["type"] for f in record_schema["fields"] if f["name"] == field)
    out = io.BytesIO()
    avro.io.DatumWriter(avro.schema.parse(json.dumps(ftype))).write(value, avro.io.BinaryEncoder(out))
    return out.getvalue()
