"""Decoded Avro records to table rows and Arrow batches, derived from the ``.avsc`` files.

The shape of every row comes from the newest version of its record's Avro schema
(:func:`agentgym.schemas.default_schema_set`); only the ClickHouse-specific decisions
are written here, as small explicit overrides:

* :data:`TIMESTAMP_COLUMNS`: epoch-millisecond fields become ``DateTime64(3, 'UTC')``
  columns under another name (``timestamp_ms`` -> ``ts``, ``created_ms`` -> ``created_at``,
  ``updated_ms`` -> ``updated_at``);
* :data:`FLATTENED`: an optional nested record whose fields become columns of their own
  (``Experience.assignment`` -> ``experiment_id``, ``variant``, ``unit_type``, ``unit_id``),
  NULL when the record is absent;
* :data:`COLUMN_OVERRIDES`: a per-field rename or Arrow type, where the rule of thumb
  below does not fit (none today).

Everything else follows the Avro type: ``string`` and enums -> ``string`` (``String``,
``LowCardinality(String)`` in the table), ``int`` -> ``int32``, ``long`` -> ``int64``,
``double`` -> ``float64``, ``boolean`` -> ``bool``, ``bytes`` -> ``binary``, arrays ->
``list<...>``, maps -> ``map<string, ...>``, records -> ``struct<...>`` (``Tuple`` with
named elements), ``["null", T]`` -> T, nullable. A new field in a schema therefore gets
its column spec without an edit here; ``tests/unit/processors/store/test_rows_ddl.py``
checks the migrated tables against these specs, so a field without its column (a
forgotten migration) fails CI.

For each record type (``Experience``, ``Feedback``, ...):

* :data:`TABLES` names its raw table (from :data:`agentgym.schemas.TOPICS`),
* :data:`COLUMNS` lists the table's columns that a record fills, in the table's order
  (``inserted_at`` and materialized columns are filled by ClickHouse),
* :data:`COLUMN_SPECS` says how each is filled (:class:`ColumnSpec`),
* :data:`ARROW_SCHEMAS` gives their exact Arrow types,
* :data:`ROW_BUILDERS` turns one record into a tuple in that order (a C ``itemgetter``
  for most types: ~0.2 µs a record),
* :func:`to_arrow` turns a batch of records into an Arrow table column by column, which
  :meth:`Store.insert <agentgym.processors.store.base.Store.insert>` takes in one statement.

A record is the dict ``AvroCodec().decode(data).record`` returns: every field of the
newest schema is present (older writers' records are resolved to it), enums are
strings, optional fields are ``None``, maps are dicts, bytes are ``bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import pyarrow as pa

from agentgym.processors.store.base import Store
from agentgym.processors.store.exceptions import RowConversionError, StoreError
from agentgym.schemas import TOPICS, SchemaSet, default_schema_set

__all__ = [
    "TABLES",
    "COLUMNS",
    "COLUMN_SPECS",
    "ColumnSpec",
    "ColumnOverride",
    "TIMESTAMP_COLUMNS",
    "FLATTENED",
    "COLUMN_OVERRIDES",
    "derive_column_specs",
    "ARROW_SCHEMAS",
    "ROW_BUILDERS",
    "RECORD_FOR_TABLE",
    "to_arrow",
    "rows_to_table",
    "insert_records",
]


@dataclass(frozen=True)
class ColumnSpec:
    """How one table column is filled from a record.

    Attributes:
        name: the table column.
        key: the record field it is read from; None for a column of a flattened nested
            record (see :data:`FLATTENED`), read from ``record[source[0]][source[1]]``.
        type: its Arrow type (``timestamp[ms, UTC]`` columns hold the field's epoch milliseconds).
        source: the Avro field path it comes from (``("timestamp_ms",)``,
            ``("assignment", "experiment_id")``).
        nullable: the column may hold NULL (an optional Avro field, or a field of an
            optional flattened record).
        clickhouse_type: the ClickHouse type the column must have, up to
            ``LowCardinality`` (``Nullable(String)``, ``Array(Tuple(role String, ...))``).
    """

    name: str
    key: str | None
    type: pa.DataType
    source: tuple[str, ...] = ()
    nullable: bool = False
    clickhouse_type: str = ""


@dataclass(frozen=True)
class ColumnOverride:
    """A ClickHouse-specific decision for one Avro field: another column name, another type."""

    column: str | None = None
    arrow: pa.DataType | None = None
    clickhouse_type: str | None = None


TIMESTAMP_COLUMNS: dict[str, str] = {"timestamp_ms": "ts", "created_ms": "created_at", "updated_ms": "updated_at"}
"""Avro field (epoch milliseconds, ``long``) -> its ``DateTime64(3, 'UTC')`` column, in every record."""

FLATTENED: dict[str, tuple[str, ...]] = {"Experience": ("assignment",)}
"""Record -> its optional nested-record fields stored as one column per nested field (same names).

A field added to such a record gets its column spec in place, after the record's earlier
fields: its migration adds the column there too (``ADD COLUMN ... AFTER unit_id``), so the
table's column order stays the specs' order.
"""

COLUMN_OVERRIDES: dict[tuple[str, str], ColumnOverride] = {}
"""(record, dotted Avro field path) -> an override of the derived column (rename, Arrow and ClickHouse type)."""

_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_TIMESTAMP_CH = "DateTime64(3, 'UTC')"
_PRIMITIVES: dict[str, tuple[pa.DataType, str]] = {
    "string": (pa.string(), "String"),
    "int": (pa.int32(), "Int32"),
    "long": (pa.int64(), "Int64"),
    "float": (pa.float32(), "Float32"),
    "double": (pa.float64(), "Float64"),
    "boolean": (pa.bool_(), "Bool"),
    "bytes": (pa.binary(), "String"),
}


def _resolve(t: Any, names: dict[str, Any], namespace: str | None) -> Any:
    """The Avro type ``t`` with every named-type reference replaced by its definition."""
    if isinstance(t, str):
        if t in _PRIMITIVES or t == "null":
            return t
        found = names.get(t) or names.get(f"{namespace}.{t}")
        if found is None:
            raise StoreError(f"Avro type {t!r} is referenced before it is defined")
        return found
    if isinstance(t, list):
        return [_resolve(m, names, namespace) for m in t]
    kind = t["type"]
    if kind in ("record", "error", "enum", "fixed"):
        ns = t.get("namespace", namespace)
        out = dict(t)
        names[t["name"]] = names[f"{ns}.{t['name']}" if ns and "." not in t["name"] else t["name"]] = out
        if kind != "enum" and kind != "fixed":
            out["fields"] = [dict(f, type=_resolve(f["type"], names, ns)) for f in t["fields"]]
        return out
    if kind == "array":
        return dict(t, items=_resolve(t["items"], names, namespace))
    if kind == "map":
        return dict(t, values=_resolve(t["values"], names, namespace))
    return _resolve(kind, names, namespace)  # {"type": "string", ...}


def _optional(t: Any, where: str) -> tuple[Any, bool]:
    """(the non-null type, whether null is allowed) of a resolved Avro type."""
    if not isinstance(t, list):
        return t, False
    members = [m for m in t if m != "null"]
    if len(members) != 1:
        raise StoreError(f"{where}: union {t!r} has no column type; give it a COLUMN_OVERRIDES entry")
    return members[0], len(members) < len(t)


def _types(t: Any, where: str) -> tuple[pa.DataType, str]:
    """(Arrow type, ClickHouse type) of a resolved Avro type (nullability included)."""
    inner, nullable = _optional(t, where)
    if isinstance(inner, str):
        arrow, ch = _PRIMITIVES[inner]
    else:
        kind = inner["type"]
        if kind == "enum":
            arrow, ch = _PRIMITIVES["string"]
        elif kind == "fixed":
            arrow, ch = _PRIMITIVES["bytes"]
        elif kind == "array":
            item_arrow, item_ch = _types(inner["items"], f"{where}[]")
            arrow, ch = pa.list_(item_arrow), f"Array({item_ch})"
        elif kind == "map":
            value_arrow, value_ch = _types(inner["values"], f"{where}{{}}")
            arrow, ch = pa.map_(pa.string(), value_arrow), f"Map(String, {value_ch})"
        elif kind in ("record", "error"):
            parts = [(f["name"], *_types(f["type"], f"{where}.{f['name']}")) for f in inner["fields"]]
            arrow = pa.struct([(name, a) for name, a, _ in parts])
            ch = "Tuple(" + ", ".join(f"{name} {c}" for name, _, c in parts) + ")"
        else:
            raise StoreError(f"{where}: Avro type {kind!r} has no column type; give it a COLUMN_OVERRIDES entry")
        if nullable:
            raise StoreError(f"{where}: an optional {kind} cannot be a Nullable column; give it a COLUMN_OVERRIDES entry")
    return arrow, (f"Nullable({ch})" if nullable else ch)


def _column(record: str, field: dict[str, Any], key: str | None, source: tuple[str, ...], force_null: bool) -> ColumnSpec:
    where = f"{record}.{'.'.join(source)}"
    name = field["name"]
    override = COLUMN_OVERRIDES.get((record, ".".join(source)), ColumnOverride())
    _, nullable = _optional(field["type"], where)
    if len(source) == 1 and name in TIMESTAMP_COLUMNS:
        inner, _ = _optional(field["type"], where)
        if inner != "long":
            raise StoreError(f"{where}: a timestamp column needs an Avro long (epoch milliseconds), not {inner!r}")
        arrow, ch = _TIMESTAMP, _TIMESTAMP_CH
        name = TIMESTAMP_COLUMNS[name]
    else:
        arrow, ch = _types(field["type"], where)
    if force_null and not nullable:
        nullable, ch = True, f"Nullable({ch})"
    if override.column:
        name = override.column
    if override.arrow is not None:
        arrow = override.arrow
    if override.clickhouse_type is not None:
        ch = override.clickhouse_type
    return ColumnSpec(name, key, arrow, source, nullable, ch)


def derive_column_specs(record: str, schema: Mapping[str, Any]) -> tuple[ColumnSpec, ...]:
    """The column specs of one record's table, from its (newest) Avro schema.

    Args:
        record: the record name (``"Experience"``): selects the overrides.
        schema: the Avro schema, as parsed from its ``.avsc`` file.

    Returns:
        One spec per column, in the schema's field order (a flattened record's fields
        take its place).

    Raises:
        StoreError: a field whose Avro type has no column type, and no override.
    """
    resolved = _resolve(dict(schema), {}, schema.get("namespace"))
    flattened = FLATTENED.get(record, ())
    specs: list[ColumnSpec] = []
    for field in resolved["fields"]:
        if field["name"] not in flattened:
            specs.append(_column(record, field, field["name"], (field["name"],), False))
            continue
        inner, optional = _optional(field["type"], f"{record}.{field['name']}")
        if not isinstance(inner, dict) or inner["type"] != "record":
            raise StoreError(f"{record}.{field['name']}: only a record can be flattened, not {inner!r}")
        for sub in inner["fields"]:
            specs.append(_column(record, sub, None, (field["name"], sub["name"]), optional))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StoreError(f"{record}: several fields map to column(s) {duplicates}; rename one in COLUMN_OVERRIDES")
    return tuple(specs)


def _derive_all(schemas: SchemaSet) -> dict[str, tuple[str, tuple[ColumnSpec, ...]]]:
    return {
        spec.record: (spec.table, derive_column_specs(spec.record, schemas.latest(spec.record).raw))
        for spec in TOPICS.values()
        if spec.table
    }


_SPECS = _derive_all(default_schema_set())

TABLES: dict[str, str] = {name: table for name, (table, _) in _SPECS.items()}
"""Record type -> its raw table (``"Experience" -> "experiences"``)."""

RECORD_FOR_TABLE: dict[str, str] = {table: name for name, table in TABLES.items()}
"""Raw table -> the record type it holds."""

COLUMNS: dict[str, tuple[str, ...]] = {name: tuple(c.name for c in cols) for name, (_, cols) in _SPECS.items()}
"""Record type -> the table columns a record fills, in the table's order."""

