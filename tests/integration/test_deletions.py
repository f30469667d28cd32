"""Deleting a user's data, end to end on the real broker and the embedded ClickHouse engine.

The real Faust worker runs the sink (the store's owner; the test reads through its HTTP
interface); the CLI command records the deletion and waits until the worker applied it. Then no query, no replay
(a fresh sink group into an empty database), no dataset export and no newly built dataset
returns the user's data, and the other user's data stays.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from agentgym.ops.cli import main
from agentgym.processors.datasets.builder import DatasetBuilder
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.deletions import DeletionLog
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_reader
from agentgym.processors.store.base import Store
from agentgym.processors.store.chdb_store import ChdbStore
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from agentgym.trainers.registry import DELETED_DATA_FLAG, ModelRegistry, ModelVersion
from tests import store_samples, trainer_samples
from tests.kafka_utils import drain_sink
from tests.workers import Worker, wait_for, worker_env

CODEC = AvroCodec()
TRACE_SPECS = [TOPICS["experiences"], TOPICS["feedback"], TOPICS["outcomes"]]


def _produce(bootstrap: str, experiences: list[dict[str, Any]], feedback: list[dict[str, Any]], outcomes: list[dict[str, Any]],
             key: str | None = None) -> None:
    """Produces the records (keyed by their trace, or all by ``key``: one partition, in this order)."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for name, topic, records in (("Experience", "experiences", experiences), ("Feedback", "feedback", feedback),
                                 ("Outcome", "outcomes", outcomes)):
        for r in records:
            p.produce(TOPICS[topic].name, CODEC.encode(name, r), (key or r["trace_id"]).encode())
    assert p.flush(30) == 0


def _traces(store: Store, tenant: str, view: str) -> set[str]:
    return {r[0] for r in store.query(f"SELECT trace_id FROM {view} WHERE tenant_id = {{t:String}}", {"t": tenant}).rows}


