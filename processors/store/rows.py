"""Decoded Avro records to table rows and Arrow batches.

For each record type (``Experience``, ``Feedback``, ...):

* :data:`TABLES` names its raw table,
* :data:`COLUMNS` lists the table's columns that a record fills, in the table's order
  (``inserted_at`` and materialized columns are filled by ClickHouse),
* :data:`ARROW_SCHEMAS` gives their exact Arrow types (``ts`` is ``timestamp[ms, UTC]``
  from ``timestamp_ms``, maps are ``map<string, ...>``, arrays of records are
  ``list<struct<...>>``),
* :data:`ROW_BUILDERS` turns one record into a tuple in that order (a C ``itemgetter``
  for most types: ~0.2 µs a record),
* :func:`to_arrow` turns a batch of records into an Arrow table column by column, which
  :meth:`Store.insert <processors.store.base.Store.insert>` takes in one statement.

A record is the dict ``AvroCodec().decode(data).record`` returns: every field of the
newest schema is present (older writers' records are resolved to it), enums are
strings, optional fields are ``None``, maps are dicts, bytes are ``bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import pyarrow as pa

from agentgym.processors.store.base import Store
from agentgym.processors.store.exceptions import RowConversionError

__all__ = [
    "TABLES",
    "COLUMNS",
    "COLUMN_SPECS",
    "ColumnSpec",
    "ARROW_SCHEMAS",
    "ROW_BUILDERS",
    "RECORD_FOR_TABLE",
    "to_arrow",
    "rows_to_table",
    "insert_records",
]

_str = pa.string()
_f64 = pa.float64()
_i32 = pa.int32()
_i64 = pa.int64()
_ts = pa.timestamp("ms", tz="UTC")
_str_map = pa.map_(pa.string(), pa.string())


@dataclass(frozen=True)
class ColumnSpec:
    """How one table column is filled from a record.

    Attributes:
        name: the table column.
        key: the record field it is read from; None for a computed column (the four
            ``assignment`` columns of ``experiences``, read from ``assignment.<name>``).
        type: its Arrow type (``timestamp[ms, UTC]`` columns hold the field's epoch milliseconds).
    """

    name: str
    key: str | None
    type: pa.DataType


_Col = ColumnSpec


_MESSAGE = pa.struct([("role", _str), ("content", _str), ("name", _str), ("tool_call_id", _str)])
_STEP = pa.struct(
    [
        ("step_id", _str), ("kind", _str), ("name", _str), ("input", _str), ("output", _str),
        ("error", _str), ("latency_ms", _f64), ("prompt_tokens", _i32), ("completion_tokens", _i32),
    ]
)
_METRIC = pa.struct([("name", _str), ("kind", _str), ("direction", _str), ("cap", _f64), ("limit", _f64)])

_SPECS: dict[str, tuple[str, list[ColumnSpec]]] = {
    "Experience": ("experiences", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("trace_id", "trace_id", _str),
        _Col("ts", "timestamp_ms", _ts),
        _Col("session_id", "session_id", _str),
        _Col("user_id", "user_id", _str),
        _Col("input", "input", pa.list_(_MESSAGE)),
        _Col("steps", "steps", pa.list_(_STEP)),
        _Col("output", "output", _str),
        _Col("model_name", "model_name", _str),
        _Col("model_version", "model_version", _str),
        _Col("experiment_id", None, _str),  # assignment.experiment_id
        _Col("variant", None, _str),  # assignment.variant
        _Col("unit_type", None, _str),  # assignment.unit_type
        _Col("unit_id", None, _str),  # assignment.unit_id
        _Col("latency_ms", "latency_ms", _f64),
        _Col("prompt_tokens", "prompt_tokens", _i32),
        _Col("completion_tokens", "completion_tokens", _i32),
        _Col("cost_usd", "cost_usd", _f64),
        _Col("status", "status", _str),
        _Col("error", "error", _str),
        _Col("metadata", "metadata", _str_map),
        _Col("sdk_version", "sdk_version", _str),
    ]),
    "Feedback": ("feedback", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("trace_id", "trace_id", _str),
        _Col("ts", "timestamp_ms", _ts),
        _Col("kind", "kind", _str),
        _Col("source", "source", _str),
        _Col("rating", "rating", _f64),
        _Col("rating_scale", "rating_scale", _f64),
        _Col("thumbs_up", "thumbs_up", pa.bool_()),
        _Col("comment", "comment", _str),
        _Col("correction", "correction", _str),
        _Col("signal", "signal", _str),
        _Col("value", "value", _f64),
        _Col("user_id", "user_id", _str),
        _Col("metadata", "metadata", _str_map),
    ]),
    "Outcome": ("outcomes", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("trace_id", "trace_id", _str),
        _Col("ts", "timestamp_ms", _ts),
        _Col("label", "label", _str),
        _Col("confidence", "confidence", _f64),
        _Col("labeller", "labeller", _str),
        _Col("labeller_version", "labeller_version", _str),
        _Col("reasons", "reasons", pa.list_(_str)),
        _Col("revision", "revision", _i32),
        _Col("model_version", "model_version", _str),
        _Col("experiment_id", "experiment_id", _str),
        _Col("variant", "variant", _str),
        _Col("unit_id", "unit_id", _str),
        _Col("corrected_output", "corrected_output", _str),
    ]),
    "DeadLetter": ("dead_letters", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("ts", "timestamp_ms", _ts),
        _Col("source_topic", "source_topic", _str),
        _Col("source_partition", "source_partition", _i32),
        _Col("source_offset", "source_offset", _i64),
        _Col("key", "key", pa.binary()),
        _Col("payload", "payload", pa.binary()),
        _Col("error_type", "error_type", _str),
        _Col("reason", "reason", _str),
        _Col("processor", "processor", _str),
    ]),
    "DriftAlert": ("drift_alerts", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("model_version", "model_version", _str),
        _Col("ts", "timestamp_ms", _ts),
        _Col("metric", "metric", _str),
        _Col("detector", "detector", _str),
        _Col("estimate_before", "estimate_before", _f64),
        _Col("estimate_after", "estimate_after", _f64),
        _Col("n", "n", _i64),
    ]),
    "ExperimentConfig": ("experiments", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("experiment_id", "experiment_id", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("name", "name", _str),
        _Col("salt", "salt", _str),
        _Col("unit_type", "unit_type", _str),
        _Col("variants", "variants", pa.list_(pa.struct(
            [("name", _str), ("model_version", _str), ("weight", _f64), ("is_control", pa.bool_())]))),
        _Col("primary_metric", "primary_metric", _METRIC),
        _Col("guardrails", "guardrails", pa.list_(_METRIC)),
        _Col("alpha", "alpha", _f64),
        _Col("min_samples_per_arm", "min_samples_per_arm", _i32),
        _Col("status", "status", _str),
        _Col("config_version", "config_version", _i32),
        _Col("updated_at", "updated_ms", _ts),
        _Col("updated_by", "updated_by", _str),
    ]),
    "StatsSnapshot": ("stats_snapshots", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("experiment_id", "experiment_id", _str),
        _Col("ts", "timestamp_ms", _ts),
        _Col("metric", "metric", _str),
        _Col("arms", "arms", pa.list_(pa.struct(
            [("variant", _str), ("n", _i64), ("sum", _f64), ("sum_squares", _f64)]))),
        _Col("comparisons", "comparisons", pa.list_(pa.struct([
            ("variant", _str), ("control", _str), ("estimate", _f64), ("ci_low", _f64), ("ci_high", _f64),
            ("relative_estimate", _f64), ("relative_ci_low", _f64), ("relative_ci_high", _f64),
            ("p_value", _f64), ("fixed_horizon_p_value", _f64),
        ]))),
        _Col("srm_p_value", "srm_p_value", _f64),
        _Col("status", "status", _str),
        _Col("message", "message", _str),
        _Col("role", "role", _str),
        _Col("config_version", "config_version", _i32),
        _Col("alpha", "alpha", _f64),
        _Col("mixing_rho", "mixing_rho", _f64),
        _Col("srm_chi_square_p_value", "srm_chi_square_p_value", _f64),
        _Col("srm_log_bayes_factor", "srm_log_bayes_factor", _f64),
        _Col("details_json", "details_json", _str),
    ]),
    "Decision": ("decisions", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("experiment_id", "experiment_id", _str),
        _Col("ts", "timestamp_ms", _ts),
        _Col("action", "action", _str),
        _Col("winner", "winner", _str),
        _Col("reason", "reason", _str),
        _Col("evidence_json", "evidence_json", _str),
        _Col("decided_by", "decided_by", _str),
    ]),
    "DatasetReady": ("datasets", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("dataset_id", "dataset_id", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("kind", "kind", _str),
        _Col("uri", "uri", _str),
        _Col("manifest_uri", "manifest_uri", _str),
        _Col("num_examples", "num_examples", _i64),
        _Col("splits", "splits", pa.map_(_str, _i64)),
        _Col("checksum", "checksum", _str),
        _Col("created_at", "created_ms", _ts),
        _Col("source_trace_count", "source_trace_count", _i64),
        _Col("labeller_versions", "labeller_versions", pa.list_(_str)),
    ]),
    "ModelVersion": ("model_versions", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("model_version", "model_version", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("base_model", "base_model", _str),
        _Col("adapter_uri", "adapter_uri", _str),
        _Col("dataset_id", "dataset_id", _str),
        _Col("parent_version", "parent_version", _str),
        _Col("hyperparameters", "hyperparameters", _str_map),
        _Col("metrics", "metrics", pa.map_(_str, _f64)),
        _Col("status", "status", _str),
        _Col("created_at", "created_ms", _ts),
        _Col("updated_at", "updated_ms", _ts),
    ]),
    "ScenarioLineage": ("synthetic_scenarios", [
        _Col("event_id", "event_id", _str),
        _Col("tenant_id", "tenant_id", _str),
        _Col("agent_id", "agent_id", _str),
        _Col("dataset_id", "dataset_id", _str),
        _Col("scenario_id", "scenario_id", _str),
        _Col("split", "split", _str),
        _Col("family", "family", _str),
        _Col("generator", "generator", _str),
        _Col("tags", "tags", pa.list_(_str)),
        _Col("source_trace_id", "source_trace_id", _str),
        _Col("expected_tool", "expected_tool", _str),
        _Col("created_at", "created_ms", _ts),
    ]),
}

TABLES: dict[str, str] = {name: table for name, (table, _) in _SPECS.items()}
"""Record type -> its raw table (``"Experience" -> "experiences"``)."""

RECORD_FOR_TABLE: dict[str, str] = {table: name for name, table in TABLES.items()}
"""Raw table -> the record type it holds."""

COLUMNS: dict[str, tuple[str, ...]] = {name: tuple(c.name for c in cols) for name, (_, cols) in _SPECS.items()}
"""Record type -> the table columns a record fills, in the table's order."""

COLUMN_SPECS: dict[str, tuple[ColumnSpec, ...]] = {name: tuple(cols) for name, (_, cols) in _SPECS.items()}
"""Record type -> how each of its table's columns is filled, in :data:`COLUMNS` order."""

ARROW_SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([pa.field(c.name, c.type) for c in cols]) for name, (_, cols) in _SPECS.items()
}
"""Record type -> the Arrow schema of :func:`to_arrow`'s tables."""

