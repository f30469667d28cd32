"""The store's schema: migrations, deduplication, rollups, row conversion, the documented queries.

Runs the real ClickHouse engine embedded (chdb) on a temporary directory: one store
for the module, because chdb hosts one data directory per process. Tests keep apart
by tenant.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from agentgym.processors.store import (
    MigrationError,
    RowConversionError,
    StoreClosedError,
    StoreConfigError,
    StoreError,
    StoreSettings,
    migrate,
    open_store,
    refresh_rollups,
)
from agentgym.processors.store.chdb_store import ChdbStore
from agentgym.processors.store.migrations import SQL_DIR, load_migrations, pending_migrations
from agentgym.processors.store.readonly import check_readonly
from agentgym.processors.store.rows import ARROW_SCHEMAS, COLUMNS, ROW_BUILDERS, TABLES, insert_records, rows_to_table, to_arrow
from tests import store_samples as samples

DOCS = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"

RAW_TABLES = {"experiences", "feedback", "outcomes", "dead_letters", "drift_alerts", "audit_log"}
REGISTRY_TABLES = {"experiments", "stats_snapshots", "decisions", "datasets", "model_versions", "synthetic_scenarios"}
VIEWS = {
    "v_experiences", "v_feedback", "v_outcomes_latest", "v_dead_letters", "v_experiments", "v_stats_snapshots",
    "v_decisions", "v_datasets", "v_model_versions", "v_runs", "v_rollup_hourly", "v_drift_alerts",
    "v_synthetic_scenarios", "v_audit_log",
}
# one tenant's rows of each view (the API binds `tenant`), 0009
TENANT_VIEWS = {"pv_" + v[2:] for v in VIEWS}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('store') / 'clickhouse'}")
    assert isinstance(s, ChdbStore)
    applied = migrate(s)
    assert applied == [m.version for m in load_migrations()]
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def tenant(unique: str) -> str:
    return f"tenant_{unique}"


def _tables(store: ChdbStore, database: str = "agentgym") -> dict[str, str]:
    res = store.query("SELECT name, engine FROM system.tables WHERE database = {db:String}", {"db": database})
    return {name: engine for name, engine in res.rows if not name.startswith(".")}


def _count(store: ChdbStore, sql: str, tenant: str) -> int:
    return int(store.query(sql, {"tenant": tenant}).scalar())


# --------------------------------------------------------------------------- migrations
def test_migrations_create_every_table_view_and_rollup(store: ChdbStore) -> None:
    tables = _tables(store)
    for name in RAW_TABLES | REGISTRY_TABLES:
        assert tables.get(name) == "ReplacingMergeTree", name
    for name in VIEWS | TENANT_VIEWS:
        assert tables.get(name) == "View", name
    assert tables["rollup_hourly"] == "AggregatingMergeTree"
    assert tables["mv_rollup_hourly"] == "MaterializedView"
    assert tables["schema_migrations"] == "ReplacingMergeTree"
    assert tables["tenant_retention"] == "Join"  # 0011: each tenant's retention, read by the expires_at defaults
    versions = [v for (v,) in store.query("SELECT version FROM schema_migrations FINAL ORDER BY version").rows]
    assert versions == [m.version for m in load_migrations()] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_migrating_again_is_a_no_op(store: ChdbStore) -> None:
    before = _tables(store)
    rows_before = store.query("SELECT count() FROM schema_migrations").scalar()
    assert migrate(store) == []
    assert pending_migrations(store) == []
    assert _tables(store) == before
    assert store.query("SELECT count() FROM schema_migrations").scalar() == rows_before


def test_a_new_database_gets_every_migration_and_an_edited_one_is_refused(store: ChdbStore, unique: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    database = f"agentgym_{unique}"
    try:
        assert migrate(store, database, sql_dir) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        assert RAW_TABLES <= set(_tables(store, database))
        # the views of that database read that database's tables
        assert store.query(f"SELECT count() FROM {database}.v_runs").scalar() == 0
        first = sql_dir / "0001_raw_tables.sql"
        first.write_text(first.read_text() + "\n-- edited after it was applied\n")
        with pytest.raises(MigrationError, match=r"0001_raw_tables\.sql changed after it was applied"):
            migrate(store, database, sql_dir)
    finally:
        store.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_a_failing_statement_names_the_migration(store: ChdbStore, unique: str, tmp_path: Path) -> None:
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE {db}.t (a UInt8) ENGINE = NoSuchEngine;\n")
    database = f"agentgym_{unique}"
    try:
        with pytest.raises(MigrationError, match=r"0001_broken\.sql, statement 1 .*NoSuchEngine|UNKNOWN_STORAGE"):
            migrate(store, database, tmp_path)
        assert pending_migrations(store, database, tmp_path)[0].name == "broken"
    finally:
        store.command(f"DROP DATABASE IF EXISTS {database} SYNC")


# --------------------------------------------------------------------------- rows
def test_arrow_schemas_match_the_tables_column_order(store: ChdbStore) -> None:
    for record_name, table in TABLES.items():
        described = store.query(f"DESCRIBE TABLE {table}").named_rows()
        # every column a record fills: all but inserted_at and expires_at (set by the server) and computed ones
        insertable = [d["name"] for d in described
                      if d["default_type"] in ("", "DEFAULT") and d["name"] not in ("inserted_at", "expires_at")]
        assert list(COLUMNS[record_name]) == insertable, record_name
        assert ARROW_SCHEMAS[record_name].names == insertable, record_name


def test_tables_agree_with_the_topic_specs() -> None:
    from agentgym.schemas.topics import TOPICS

    covered = {spec.record: spec.table for spec in TOPICS.values() if spec.record in TABLES}
    assert covered == {name: TABLES[name] for name in covered}
    assert set(covered) == set(TABLES), "every record type the store holds has its topic"


def test_row_builders_agree_with_to_arrow(tenant: str) -> None:
    for record_name, record in samples.one_of_each(tenant).items():
        row = ROW_BUILDERS[record_name](record)
        assert len(row) == len(COLUMNS[record_name])
        assert rows_to_table(record_name, [row]).equals(to_arrow(record_name, [record])), record_name
    exp = samples.one_of_each(tenant)["Experience"]
    named = dict(zip(COLUMNS["Experience"], ROW_BUILDERS["Experience"](exp)))
    assert named["experiment_id"] == "exp1" and named["unit_type"] == "user"
    assert named["ts"] == exp["timestamp_ms"]  # epoch milliseconds; Arrow types it as timestamp[ms, UTC]


def test_to_arrow_names_the_column_that_does_not_fit(tenant: str) -> None:
    bad = dict(samples.experience(tenant))
    bad["latency_ms"] = "slow"
    with pytest.raises(RowConversionError) as info:
        to_arrow("Experience", [samples.experience(tenant), bad])
    assert info.value.column == "latency_ms" and "experiences.latency_ms" in str(info.value)


def test_every_record_type_round_trips(store: ChdbStore, tenant: str) -> None:
    records = samples.one_of_each(tenant)
    for record_name, record in records.items():
        assert insert_records(store, record_name, [record]) == 1
    where = {"tenant": tenant}
    exp = store.query(
        "SELECT trace_id, ts, experiment_id, unit_type, input.content, steps.kind, metadata['channel'], status "
        "FROM v_experiences WHERE tenant_id = {tenant:String}", where
    ).rows
    e = records["Experience"]
    assert exp == [(
        e["trace_id"],
        dt.datetime.fromtimestamp(e["timestamp_ms"] / 1000, dt.timezone.utc).replace(tzinfo=None),
        "exp1", "user", ["be brief", "where is order 42?"], ["llm", "tool"], "web", "ok",
    )]
    assert store.query("SELECT kind, thumbs_up FROM v_feedback WHERE tenant_id = {tenant:String}", where).rows == [("thumbs", True)]
    assert store.query(
        "SELECT label, reasons, revision FROM v_outcomes_latest WHERE tenant_id = {tenant:String}", where
    ).rows == [("success", ["rev 0"], 0)]
    raw = store.query_arrow(
        "SELECT hex(key) AS k, hex(payload) AS p FROM v_dead_letters WHERE tenant_id = {tenant:String}", where
    ).to_pylist()
    assert raw == [{"k": b"k\x00\xff".hex().upper(), "p": b"\x00garbage\xff".hex().upper()}]  # bytes kept whole
    assert store.query(
        "SELECT source_topic, source_offset, error_type FROM v_dead_letters WHERE tenant_id = {tenant:String}", where
    ).rows == [("gym-experiences-v1", 7, "BadMarkerError")]
    assert store.query(
        "SELECT primary_metric.name, length(variants), guardrails[1].limit, config_version "
        "FROM v_experiments WHERE tenant_id = {tenant:String}", where
    ).rows == [("success_rate", 2, 0.1, 1)]
    assert store.query(
        "SELECT metric, arms.n, comparisons[1].relative_ci_low FROM v_stats_snapshots WHERE tenant_id = {tenant:String}", where
    ).rows == [("success_rate", [100, 110], None)]
    assert store.query(
        "SELECT action, winner FROM v_decisions WHERE tenant_id = {tenant:String}", where
    ).rows == [("promote_winner", "treatment")]
    assert store.query(
        "SELECT splits['train'], labeller_versions FROM v_datasets WHERE tenant_id = {tenant:String}", where
    ).rows == [(1000, ["rules-1"])]
    assert store.query(
        "SELECT metrics['eval_loss'], hyperparameters['lr'], dataset_id FROM v_model_versions WHERE tenant_id = {tenant:String}",
        where,
    ).rows == [(1.25, "0.0002", "ds1")]
    assert store.query(
        "SELECT outcome_label, feedback_events, thumbs_up, experiment_id FROM v_runs WHERE tenant_id = {tenant:String}", where
    ).rows == [("success", 1, 1, "exp1")]


# --------------------------------------------------------------------------- deduplication
def test_a_replayed_event_is_visible_once(store: ChdbStore, tenant: str) -> None:
    e = samples.experience(tenant)
    f = samples.feedback(tenant, e["trace_id"])
    insert_records(store, "Experience", [e])
    insert_records(store, "Experience", [e, e])  # a replayed batch, with the event twice in it
    insert_records(store, "Feedback", [f])
    insert_records(store, "Feedback", [f])
    q = "SELECT count() FROM {t} WHERE tenant_id = {{tenant:String}}"
    assert _count(store, q.format(t="v_experiences"), tenant) == 1
    assert _count(store, q.format(t="v_feedback"), tenant) == 1
    assert _count(store, q.format(t="v_runs"), tenant) == 1
    assert store.query("SELECT feedback_events FROM v_runs WHERE tenant_id = {tenant:String}", {"tenant": tenant}).scalar() == 1
    # and once merged, storage itself holds one copy
    store.command("OPTIMIZE TABLE experiences FINAL")
    store.command("OPTIMIZE TABLE feedback FINAL")
    assert _count(store, q.format(t="experiences"), tenant) == 1
    assert _count(store, q.format(t="feedback"), tenant) == 1


def test_outcome_revisions_show_the_latest(store: ChdbStore, tenant: str) -> None:
    e = samples.experience(tenant)
    trace = e["trace_id"]
    insert_records(store, "Experience", [e])
    # revisions arrive out of order, in separate batches and replayed
    rev0 = samples.outcome(tenant, trace, label="failure", revision=0)
    rev2 = samples.outcome(tenant, trace, label="success", revision=2)
    rev1 = samples.outcome(tenant, trace, label="failure", revision=1)
    for batch in ([rev0], [rev2], [rev1, rev0]):
        insert_records(store, "Outcome", batch)
    where = {"tenant": tenant}
    latest = store.query(
        "SELECT trace_id, label, revision, event_id FROM v_outcomes_latest WHERE tenant_id = {tenant:String}", where
    ).rows
    assert latest == [(trace, "success", 2, rev2["event_id"])]
    assert store.query("SELECT outcome_label, outcome_revision FROM v_runs WHERE tenant_id = {tenant:String}", where).rows == [
        ("success", 2)
    ]
    store.command("OPTIMIZE TABLE outcomes FINAL")
    assert store.query("SELECT label, revision FROM outcomes WHERE tenant_id = {tenant:String}", where).rows == [("success", 2)]


def test_experiments_and_model_versions_keep_the_latest(store: ChdbStore, tenant: str) -> None:
    t0 = samples.now_ms()
    configs = [
        samples.experiment_config(tenant, "exp", status="running", config_version=1, updated_ms=t0),
        # a higher config_version wins even with an older clock
        samples.experiment_config(tenant, "exp", status="paused", config_version=2, updated_ms=t0 - 5_000),
        # within one config_version the later update wins
        samples.experiment_config(tenant, "exp", status="concluded", config_version=2, updated_ms=t0 - 1_000),
    ]
    insert_records(store, "ExperimentConfig", [configs[2]])
    insert_records(store, "ExperimentConfig", [configs[0], configs[1]])
    where = {"tenant": tenant}
    assert store.query("SELECT status, config_version FROM v_experiments WHERE tenant_id = {tenant:String}", where).rows == [
        ("concluded", 2)
    ]
    champion = samples.model_version(tenant, "v7", status="champion", updated_ms=t0 + 1_000)
    candidate = samples.model_version(tenant, "v7", status="candidate", updated_ms=t0)
    insert_records(store, "ModelVersion", [champion])
    insert_records(store, "ModelVersion", [candidate])
    assert store.query("SELECT model_version, status FROM v_model_versions WHERE tenant_id = {tenant:String}", where).rows == [
        ("v7", "champion")
    ]


# --------------------------------------------------------------------------- rollups
def _interpolated_quantile(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def test_rollup_hourly_counts_each_run_once_with_its_latest_outcome(store: ChdbStore, tenant: str) -> None:
    hour = (samples.now_ms() // 3_600_000 - 5) * 3_600_000  # an hour five hours ago
    latencies = [100.0, 200.0, 300.0, 400.0]
    runs = [
        samples.experience(tenant, ts_ms=hour + 60_000 * i, latency_ms=lat, cost_usd=0.01,
                           status="error" if i == 3 else "ok", prompt_tokens=10, completion_tokens=5)
        for i, lat in enumerate(latencies)
    ]
    other_model = samples.experience(tenant, ts_ms=hour + 1_000, model_version="v2", latency_ms=50.0)
    next_hour = samples.experience(tenant, ts_ms=hour + 3_600_000 + 1_000, latency_ms=1000.0)
    insert_records(store, "Experience", [*runs, other_model, next_hour])
    insert_records(store, "Experience", [runs[0], runs[1]])  # replayed
    t = [r["trace_id"] for r in runs]
    insert_records(store, "Outcome", [
        samples.outcome(tenant, t[0], label="failure", revision=0),
        samples.outcome(tenant, t[0], label="success", revision=1),  # relabelled
        samples.outcome(tenant, t[1], label="failure"),
        samples.outcome(tenant, t[2], label="unknown"),
    ])
    fb = [samples.feedback(tenant, t[0]), samples.feedback(tenant, t[0], thumbs_up=False), samples.feedback(tenant, t[1])]
    insert_records(store, "Feedback", fb + fb[:1])  # one replayed
    refresh_rollups(store)
    rows = store.query(
        "SELECT model_version, hour, runs, error_runs, labelled_runs, successful_runs, success_rate, runs_with_feedback, "
        "feedback_rate, feedback_events, prompt_tokens, completion_tokens, cost_usd, latency_p50_ms, latency_p95_ms "
        "FROM v_rollup_hourly WHERE tenant_id = {tenant:String} ORDER BY model_version, hour",
        {"tenant": tenant},
    ).named_rows()
    assert [(r["model_version"], r["runs"]) for r in rows] == [("v1", 4), ("v1", 1), ("v2", 1)]
    first = rows[0]
    assert first["hour"] == dt.datetime.fromtimestamp(hour / 1000, dt.timezone.utc).replace(tzinfo=None)
    assert (first["error_runs"], first["labelled_runs"], first["successful_runs"]) == (1, 2, 1)
    assert first["success_rate"] == pytest.approx(0.5)
    assert (first["runs_with_feedback"], first["feedback_events"]) == (2, 3)
    assert first["feedback_rate"] == pytest.approx(0.5)
    assert (first["prompt_tokens"], first["completion_tokens"]) == (40, 20)
    assert first["cost_usd"] == pytest.approx(0.04)
    assert first["latency_p50_ms"] == pytest.approx(_interpolated_quantile(latencies, 0.5))
    assert first["latency_p95_ms"] == pytest.approx(_interpolated_quantile(latencies, 0.95))
    assert rows[2]["success_rate"] is None  # nothing labelled: no rate rather than 0
    # partial aggregates merge across hours into the figures of the runs themselves
    merged = store.query(
        "SELECT sum(runs), quantilesMerge(0.5, 0.9, 0.95, 0.99)(latency_ms_quantiles)[1] FROM rollup_hourly "
        "WHERE tenant_id = {tenant:String} AND model_version = 'v1'",
        {"tenant": tenant},
    ).rows[0]
    assert merged[0] == 5
    assert merged[1] == pytest.approx(_interpolated_quantile([*latencies, 1000.0], 0.5))


# --------------------------------------------------------------------------- the documented queries
def _documented_queries() -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"```sql\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)]


def test_documented_queries_run_and_return_rows(store: ChdbStore, tenant: str) -> None:
    records = samples.one_of_each(tenant)
    for record_name, record in records.items():
        insert_records(store, record_name, [record])
    more = [samples.experience(tenant, model_version="v2", latency_ms=80.0 + i) for i in range(3)]
    insert_records(store, "Experience", more)
    insert_records(store, "Outcome", [samples.outcome(tenant, more[0]["trace_id"], model_version="v2")])
    insert_records(store, "ModelVersion", [samples.model_version(tenant, "v9", status="champion", dataset="ds1")])
    refresh_rollups(store)
    queries = _documented_queries()
    assert len(queries) >= 10, "docs/analytics.md lost its ready queries"
    for sql in queries:
        check_readonly(sql)  # every documented query works through the read-only interface
        result = store.query(sql)
        assert result.rows, f"documented query returned nothing:\n{sql}"


# --------------------------------------------------------------------------- the store itself
def test_generic_rows_insert_and_query_types(store: ChdbStore, unique: str) -> None:
    table = f"scratch_{unique}"
    store.command(f"CREATE TABLE {table} (id UInt32, name String, at DateTime64(3, 'UTC'), tags Array(String)) "
                  "ENGINE = MergeTree ORDER BY id")
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    assert store.insert(table, [(1, "a", at, ["x"]), (2, "b'c", at, [])], ["id", "name", "at", "tags"]) == 2
    assert store.insert(table, pa.table({"id": pa.array([3], pa.uint32()), "name": ["arrow"]})) == 1
    res = store.query(f"SELECT id, name, at, tags FROM {table} WHERE id <= {{n:UInt32}} ORDER BY id", {"n": 2})
    assert res.column_names == ("id", "name", "at", "tags")
    assert res.column_types == ("UInt32", "String", "DateTime64(3, 'UTC')", "Array(String)")
    assert res.rows == [(1, "a", at.replace(tzinfo=None), ["x"]), (2, "b'c", at.replace(tzinfo=None), [])]
    arrow = store.query_arrow(f"SELECT id, name FROM {table} ORDER BY id")
    assert arrow.column("name").to_pylist() == ["a", "b'c", "arrow"]
    raw = store.query_raw(f"SELECT id, name FROM {table} ORDER BY id FORMAT CSV", "JSONEachRow")
    assert raw.data == b'1,"a"\n2,"b\'c"\n3,"arrow"\n'  # the statement's own FORMAT wins
    assert store.insert(table, [], ["id"]) == 0
    assert store.insert(table, pa.table({"id": pa.array([], pa.uint32())})) == 0
    store.command(f"DROP TABLE {table} SYNC")


def test_settings_default_to_the_embedded_store_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGYM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENTGYM_CLICKHOUSE_URL", raising=False)
    s = StoreSettings()
    assert s.clickhouse_url == f"chdb://{(tmp_path / 'home').resolve() / 'clickhouse'}"
    assert s.clickhouse_database == "agentgym"
    monkeypatch.setenv("AGENTGYM_CLICKHOUSE_URL", "http://clickhouse:8123")
    monkeypatch.setenv("AGENTGYM_CLICKHOUSE_PASSWORD", "s3cret")
    s = StoreSettings()
    assert s.clickhouse_url == "http://clickhouse:8123"
    assert "s3cret" not in repr(s) and s.clickhouse_password is not None
    assert StoreSettings(clickhouse_url="chdb:///x").clickhouse_url == "chdb:///x"  # argument beats environment
    with pytest.raises(ValueError, match="plain identifier"):
        StoreSettings(clickhouse_database="agent-gym; DROP")


def test_open_store_rejects_an_unknown_scheme() -> None:
    with pytest.raises(StoreConfigError, match=r"chdb:///path/to/dir .* http\(s\)://host:port"):
        open_store("postgres://db:5432")


def test_a_second_directory_in_one_process_is_a_clear_error(store: ChdbStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="one data directory per process"):
        open_store(f"chdb://{tmp_path / 'other'}")
    assert store.query("SELECT 1").scalar() == 1  # the open store is untouched


def test_stores_on_one_directory_share_the_engine_and_close_independently(store: ChdbStore) -> None:
    second = open_store(f"chdb://{store.path}")
    assert second.query("SELECT count() FROM schema_migrations FINAL").scalar() == len(load_migrations())
    second.close()
    second.close()  # idempotent
    with pytest.raises(StoreClosedError):
        second.query("SELECT 1")
    assert store.query("SELECT count() FROM schema_migrations FINAL").scalar() == len(load_migrations())
