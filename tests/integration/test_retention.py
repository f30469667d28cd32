"""Retention per tenant (docs/privacy.md, Retention), against the real engine and broker.

* ClickHouse: a tenant with a 1-day retention loses its rows older than a day in every table
  that follows a retention (the stored rows, not only the views); another tenant's stay.
* gym-tenants-v1 -> ClickHouse: ``agentgym tenants retention`` sets it, the worker's pass applies it.
* Kafka: the event topics' ``retention.ms``, read back with the admin client's describe_configs.
* Files: expired datasets and adapters are deleted, newer ones and served models kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentgym.ops.cli import main as cli
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.retention import TABLES, Retention, RetentionLoop, RetentionSettings, sync
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.store.rows import insert_records
from agentgym.producers.admin import EVENT_TOPICS, set_topic_retention
from agentgym.schemas.topics import TOPICS
from agentgym.trainers.registry import ModelRegistry, ModelVersion
from agentgym.trainers.retention import expire_datasets, expire_files, expire_models
from tests import store_samples as samples

DAY_MS = 86_400_000
DEFAULTS = RetentionSettings().defaults


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('retention') / 'clickhouse'}")
    migrate(s)
    try:
        yield s
    finally:
        s.close()


def _seed(store: Store, tenant: str, ts_ms: int) -> None:
    """One row of every table with a retention, at ``ts_ms``."""
    e = samples.experience(tenant, ts_ms=ts_ms)
    insert_records(store, "Experience", [e])
    insert_records(store, "Feedback", [samples.feedback(tenant, e["trace_id"], ts_ms=ts_ms)])
    insert_records(store, "Outcome", [samples.outcome(tenant, e["trace_id"], ts_ms=ts_ms)])
    insert_records(store, "StatsSnapshot", [samples.stats_snapshot(tenant, "exp", ts_ms=ts_ms)])
    insert_records(store, "DatasetReady", [dict(samples.dataset_ready(tenant, f"ds-{ts_ms}"), created_ms=ts_ms)])
    dead = samples.one_of_each(tenant)["DeadLetter"]
    insert_records(store, "DeadLetter", [dict(dead, event_id=samples.new_id(), timestamp_ms=ts_ms)])


def _counts(store: Store, tenant: str) -> dict[str, int]:
    """Rows of the tenant stored in each table (no FINAL: what is on disk)."""
    return {t: int(store.query(f"SELECT count() FROM {t} WHERE tenant_id = {{t:String}}", {"t": tenant}).scalar())
            for t in TABLES}


def test_a_tenants_retention_deletes_its_old_rows_and_no_one_elses(store: Store, unique: str) -> None:
    short, other = f"short_{unique}", f"other_{unique}"
    now = samples.now_ms()
    for tenant in (short, other):
        _seed(store, tenant, now - 3 * DAY_MS)  # older than a day
        _seed(store, tenant, now - 3_600_000)  # an hour old
    assert set(_counts(store, short).values()) == {2} and set(_counts(store, other).values()) == {2}

    one_day = Retention(events_days=1, outcomes_days=1, stats_days=1, datasets_days=1)
    assert sync(store, {short: one_day}, DEFAULTS) is True
    assert sync(store, {short: one_day}, DEFAULTS) is False  # nothing changed: nothing rewritten
    for t in TABLES:
        store.command(f"OPTIMIZE TABLE {t} FINAL")  # merges apply the TTL too; the rows stay gone
    assert _counts(store, short) == {t: 1 for t in TABLES}
    assert _counts(store, other) == {t: 2 for t in TABLES}
    kept = store.query("SELECT ts FROM experiences WHERE tenant_id = {t:String}", {"t": short}).scalar()
    assert kept.timestamp() * 1000 == pytest.approx(now - 3_600_000, abs=1)  # the recent one

    # a row that arrives already expired is never stored; the other tenant's still is
    _seed(store, short, now - 2 * DAY_MS)
    _seed(store, other, now - 2 * DAY_MS)
    assert _counts(store, short) == {t: 1 for t in TABLES}
    assert _counts(store, other) == {t: 3 for t in TABLES}

    # only the events follow events_days: a 1-day events retention keeps a 3-day-old outcome
    mixed = f"mixed_{unique}"
    _seed(store, mixed, now - 3 * DAY_MS)
    sync(store, {short: one_day, mixed: Retention(events_days=1)}, DEFAULTS)
    left = _counts(store, mixed)
    assert (left["experiences"], left["feedback"], left["dead_letters"]) == (0, 0, 0)
    assert (left["outcomes"], left["stats_snapshots"], left["datasets"]) == (1, 1, 1)

    # back to the defaults: the kept rows expire a year after their time again
    sync(store, {}, DEFAULTS)
    expires = store.query("SELECT expires_at FROM experiences WHERE tenant_id = {t:String}", {"t": short}).scalar()
    assert expires.timestamp() * 1000 == pytest.approx(now - 3_600_000 + DEFAULTS.events_days * DAY_MS, abs=1000)


def test_the_cli_sets_a_retention_that_the_workers_pass_applies(store: Store, bootstrap: str, unique: str) -> None:
    tenant, other = f"cli_{unique}", f"keep_{unique}"
    now = samples.now_ms()
    for t in (tenant, other):
        _seed(store, t, now - 3 * DAY_MS)
    runner = CliRunner()
    shown = runner.invoke(cli, ["tenants", "retention", tenant, "--bootstrap", bootstrap])
    assert shown.exit_code == 0, shown.output
    assert "events" in shown.output and f"{DEFAULTS.events_days}  (default)" in shown.output

    refused = runner.invoke(cli, ["tenants", "retention", tenant, "--bootstrap", bootstrap, "--events-days", "0"])
    assert refused.exit_code != 0 and "retention.events_days" in refused.output and "from 1 to" in refused.output

    set_ = runner.invoke(cli, ["tenants", "retention", tenant, "--bootstrap", bootstrap, "--events-days", "1",
                               "--datasets-days", "30"])
    assert set_.exit_code == 0, set_.output
    assert "events          1  (tenant)" in set_.output and "datasets       30  (tenant)" in set_.output
    shown = runner.invoke(cli, ["tenants", "retention", tenant, "--bootstrap", bootstrap, "--json"])
    assert json.loads(shown.output) == {
        "tenant_id": tenant, "events_days": 1, "outcomes_days": DEFAULTS.outcomes_days,
        "stats_days": DEFAULTS.stats_days, "datasets_days": 30, "models_days": DEFAULTS.models_days,
        "own": {"events_days": 1, "datasets_days": 30},
    }
    # changing the plan keeps the retention; the list shows it
    assert runner.invoke(cli, ["tenants", "set", tenant, "--plan", "pro", "--bootstrap", bootstrap]).exit_code == 0
    listed = runner.invoke(cli, ["tenants", "list", "--bootstrap", bootstrap])
    line = next(ln for ln in listed.output.splitlines() if ln.startswith(tenant))
    assert "pro" in line and line.endswith("events=1 datasets=30")

    loop = RetentionLoop(RetentionSettings(bootstrap_servers=bootstrap), store=store)
    loop.run_once()
    assert _counts(store, tenant)["experiences"] == 0 and _counts(store, tenant)["outcomes"] == 1
    assert _counts(store, other)["experiences"] == 1

    reset = runner.invoke(cli, ["tenants", "retention", tenant, "--bootstrap", bootstrap, "--reset"])
    assert reset.exit_code == 0 and "events        365  (default)" in reset.output


def _retention_ms(bootstrap: str, topics: list[str]) -> dict[str, int]:
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics])
    return {res.name: int(f.result(30)["retention.ms"].value) for res, f in futures.items()}


def test_the_event_topics_get_the_platforms_retention_ms(bootstrap: str) -> None:
    events = [TOPICS[b].name for b in EVENT_TOPICS]
    dead = TOPICS["deadletter"].name
    default_ms = TOPICS["experiences"].retention_ms
    assert RetentionSettings().retention_kafka_events_ms == default_ms  # what the topics are created with
    longer = 14 * DAY_MS  # longer than the default: other tests' events on these shared topics are kept
    try:
        assert set_topic_retention(bootstrap, longer) == {t: longer for t in events}
        after = _retention_ms(bootstrap, [*events, dead])
        assert after == {**{t: longer for t in events}, dead: TOPICS["deadletter"].retention_ms}
    finally:
        set_topic_retention(bootstrap, default_ms)
    assert set(_retention_ms(bootstrap, events).values()) == {default_ms}


def _dataset(store: DatasetStore, tenant: str, dataset_id: str, created_ms: int) -> None:
    store.write(dataset_id=dataset_id, tenant_id=tenant, agent_id="support", kind="sft", created_ms=created_ms,
                rows={"train": [{"prompt": [{"role": "user", "content": "p"}],
                                     "completion": [{"role": "assistant", "content": "c"}]}]})


def _adapter(root: Path, tenant: str, version: str, status: str, created_ms: int) -> ModelVersion:
    (root / version).mkdir(parents=True)
    (root / version / "adapter_model.safetensors").write_bytes(b"weights")
    return ModelVersion(tenant_id=tenant, model_version=version, agent_id="support", base_model="tiny:llama",
                        status=status, adapter_uri=str(root / version), created_ms=created_ms, updated_ms=created_ms)


def test_expired_dataset_and_model_files_are_deleted(tmp_path: Path) -> None:
    now = samples.now_ms()
    old, recent = now - 3 * DAY_MS, now - 3_600_000
    datasets = DatasetStore(str(tmp_path / "datasets"))
    _dataset(datasets, "short", "ds-short-old", old)
    _dataset(datasets, "short", "ds-short-new", recent)
    _dataset(datasets, "other", "ds-other-old", old)
    tenants = {"short": Retention(datasets_days=1, models_days=1)}
    assert expire_datasets(datasets.url, tenants, DEFAULTS, now) == ["ds-short-old"]
    assert sorted(m.dataset_id for m in datasets.list()) == ["ds-other-old", "ds-short-new"]
    assert not (tmp_path / "datasets" / "ds-short-old").exists()

    models = tmp_path / "models"
    versions = [
        _adapter(models, "short", "m-retired-old", "retired", old),
        _adapter(models, "short", "m-rejected-old", "rejected", old),
        _adapter(models, "short", "m-champion-old", "champion", old),  # served: kept whatever its age
        _adapter(models, "short", "m-candidate-old", "candidate", old),
        _adapter(models, "short", "m-retired-new", "retired", recent),
        _adapter(models, "other", "m-other-old", "retired", old),
        _adapter(tmp_path / "elsewhere", "short", "m-outside", "retired", old),  # not in the model store
    ]
    gone = expire_models(str(models), versions, tenants, DEFAULTS, now)
    assert sorted(gone) == ["m-rejected-old", "m-retired-old"]
    assert sorted(p.name for p in models.iterdir()) == ["m-candidate-old", "m-champion-old", "m-other-old", "m-retired-new"]
    assert (tmp_path / "elsewhere" / "m-outside").exists()


def test_the_file_pass_reads_retention_and_registry_from_kafka(tmp_path: Path, bootstrap: str, unique: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = f"files_{unique}"
    now = samples.now_ms()
    datasets = DatasetStore(str(tmp_path / "datasets"))
    _dataset(datasets, tenant, f"ds-{unique}-old", now - 3 * DAY_MS)
    _dataset(datasets, tenant, f"ds-{unique}-new", now)
    mv = _adapter(tmp_path / "models", tenant, f"m-{unique}", "retired", now - 3 * DAY_MS)
    registry = ModelRegistry(bootstrap)
    try:
        registry.register(mv)
    finally:
        registry.close()
    result = CliRunner().invoke(cli, ["tenants", "retention", tenant, "--bootstrap", bootstrap, "--datasets-days", "2",
                                      "--models-days", "2"])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("AGENTGYM_DATASET_STORE", datasets.url)
    expired = expire_files(RetentionSettings(bootstrap_servers=bootstrap), str(tmp_path / "models"))
    assert expired.datasets == [f"ds-{unique}-old"]
    assert expired.models == [f"m-{unique}"]
    assert [m.dataset_id for m in datasets.list()] == [f"ds-{unique}-new"]


def test_retention_days_out_of_range_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"retention\.models_days must be a whole number of days from 1 to 10000, got 0"):
        Retention(models_days=0)
    with pytest.raises(ValueError, match="AGENTGYM_RETENTION_EVENTS_DAYS|retention_events_days"):
        RetentionSettings(retention_events_days=20_000)


def _http_count(port: int, sql: str) -> int:
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/?query={urllib.parse.quote(sql)}", timeout=10) as r:
        return int(r.read().decode().strip())


@pytest.mark.timeout(180)
def test_the_worker_applies_a_retention_set_on_the_topic(bootstrap: str, tmp_path: Path, unique: str) -> None:
    from agentgym.gateway.plans import set_retention
    from agentgym.producers.records import RecordProducer
    from tests.workers import Worker, wait_for, worker_env

    short, other = f"wshort_{unique}", f"wother_{unique}"
    old = samples.now_ms() - 3 * DAY_MS
    with RecordProducer(bootstrap) as producer:
        for record in (samples.experience(short, ts_ms=old), samples.experience(short), samples.experience(other, ts_ms=old)):
            producer.send("experiences", record)
    env = worker_env(bootstrap, tmp_path / "home", f"ret-{unique}", "sink", AGENTGYM_RETENTION_INTERVAL_S="0.5")
    worker = Worker(env, tmp_path / "worker.log").start()
    port = int(env["AGENTGYM_HTTP_PORT"])
    count = "SELECT count() FROM experiences WHERE tenant_id = '{}'"
    try:
        wait_for(lambda: _http_count(port, count.format(short)) == 2 and _http_count(port, count.format(other)) == 1,
                 120, "the sink to store the runs", worker)
        set_retention(bootstrap, short, events_days=1)
        wait_for(lambda: _http_count(port, count.format(short)) == 1, 60, "the worker to apply the retention", worker)
        assert _http_count(port, count.format(other)) == 1
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
    assert "retention: retention.ms=604800000 on gym-experiences-v1" in worker.log.read_text(errors="replace")