_NO_ASSIGNMENT = (None, None, None, None)
_ASSIGNMENT_AT = COLUMNS["Experience"].index("experiment_id")
_experience_head = itemgetter(*[c.key for c in _SPECS["Experience"][1][:_ASSIGNMENT_AT]])
_experience_tail = itemgetter(*[c.key for c in _SPECS["Experience"][1][_ASSIGNMENT_AT + 4:]])


def _experience_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """An Experience as a row of ``experiences`` (its ``assignment`` flattened into four columns)."""
    a = record["assignment"]
    assignment = _NO_ASSIGNMENT if a is None else (a["experiment_id"], a["variant"], a["unit_type"], a["unit_id"])
    return _experience_head(record) + assignment + _experience_tail(record)


def _plain_builder(cols: list[ColumnSpec]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    keys = [c.key for c in cols]
    if any(k is None for k in keys):
        raise AssertionError("computed columns need a hand-written builder")
    getter = itemgetter(*keys)
    return getter  # type: ignore[return-value]  # itemgetter of >1 keys returns a tuple


ROW_BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    name: (_experience_row if name == "Experience" else _plain_builder(cols)) for name, (_, cols) in _SPECS.items()
}
"""Record type -> ``builder(record) -> tuple`` in :data:`COLUMNS` order; timestamps stay epoch milliseconds."""


def _column_values(col: ColumnSpec, records: Sequence[dict[str, Any]], cache: dict[str, list[Any]]) -> list[Any]:
    if col.key is not None:
        key = col.key
        return [r[key] for r in records]
    # Experience.assignment, flattened: read the field once for the four columns
    assignments = cache.get("assignment")
    if assignments is None:
        assignments = cache["assignment"] = [r["assignment"] for r in records]
    field = col.name
    return [None if a is None else a[field] for a in assignments]


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
