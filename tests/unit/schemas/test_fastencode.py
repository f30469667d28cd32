"""The generated and the compiled encoders write exactly fastavro's bytes, and refuse what they do not fit."""

from __future__ import annotations

import gc
import io
import random
import string
import struct
import sys
from collections import OrderedDict
from typing import Any

import pytest
from fastavro import schemaless_writer

from agentgym.schemas import RECORD_NAMES, AvroCodec, SchemaValidationError, default_schema_set
from agentgym.schemas.fastencode import NATIVE, UnsupportedSchema, compile_encoder
from tests.unit.schemas.records import EXAMPLES

SCHEMAS = default_schema_set()
# both encoders, every test: the generated Python one and the compiled one (schemas/_avroenc.c)
IMPLEMENTATIONS = pytest.mark.parametrize("native", [False, True], ids=["generated", "compiled"])


def _fastavro(name: str, record: dict[str, Any], version: int | None = None) -> bytes:
    sv = SCHEMAS.latest(name) if version is None else SCHEMAS.get(name, version)
    buf = io.BytesIO()
    schemaless_writer(buf, sv.parsed, record)
    return buf.getvalue()


def _random_value(schema: Any, rng: random.Random, named: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return _random_value(rng.choice(schema), rng, named)
    if isinstance(schema, str):
        if schema in named:
            return _random_value(named[schema], rng, named)
        return {
            "null": lambda: None,
            "boolean": lambda: rng.random() < 0.5,
            "int": lambda: rng.choice([0, 1, -1, 63, 64, -65, 8191, 16383, 16384, 2**31 - 1, -(2**31)]),
            "long": lambda: rng.choice([0, 5, -5, 16384, 2**40, -(2**40), 2**63 - 1, -(2**63), 1_700_000_000_000]),
            "double": lambda: rng.choice([0.0, -1.5, 1e300, 3.14159, float(rng.randint(-9, 9))]),
            "float": lambda: 1.5,
            "string": lambda: "".join(rng.choice(string.ascii_letters + "éß漢字🙂 \n") for _ in range(rng.choice([0, 1, 7, 200, 17000]))),
            "bytes": lambda: bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 300]))),
        }[schema]()
    t = schema["type"]
    if t == "record":
        named[schema["name"]] = schema
        return {f["name"]: _random_value(f["type"], rng, named) for f in schema["fields"]
                if "default" not in f or rng.random() < 0.7}
    if t == "enum":
        named[schema["name"]] = schema
        return rng.choice(schema["symbols"])
    if t == "array":
        return [_random_value(schema["items"], rng, named) for _ in range(rng.choice([0, 1, 3]))]
    if t == "map":
        return {f"k{i}": _random_value(schema["values"], rng, named) for i in range(rng.choice([0, 1, 4]))}
    return _random_value(t, rng, named)


