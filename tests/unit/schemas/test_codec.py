"""The Avro codec: round trips, schema evolution, and clear errors on bad bytes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from agentgym.schemas import (
    RECORD_NAMES,
    AvroCodec,
    BadMarkerError,
    CorruptBodyError,
    SchemaError,
    SchemaSet,
    SchemaValidationError,
    TruncatedMessageError,
    UnknownSchemaError,
    default_schema_set,
)
from agentgym.schemas.codec import SINGLE_OBJECT_MARKER
from tests.unit.schemas.records import EXAMPLES

codec = AvroCodec()


def test_every_record_has_a_schema_with_event_and_tenant_ids() -> None:
    schemas = default_schema_set()
    assert sorted(RECORD_NAMES) == schemas.names
    for name in RECORD_NAMES:
        fields = {f["name"] for f in schemas.latest(name).raw["fields"]}
        assert {"event_id", "tenant_id"} <= fields, name


def test_experience_holds_what_the_design_asks_for() -> None:
    fields = {f["name"] for f in default_schema_set().latest("Experience").raw["fields"]}
    assert {"input", "steps", "output", "model_name", "model_version", "assignment", "latency_ms",
            "prompt_tokens", "completion_tokens", "cost_usd", "status", "metadata"} <= fields


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_round_trip(name: str) -> None:
    record = EXAMPLES[name]
    data = codec.encode(name, record)
    assert data[:2] == SINGLE_OBJECT_MARKER
    assert data[2:10] == default_schema_set().latest(name).fingerprint_bytes
    decoded = codec.decode(data, expected=name)
    assert decoded.name == name
    assert decoded.writer_version == default_schema_set().latest(name).version
    expected = copy.deepcopy(record)
    if name == "Outcome":  # v2 fields not in the example take their defaults
        expected.update(config_version=0, experiment_status="")
    if name == "ExperimentConfig":  # v2 fields not in the example take their defaults
        expected.update(audit_rate=0.0, cuped_metrics=[], cuped_lookback_days=28)
    if name == "StatsSnapshot":  # v3 fields not in the example take their defaults
        expected.update(estimator="labelled", labelled_comparisons=[], audit_units=0, variance_reduction=None)
    if name == "Experience":  # nested records come back with their defaults filled in
        expected["assignment"] = {"config_version": 0, "experiment_status": "", **expected["assignment"]}
        for m in expected["input"]:
            m.setdefault("name", None)
            m.setdefault("tool_call_id", None)
        for s in expected["steps"]:
            for k, v in {"input": None, "output": None, "error": None, "latency_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0}.items():
                s.setdefault(k, v)
    assert decoded.record == expected


def test_old_writer_is_read_by_the_newer_reader() -> None:
    schemas = default_schema_set()
    v1 = schemas.get("Experience", 1)
    assert schemas.latest("Experience").version > 1
    old = {k: v for k, v in EXAMPLES["Experience"].items() if k in {f["name"] for f in v1.raw["fields"]}}
    data = codec.encode_version(v1, old)
    assert data[2:10] == v1.fingerprint_bytes != schemas.latest("Experience").fingerprint_bytes
    decoded = codec.decode(data)
    assert decoded.writer_version == 1
    # fields added in v2 take their defaults; v1 fields survive
    assert decoded.record["assignment"] is None
    assert decoded.record["session_id"] is None
    assert decoded.record["sdk_version"] == ""
    assert decoded.record["output"] == old["output"]
    assert decoded.record["steps"][1]["error"] == "timeout"


def test_every_version_of_every_schema_is_kept_and_loadable() -> None:
    schemas = default_schema_set()
    for name in schemas.names:
        versions = [v.version for v in schemas.versions(name)]
        assert versions == list(range(1, len(versions) + 1)), f"{name}: versions must run 1..N, got {versions}"


def test_missing_field_is_named() -> None:
    bad = dict(EXAMPLES["Experience"])
    del bad["model_version"]
    with pytest.raises(SchemaValidationError) as err:
        codec.encode("Experience", bad)
    assert err.value.field == "model_version"
    assert "missing" in str(err.value)


def test_wrong_type_is_named() -> None:
    bad = dict(EXAMPLES["Experience"], latency_ms="fast")
    with pytest.raises(SchemaValidationError, match=r"Experience\.latency_ms.*str.*double"):
        codec.encode("Experience", bad)


def test_bad_enum_is_named() -> None:
    bad = dict(EXAMPLES["Outcome"], label="maybe")
    with pytest.raises(SchemaValidationError) as err:
        codec.encode("Outcome", bad)
    assert err.value.field == "label"
    assert "success" in str(err.value)


def test_unknown_record_type() -> None:
    with pytest.raises(SchemaValidationError, match="unknown record type"):
        codec.encode("Nope", {})


@pytest.mark.parametrize(
    ("data", "error", "text"),
    [
        (b"", TruncatedMessageError, "empty message"),
        (b"\xc3\x01\x00\x01", TruncatedMessageError, "truncated header"),
        (b"{\"json\": true}", BadMarkerError, "expected marker 'c301'"),
        (b"\xc3\x01" + b"\xff" * 8 + b"body", UnknownSchemaError, "unknown schema fingerprint ffffffffffffffff"),
    ],
)
def test_bad_bytes_give_a_clear_error(data: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        codec.decode(data)


def test_truncated_body() -> None:
    data = codec.encode("Experience", EXAMPLES["Experience"])
    with pytest.raises(TruncatedMessageError, match="truncated Experience body"):
        codec.decode(data[: len(data) // 2])


def test_trailing_garbage() -> None:
    data = codec.encode("Decision", EXAMPLES["Decision"])
    with pytest.raises(CorruptBodyError, match="trailing bytes"):
        codec.decode(data + b"\x00\x01")


def test_garbled_body() -> None:
    data = bytearray(codec.encode("Decision", EXAMPLES["Decision"]))
    data[10] = 0x7F  # a huge negative-length string
    with pytest.raises((CorruptBodyError, TruncatedMessageError)) as err:
        codec.decode(bytes(data))
    assert "Decision body" in str(err.value)


def test_wrong_record_for_the_topic() -> None:
    data = codec.encode("Decision", EXAMPLES["Decision"])
    with pytest.raises(UnknownSchemaError, match="expected a Outcome record, got Decision"):
        codec.decode(data, expected="Outcome")


def test_schema_files_must_follow_the_naming(tmp_path: Path) -> None:
    (tmp_path / "Thing.avsc").write_text(json.dumps({"type": "record", "name": "Thing", "fields": []}))
    with pytest.raises(SchemaError, match="Record>.v<N>.avsc"):
        SchemaSet(tmp_path)


def test_schema_name_must_match_file(tmp_path: Path) -> None:
    (tmp_path / "Thing.v1.avsc").write_text(json.dumps({"type": "record", "name": "Other", "fields": []}))
    with pytest.raises(SchemaError, match="does not match"):
        SchemaSet(tmp_path)