COLUMN_SPECS: dict[str, tuple[ColumnSpec, ...]] = {name: cols for name, (_, cols) in _SPECS.items()}
"""Record type -> how each of its table's columns is filled, in :data:`COLUMNS` order."""

ARROW_SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([pa.field(c.name, c.type) for c in cols]) for name, (_, cols) in _SPECS.items()
}
"""Record type -> the Arrow schema of :func:`to_arrow`'s tables."""


def _getter(keys: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``record -> tuple of record[k] for k in keys`` (a C ``itemgetter`` for two keys or more)."""
    if not keys:
        return lambda record: ()
    if len(keys) == 1:
        key = keys[0]
        return lambda record: (record[key],)
    return itemgetter(*keys)  # type: ignore[return-value]  # itemgetter of >1 keys returns a tuple


def _builder(cols: Sequence[ColumnSpec]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row builder: plain fields through ``itemgetter``, a flattened record's fields in place."""
    # runs of plain columns, and flattened records (parent field, its sub-field names)
    parts: list[tuple[str | None, list[str]]] = []
    for col in cols:
        parent = None if col.key is not None else col.source[0]
        key = col.key if col.key is not None else col.source[1]
        if parts and parts[-1][0] == parent:
            parts[-1][1].append(key)
        else:
            parts.append((parent, [key]))
    if len(parts) == 1 and parts[0][0] is None:
        return _getter(parts[0][1])
    if len(parts) == 3 and parts[0][0] is None and parts[1][0] is not None and parts[2][0] is None:
        # one flattened record amid plain fields (Experience.assignment): the common shape, unrolled
        head, tail = _getter(parts[0][1]), _getter(parts[2][1])
        parent, sub = parts[1][0], _getter(parts[1][1])
        absent = (None,) * len(parts[1][1])

        def row(record: dict[str, Any]) -> tuple[Any, ...]:
            nested = record[parent]
            return head(record) + (absent if nested is None else sub(nested)) + tail(record)

        return row
    steps = [(p, _getter(keys), (None,) * len(keys)) for p, keys in parts]

    def generic_row(record: dict[str, Any]) -> tuple[Any, ...]:
        out: tuple[Any, ...] = ()
        for p, get, absent in steps:
            if p is None:
                out += get(record)
            else:
                nested = record[p]
                out += absent if nested is None else get(nested)
        return out

    return generic_row


ROW_BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    name: _builder(cols) for name, (_, cols) in _SPECS.items()
}
"""Record type -> ``builder(record) -> tuple`` in :data:`COLUMNS` order; timestamps stay epoch milliseconds."""