def _declare(schema: Any, named: dict[str, Any]) -> None:
    """Registers every named type (record, enum) of ``schema`` in ``named``."""
    if isinstance(schema, list):
        for s in schema:
            _declare(s, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            named[schema["name"]] = schema
        for f in schema.get("fields", []):
            _declare(f["type"], named)
        for k in ("items", "values"):
            if k in schema:
                _declare(schema[k], named)


def test_the_compiled_encoder_was_built_and_is_the_default() -> None:
    """setup.sh builds it (gcc): an install that silently fell back would lose the speed unnoticed."""
    assert NATIVE
    assert type(compile_encoder(SCHEMAS.latest("Experience").raw)).__name__ == "builtin_function_or_method"
    assert type(AvroCodec()._fast["Experience"]).__name__ == "builtin_function_or_method"


@IMPLEMENTATIONS
@pytest.mark.parametrize("name", RECORD_NAMES)
def test_examples_are_byte_identical(name: str, native: bool) -> None:
    encode = compile_encoder(SCHEMAS.latest(name).raw, native=native)
    assert encode(EXAMPLES[name]) == _fastavro(name, EXAMPLES[name])


@IMPLEMENTATIONS
@pytest.mark.parametrize("name", RECORD_NAMES)
def test_random_records_are_byte_identical(name: str, native: bool) -> None:
    rng = random.Random(name)
    raw = SCHEMAS.latest(name).raw
    encode = compile_encoder(raw, native=native)
    named: dict[str, Any] = {}
    _declare(raw, named)  # a later field may name a type whose first use drew an empty array
    for _ in range(80):
        record = _random_value(raw, rng, named)
        assert encode(record) == _fastavro(name, record), record


@pytest.mark.parametrize(
    ("change", "generated_error", "compiled_error"),
    [
        ({"latency_ms": "slow"}, TypeError, TypeError),
        ({"prompt_tokens": 1.5}, TypeError, TypeError),
        ({"status": "weird"}, KeyError, KeyError),
        ({"output": 42}, TypeError, TypeError),
        # the generated encoder calls .encode() / .get() on what it finds; the compiled one checks the type first
        ({"metadata": {"k": 1}}, AttributeError, TypeError),
        ({"metadata": {1: "v"}}, AttributeError, TypeError),
        ({"steps": "abc"}, AttributeError, TypeError),
        ({"prompt_tokens": 2**63}, OverflowError, OverflowError),
        ({"latency_ms": 10**400}, struct.error, OverflowError),
        ({"output": "\ud800"}, UnicodeEncodeError, UnicodeEncodeError),
    ],
)
@IMPLEMENTATIONS
def test_what_does_not_fit_raises(change: dict[str, Any], generated_error: type[Exception], compiled_error: type[Exception],
                                  native: bool) -> None:
    encode = compile_encoder(SCHEMAS.latest("Experience").raw, native=native)
    with pytest.raises(compiled_error if native else generated_error):
        encode({**EXAMPLES["Experience"], **change})
    with pytest.raises(KeyError):
        encode({k: v for k, v in EXAMPLES["Experience"].items() if k != "model_name"})


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_what_the_compiled_encoder_takes_the_generated_one_writes_alike(name: str) -> None:
    """Random records with one field replaced by a value of another type: the compiled encoder either
    refuses it (the codec's fastavro then writes it or names the field) or writes the generated one's bytes."""
    rng = random.Random(f"junk-{name}")
    raw = SCHEMAS.latest(name).raw
    compiled, generated = compile_encoder(raw, native=True), compile_encoder(raw, native=False)
    named: dict[str, Any] = {}
    _declare(raw, named)
    junk = (object(), 2**70, "\udc80", [object()], {1: 2}, {"k": object()}, 1.5, True, None, b"x", (), "s", 7)
    written = refused = 0
    for _ in range(15):
        record = _random_value(raw, rng, named)
        for field in list(record):
            for value in junk:
                bad = {**record, field: value}
                try:
                    out = compiled(bad)
                except (TypeError, KeyError, ValueError, OverflowError, RuntimeError):
                    refused += 1
                    continue
                written += 1
                assert out == generated(bad), (field, value)
    assert written and refused, (written, refused)  # both sides of the comparison were exercised


def test_the_compiled_encoder_sends_container_subclasses_to_fastavro_and_holds_no_references() -> None:
    """Subclasses may iterate otherwise than the built-ins: refused, and the codec's fastavro writes them;
    encoding (also a failing one, past the stack buffer) leaves every reference count as it was."""
    encode = compile_encoder(SCHEMAS.latest("Experience").raw, native=True)
    record = dict(EXAMPLES["Experience"], metadata=OrderedDict(b="2", a="1"))
    with pytest.raises(TypeError):
        encode(record)
    assert AvroCodec().encode("Experience", record)[10:] == _fastavro("Experience", record)
    big = "x" * 100_000  # grows the output past its 4 KiB stack buffer
    good = dict(EXAMPLES["Experience"], output=big, metadata={"k": "v"})
    bad = dict(good, latency_ms="slow")  # fails after the big string was written
    gc.collect()
    counts = (sys.getrefcount(big), sys.getrefcount(good["metadata"]), sys.getrefcount(good["input"]))
    for _ in range(200):
        assert encode(good) == _fastavro("Experience", good)
        with pytest.raises(TypeError):
            encode(bad)
    gc.collect()
    assert (sys.getrefcount(big), sys.getrefcount(good["metadata"]), sys.getrefcount(good["input"])) == counts


def test_the_codec_still_names_the_field_when_the_fast_encoder_refuses() -> None:
    with pytest.raises(SchemaValidationError, match=r"Experience\.latency_ms"):
        AvroCodec().encode("Experience", {**EXAMPLES["Experience"], "latency_ms": "slow"})


@IMPLEMENTATIONS
def test_unsupported_schemas_are_refused_at_generation(native: bool) -> None:
    with pytest.raises(UnsupportedSchema):
        compile_encoder({"type": "record", "name": "T", "fields": [{"name": "d", "type": {"type": "int", "logicalType": "date"}}]},
                        native=native)
    with pytest.raises(UnsupportedSchema):
        compile_encoder({"type": "enum", "name": "E", "symbols": ["a"]}, native=native)