@pytest.mark.timeout(180)
def test_a_deleted_user_is_gone_from_queries_replays_datasets_and_exports(
        bootstrap: str, registry: ModelRegistry, unique: str, tmp_path: Path) -> None:
    tenant, alice, bob = f"t-{unique}", f"alice-{unique}", f"bob-{unique}"
    hour_ago = store_samples.now_ms() - 3_600_000  # runs of the past hour (older ones may have expired: retention)
    exps, outs = trainer_samples.runs(tenant, "shouter", 40, start_ms=hour_ago)
    for i, e in enumerate(exps):
        e["user_id"] = alice if i % 2 == 0 else bob
    owner = {e["trace_id"]: e["user_id"] for e in exps}
    alice_traces = {t for t, u in owner.items() if u == alice}
    bob_traces = set(owner) - alice_traces
    # feedback by the user, and an annotation (a reviewer's gold label: no user_id) on each run
    fb = [{**store_samples.feedback(tenant, e["trace_id"], agent="shouter"), "user_id": e["user_id"]} for e in exps]
    fb += [{**store_samples.feedback(tenant, e["trace_id"], agent="shouter"), "user_id": None,
            "metadata": {"audit": "true"}} for e in exps]
    _produce(bootstrap, exps, fb, outs)

    # the real Faust worker with the sink: it owns the embedded store (others read it over HTTP) and applies deletions
    home, datasets_url = tmp_path / "home", str(tmp_path / "datasets")
    env = worker_env(bootstrap, home, f"app-{unique}", "sink", AGENTGYM_SINK_GROUP=f"sink-{unique}",
                     AGENTGYM_SINK_BATCH_MS="100", AGENTGYM_DATASET_STORE=datasets_url)
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        store = wait_for(lambda: open_reader(f"chdb://{home / 'clickhouse'}"), 60, "the worker's store", worker)
        count = lambda view: len(_traces(store, tenant, view))  # noqa: E731
        wait_for(lambda: count("v_experiences") == 40 and count("v_outcomes_latest") == 40
                 and store.query("SELECT count() FROM v_feedback WHERE tenant_id = {t:String}", {"t": tenant}).scalar() == 80,
                 90, "the runs in ClickHouse", worker)

        # a dataset built before the deletion holds both users' runs; a model is trained on it, another from that one
        settings = DatasetSettings(home=tmp_path, dataset_store=datasets_url, dataset_min_examples=5, dataset_eval_fraction=0.2)
        before = {m.kind: m for m in DatasetBuilder(store, settings).build(tenant, "shouter")}
        sft = before["sft"]
        assert set(sft.trace_ids) & alice_traces and set(sft.trace_ids) & bob_traces
        model, child = f"m-{unique}", f"m2-{unique}"
        registry.register(ModelVersion(tenant_id=tenant, model_version=model, agent_id="shouter", base_model="tiny",
                                       status="candidate", dataset_id=sft.dataset_id))
        registry.register(ModelVersion(tenant_id=tenant, model_version=child, agent_id="shouter", base_model="tiny",
                                       status="candidate", parent_version=model))

        # the CLI records the deletion and waits until the worker applied it
        result = CliRunner().invoke(main, ["privacy", "delete", "--bootstrap", bootstrap, "--tenant", tenant,
                                           "--user", alice, "--timeout", "60", "--json"])
        assert result.exit_code == 0, result.output + worker.tail()
        applied = json.loads(result.output.strip().splitlines()[-1])
        assert applied["status"] == "applied" and set(applied["trace_ids"]) == alice_traces
        assert applied["deleted_rows"] == {"experiences": 20, "feedback": 40, "outcomes": 20}
        assert set(applied["datasets"]) == {m.dataset_id for m in before.values()}
        assert set(applied["models_flagged"]) == {model, child}
        # the rewritten datasets reach ClickHouse with their new checksums; both audit records arrive
        new = {m.kind: m for m in DatasetStore(datasets_url).list() if m.tenant_id == tenant}
        wait_for(lambda: {r[0] for r in store.query("SELECT checksum FROM v_datasets WHERE tenant_id = {t:String}",
                                                    {"t": tenant}).rows} == {m.checksum for m in new.values()},
                 30, "the rewritten datasets' announcements in ClickHouse", worker)
        wait_for(lambda: {r[0] for r in store.query("SELECT action FROM v_audit_log WHERE tenant_id = {t:String}",
                                                    {"t": tenant}).rows} == {"privacy.delete", "privacy.delete.applied"},
                 30, "the deletion's audit records", worker)
        # events of the user arriving late (an SDK spool replayed after the deletion) are not inserted; new data is.
        # Each late record of the user goes to the partition of a run of the other user's, before it: once that
        # run is stored, the sink has read the user's record.
        late = trainer_samples.runs(tenant, "shouter", 2, seed=9, start_ms=hour_ago)[0]  # recorded before the deletion
        late[0]["user_id"], late[1]["user_id"] = alice, bob
        late_fb = [{**store_samples.feedback(tenant, t, agent="shouter"), "user_id": None} for t in sorted(alice_traces)[:3]]
        marker_fb = {**store_samples.feedback(tenant, late[1]["trace_id"], agent="shouter"), "user_id": bob}
        _produce(bootstrap, late, [*late_fb, marker_fb], [], key=late[1]["trace_id"])
        wait_for(lambda: late[1]["trace_id"] in _traces(store, tenant, "v_experiences")
                 and late[1]["trace_id"] in _traces(store, tenant, "v_feedback"), 30, "the other user's new run", worker)

        # no query returns the user's data; the other user's stays
        for view in ("v_experiences", "v_feedback", "v_outcomes_latest", "v_runs"):
            assert not _traces(store, tenant, view) & alice_traces, view
            assert bob_traces <= _traces(store, tenant, view), view
        assert late[0]["trace_id"] not in _traces(store, tenant, "v_experiences")
        assert store.query("SELECT count() FROM v_experiences WHERE user_id = {u:String}", {"u": alice}).scalar() == 0
        store.close()
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()

    # datasets: rewritten without the rows, with a new checksum that verifies; exports hold no row of the user
    ds = DatasetStore(datasets_url)
    for kind, old in before.items():
        m = new[kind]
        assert m.dataset_id == old.dataset_id and m.checksum != old.checksum
        ds.verify(m)
        assert not set(m.trace_ids) & alice_traces and m.counts["deleted_for_privacy"] > 0
        out = io.StringIO()
        ds.export_jsonl(m, out)
        exported = [json.loads(line) for line in out.getvalue().splitlines()]
        assert len(exported) == m.num_examples and not {r["trace_id"] for r in exported} & alice_traces
        assert not {r.get("chosen_trace_id") for r in exported} & alice_traces
        if kind == "sft":
            assert {r["trace_id"] for r in exported} == set(m.trace_ids) and m.trace_ids
    # the models trained on the data are flagged in the registry
    for version in (model, child):
        assert applied["event_id"] in registry.get(version).hyperparameters[DELETED_DATA_FLAG]

    # a replay: a fresh sink group reads the topics from the beginning into an empty database, and skips
    # the user's 20 runs and their late one, 40 feedback and 3 late annotations, 20 outcomes (84 events)
    with ChdbStore(home / "clickhouse", database=f"replay_{unique}") as fresh:
        migrate(fresh)
        replay = ClickHouseSink(bootstrap, fresh, group=f"replay-{unique}", batch_ms=100, specs=TRACE_SPECS)
        try:
            drain_sink(replay, lambda: bob_traces <= _traces(fresh, tenant, "v_outcomes_latest")
                       and late[1]["trace_id"] in _traces(fresh, tenant, "v_experiences")
                       and len(_traces(fresh, tenant, "v_feedback")) == 21 and replay.stats.skipped_deleted >= 84)
        finally:
            replay.close()
        for view in ("v_experiences", "v_feedback", "v_outcomes_latest"):
            assert not _traces(fresh, tenant, view) & alice_traces, view
        # a dataset built now (from the replayed store, with the deletions reader) has none of the user's runs
        log = DeletionLog(bootstrap)
        try:
            rebuilt = DatasetBuilder(fresh, DatasetSettings(home=tmp_path, dataset_store=str(tmp_path / "datasets2"),
                                                            dataset_min_examples=5), deletions=log).build(tenant, "shouter")
        finally:
            log.close()
        assert rebuilt and all(not set(m.trace_ids) & alice_traces and set(m.trace_ids) <= bob_traces for m in rebuilt)


def test_a_deletion_request_is_refused_without_a_user(bootstrap: str) -> None:
    result = CliRunner().invoke(main, ["privacy", "delete", "--bootstrap", bootstrap, "--tenant", "acme", "--user", " "])
    assert result.exit_code == 2 and "user_id: is empty" in result.output
    result = CliRunner().invoke(main, ["privacy", "delete", "--bootstrap", bootstrap, "--tenant", "a/b", "--user", "u"])
    assert result.exit_code == 2 and "tenant" in result.output
