"""The dataset builder against the real ClickHouse engine, and inside the real Faust worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from confluent_kafka import Producer

from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.store.rows import insert_records
from agentgym.schemas.codec import AvroCodec
from tests import trainer_samples
from tests.kafka_utils import consume_all, decode_all
from tests.workers import Worker, wait_for, worker_env
from agentgym.processors.datasets.builder import DatasetBuilder
from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.processors.datasets.settings import DatasetSettings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


def test_size_and_age_thresholds_build_cumulative_datasets(store: Store, tmp_path: Path, unique: str) -> None:
    tenant = f"t-{unique}"
    exps, outs = trainer_samples.runs(tenant, "shouter", 60)
    insert_records(store, "Experience", exps)
    insert_records(store, "Outcome", outs[:40])
    now = [int(time.time() * 1000)]
    announced: list[Manifest] = []
    settings = DatasetSettings(home=tmp_path, dataset_min_new_examples=50, dataset_max_age_s=3600, dataset_min_examples=5,
                               dataset_eval_fraction=0.2, dataset_window_days=36500)
    builder = DatasetBuilder(store, settings, announce=announced.append, clock=lambda: now[0])
    mine = lambda ps: [p for p in ps if p.tenant_id == tenant]  # noqa: E731
    assert [(p.agent_id, p.pending) for p in mine(builder.pending())] == [("shouter", 40)]
    assert mine(builder.due()) == []  # 40 < 50 new labels, and none is an hour old
    now[0] += 3_600_000  # an hour later the oldest label has waited long enough: the age threshold
    assert [p.pending for p in mine(builder.due())] == [40]
    first = builder.run_once()
    assert {m.kind for m in first} == {"sft", "preference"} and announced == first
    sft = next(m for m in first if m.kind == "sft")
    # 40 runs: 27 successes + 7 of the 13 failures corrected = 34 SFT examples
    assert sft.num_examples == 34 and sft.splits["eval"] > 0
    assert sft.lineage["labeller_versions"] == ["rules-2"] and len(sft.trace_ids) == sft.num_examples
    assert sft.counts["scrubbed"]["email"] == 40  # every prompt carried an address
    rows = DatasetStore(settings.dataset_store).read(sft, "train")
    assert "<EMAIL>" in rows[0]["prompt"][1]["content"] and "@" not in json.dumps(rows)
    assert mine(builder.due()) == [], "built: nothing pending until new labels arrive"
    # the sink records the announcement in ClickHouse; the watermark then comes from there
    insert_records(store, "DatasetReady", [m.announcement() for m in first])
    fresh = DatasetBuilder(store, settings, clock=lambda: now[0])
    assert mine(fresh.pending()) == []
    # 20 new labels; the size threshold at 15 finishes the next dataset, which holds all 60
    insert_records(store, "Outcome", outs[40:])
    fresh.settings.dataset_min_new_examples = 15
    second = fresh.run_once()
    sft2 = next(m for m in second if m.kind == "sft")
    assert sft2.num_examples > sft.num_examples and set(sft.trace_ids) < set(sft2.trace_ids)
    assert sft2.created_ms > sft.created_ms and sft2.dataset_id != sft.dataset_id
    # held-out prompts stay held out: the first dataset's eval prompts are not in the second's training split
    ds = DatasetStore(settings.dataset_store)
    eval_keys = {r["prompt_key"] for r in ds.read(sft, "eval")}
    assert not eval_keys & {r["prompt_key"] for r in ds.read(sft2, "train")}
    # rebuilding the same data rewrites the same dataset (same id, same checksum)
    again = DatasetBuilder(store, settings, clock=lambda: now[0]).build(tenant, "shouter", cutoff_ms=sft2.created_ms)
    assert {(m.dataset_id, m.checksum) for m in again} == {(m.dataset_id, m.checksum) for m in second}


def test_the_faust_worker_builds_and_announces_datasets(bootstrap: str, tmp_path: Path, unique: str) -> None:
    """Worker with the sink and the dataset builder: labelled runs in, a dataset on the topic and in ClickHouse."""
    tenant = f"t-{unique}"
    home = tmp_path / "home"
    env = worker_env(bootstrap, home, f"app-{unique}", "sink,datasets", AGENTGYM_SINK_GROUP=f"sink-{unique}",
                     AGENTGYM_DATASET_INTERVAL_S="1", AGENTGYM_DATASET_MIN_NEW_EXAMPLES="30",
                     AGENTGYM_DATASET_MIN_EXAMPLES="5", AGENTGYM_DATASET_WINDOW_DAYS="36500")
    exps, outs = trainer_samples.runs(tenant, "shouter", 30, seed=1)
    codec = AvroCodec()
    p = Producer({"bootstrap.servers": bootstrap})
    for e in exps:
        p.produce("gym-experiences-v1", codec.encode("Experience", e), e["trace_id"].encode())
    for o in outs:
        p.produce("gym-outcomes-v1", codec.encode("Outcome", o), o["trace_id"].encode())
    assert p.flush(30) == 0
    worker = Worker(env, tmp_path / "worker.log").start()
    port = int(env["AGENTGYM_HTTP_PORT"])

    def stored() -> list[tuple[str, str, int]]:
        client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        try:
            return [tuple(r) for r in client.query(  # type: ignore[misc]
                "SELECT dataset_id, kind, num_examples FROM agentgym.v_datasets WHERE tenant_id = %(t)s ORDER BY kind",
                parameters={"t": tenant}).result_rows]
        finally:
            client.close()

    try:
        rows = wait_for(lambda: len(stored()) == 2 and stored(), 150, "both datasets in ClickHouse", worker)
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
    assert [r[1] for r in rows] == ["preference", "sft"]
    ready = decode_all(consume_all(bootstrap, "gym-datasets-v1", 2, match=lambda m: tenant in m.key().decode()))
    assert sorted(r["dataset_id"] for r in ready) == sorted(r[0] for r in rows)
    sft = next(r for r in ready if r["kind"] == "sft")
    manifest = DatasetStore.open(sft["uri"])
    assert manifest.num_examples == sft["num_examples"] and manifest.checksum == sft["checksum"]
    DatasetStore(str(home / "datasets")).verify(manifest)