def _column_values(col: ColumnSpec, records: Sequence[dict[str, Any]], cache: dict[str, list[Any]]) -> list[Any]:
    if col.key is not None:
        key = col.key
        return [r[key] for r in records]
    # a flattened record: read the parent field once for all of its columns
    parent, sub = col.source[0], col.source[1]
    nested = cache.get(parent)
    if nested is None:
        nested = cache[parent] = [r[parent] for r in records]
    return [None if n is None else n[sub] for n in nested]


def to_arrow(record_name: str, records: Iterable[dict[str, Any]]) -> pa.Table:
    """Converts decoded records of one type to an Arrow table for :meth:`Store.insert`.

    Args:
        record_name: the Avro record type (``"Experience"``).
        records: decoded records (dicts) of that type.

    Returns:
        A table with :data:`ARROW_SCHEMAS` ``[record_name]``; its column names are the
        target table's columns.

    Raises:
        KeyError: an unknown record type.
        RowConversionError: a value does not fit its column (the message names the
            column); a record missing a field also lands here.
    """
    table, cols = _SPECS[record_name]
    recs = records if isinstance(records, list) else list(records)
    cache: dict[str, list[Any]] = {}
    arrays: list[pa.Array] = []
    for col in cols:
        try:
            arrays.append(pa.array(_column_values(col, recs, cache), type=col.type))
        except (pa.ArrowException, KeyError, TypeError, ValueError) as exc:
            raise RowConversionError(
                f"{record_name} -> {table}.{col.name}: {type(exc).__name__}: {exc}", record_name, col.name
            ) from exc
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMAS[record_name])


def rows_to_table(record_name: str, rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Converts rows made by :data:`ROW_BUILDERS` to an Arrow table (as :func:`to_arrow` would).

    Raises:
        RowConversionError: a value does not fit its column.
    """
    table, cols = _SPECS[record_name]
    columns = list(zip(*rows)) if rows else [() for _ in cols]
    arrays: list[pa.Array] = []
    for col, values in zip(cols, columns):
        try:
            arrays.append(pa.array(list(values), type=col.type))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise RowConversionError(
                f"{record_name} -> {table}.{col.name}: {type(exc).__name__}: {exc}", record_name, col.name
            ) from exc
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMAS[record_name])


def insert_records(store: Store, record_name: str, records: Iterable[dict[str, Any]]) -> int:
    """Inserts decoded records of one type into their raw table in one statement.

    Args:
        store: a :class:`~agentgym.processors.store.base.Store`.
        record_name: the Avro record type.
        records: decoded records of that type.

    Returns:
        The number of rows inserted.
    """
    return store.insert(TABLES[record_name], to_arrow(record_name, records))
