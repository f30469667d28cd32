"""The store's tables against the row specs derived from the ``.avsc`` files.

Every field of the newest version of every record stored in ClickHouse must have its
column in the migrated tables, with the type the derivation expects (up to
``LowCardinality``). A field added to a schema without its migration (or a migration
that gives a column another type) fails here, not at the first insert in production.
Runs the real ClickHouse engine embedded (chdb), migrated from ``processors/store/sql``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from agentgym.processors.store import StoreError, migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.store.rows import (
    COLUMN_SPECS,
    FLATTENED,
    TABLES,
    TIMESTAMP_COLUMNS,
    ColumnSpec,
    derive_column_specs,
)
from agentgym.schemas import default_schema_set


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('ddl') / 'clickhouse'}")
    migrate(s)
    try:
        yield s
    finally:
        s.close()


def _strip_low_cardinality(t: str) -> str:
    while (start := t.find("LowCardinality(")) >= 0:
        depth, i = 0, start + len("LowCardinality")
        for i in range(i, len(t)):
            depth += {"(": 1, ")": -1}.get(t[i], 0)
            if depth == 0:
                break
        t = t[:start] + t[start + len("LowCardinality("):i] + t[i + 1:]
    return t


def normalise(clickhouse_type: str) -> str:
    """A ClickHouse type as DESCRIBE prints it, in the one-line form of ColumnSpec.clickhouse_type."""
    t = re.sub(r"\s+", " ", clickhouse_type.replace("`", "")).strip()
    t = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", re.sub(r"\s*,\s*", ", ", t)))
    return _strip_low_cardinality(t)


def ddl_mismatches(store: Store, table: str, specs: tuple[ColumnSpec, ...]) -> list[str]:
    """What the migrated ``table`` lacks or types differently from ``specs``."""
    described = {d["name"]: d["type"] for d in store.query(f"DESCRIBE TABLE {table}").named_rows()}
    problems = []
    for spec in specs:
        field = ".".join(spec.source)
        if spec.name not in described:
            problems.append(f"{table}.{spec.name} (Avro field {field}) has no column: add a migration")
        elif normalise(described[spec.name]) != spec.clickhouse_type:
            problems.append(
                f"{table}.{spec.name} (Avro field {field}) is {described[spec.name]}, the schema needs {spec.clickhouse_type}"
            )
    return problems


def _avro_paths(record: str) -> set[tuple[str, ...]]:
    """Every top-level field of the newest schema, a flattened record's fields instead of it."""
    paths: set[tuple[str, ...]] = set()
    for field in default_schema_set().latest(record).raw["fields"]:
        if field["name"] in FLATTENED.get(record, ()):
            nested = next(t for t in field["type"] if isinstance(t, dict))
            paths |= {(field["name"], sub["name"]) for sub in nested["fields"]}
        else:
            paths.add((field["name"],))
    return paths


@pytest.mark.parametrize("record", sorted(TABLES))
def test_every_field_has_its_column_with_its_type(store: Store, record: str) -> None:
    specs = COLUMN_SPECS[record]
    assert {s.source for s in specs} == _avro_paths(record), f"{record}: the specs do not cover the schema's fields"
    assert ddl_mismatches(store, TABLES[record], specs) == []


def test_a_new_assignment_field_without_a_migration_is_caught(store: Store) -> None:
    # what a schema evolution looks like: an optional field added to Experience's assignment
    schema = copy.deepcopy(default_schema_set().latest("Experience").raw)
    assignment = next(f for f in schema["fields"] if f["name"] == "assignment")
    nested: dict[str, Any] = next(t for t in assignment["type"] if isinstance(t, dict))
    nested["fields"].append({"name": "served_config_version", "type": ["null", "int"], "default": None})
    specs = derive_column_specs("Experience", schema)

    added = next(s for s in specs if s.source == ("assignment", "served_config_version"))
    assert (added.name, added.key, added.type, added.nullable) == ("served_config_version", None, pa.int32(), True)
    assert ddl_mismatches(store, "experiences", specs) == [
        "experiences.served_config_version (Avro field assignment.served_config_version) has no column: add a migration"
    ]


def test_a_column_of_another_type_is_caught(store: Store) -> None:
    schema = copy.deepcopy(default_schema_set().latest("Feedback").raw)
    next(f for f in schema["fields"] if f["name"] == "rating_scale")["type"] = "long"
    assert ddl_mismatches(store, "feedback", derive_column_specs("Feedback", schema)) == [
        "feedback.rating_scale (Avro field rating_scale) is Float64, the schema needs Int64"
    ]


def test_derivation_follows_the_avro_types_and_the_overrides() -> None:
    schema = {
        "type": "record", "name": "R", "namespace": "agentgym",
        "fields": [
            {"name": "timestamp_ms", "type": "long"},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
            {"name": "kinds", "type": {"type": "array", "items": "Kind"}},  # a named-type reference
            {"name": "counts", "type": {"type": "map", "values": "long"}},
            {"name": "raw", "type": ["null", "bytes"], "default": None},
            {"name": "pair", "type": {"type": "record", "name": "Pair",
                                      "fields": [{"name": "x", "type": "double"}, {"name": "ok", "type": "boolean"}]}},
        ],
    }
    specs = {s.name: s for s in derive_column_specs("R", schema)}
    assert list(specs) == ["ts", "kind", "kinds", "counts", "raw", "pair"]
    assert TIMESTAMP_COLUMNS["timestamp_ms"] == "ts" and specs["ts"].key == "timestamp_ms"
    assert specs["ts"].type == pa.timestamp("ms", tz="UTC") and specs["ts"].clickhouse_type == "DateTime64(3, 'UTC')"
    assert (specs["kinds"].type, specs["kinds"].clickhouse_type) == (pa.list_(pa.string()), "Array(String)")
    assert (specs["counts"].type, specs["counts"].clickhouse_type) == (pa.map_(pa.string(), pa.int64()), "Map(String, Int64)")
    assert (specs["raw"].type, specs["raw"].nullable, specs["raw"].clickhouse_type) == (pa.binary(), True, "Nullable(String)")
    assert specs["pair"].type == pa.struct([("x", pa.float64()), ("ok", pa.bool_())])
    assert specs["pair"].clickhouse_type == "Tuple(x Float64, ok Bool)"


def test_a_field_with_no_column_type_is_refused_by_name() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "either", "type": ["string", "long"]}]}
    with pytest.raises(StoreError, match=r"R\.either: union .* COLUMN_OVERRIDES"):
        derive_column_specs("R", schema)
