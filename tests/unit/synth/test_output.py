"""Synthetic datasets in the dataset store: same format as finished datasets, usable by the gate and for training."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agentgym.schemas.codec import AvroCodec
from agentgym.processors.datasets.store import DatasetStore, arrow_schema
from agentgym.processors.datasets.exceptions import DatasetError
from agentgym.trainers.synth.output import (
    KIND,
    assign_splits,
    augmentation_rows,
    eval_suite_rows,
    lineage_event_id,
    lineage_records,
    read_scenarios,
    synthetic_dataset_id,
    write_scenarios,
)
from agentgym.trainers.synth.scenario import Scenario, arrow_schema as scenario_schema


def _scenarios(n: int = 40) -> list[Scenario]:
    out = []
    for i in range(n):
        known = i % 4 != 0
        out.append(Scenario(
            messages=[{"role": "system", "content": "route"}, {"role": "user", "content": f"Where is order {1000 + i}?"}],
            family="paraphrase" if i % 2 else "edge", generator="g", tags=[f"n:{i}"],
            source_trace_ids=[f"t{i}", f"t{i + 1}"] if i % 2 else [],
            expected_tool="lookup_order" if known else None,
            expected_arguments={"order_id": str(1000 + i)} if known else None,
            expected_answer=f"Done: lookup_order({1000 + i})" if known else None,
            group=f"g{i // 2}",
        ))
    return out


def _write(store: DatasetStore, scenarios: list[Scenario], dataset_id: str = "syn-x") -> object:
    return write_scenarios(store, dataset_id=dataset_id, tenant_id="t", agent_id="a", created_ms=1_700_000_000_000,
                           splits=assign_splits(scenarios, 0.3), shard_rows=7, counts={"quality": {"accepted": 40}},
                           lineage={"trace_ids": ["t1"], "source_trace_count": 1, "labeller_versions": ["rules-1"]})


def test_splits_keep_lineage_groups_together() -> None:
    splits = assign_splits(_scenarios(), 0.3)
    assert sum(len(v) for v in splits.values()) == 40 and splits["eval"] and splits["train"]
    for s in splits["eval"]:
        assert all(x.group != s.group for x in splits["train"])
    assert assign_splits(_scenarios(), 0.0)["eval"] == []


def test_written_like_a_finished_dataset_and_read_back(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path / "datasets"))
    scenarios = _scenarios()
    m = _write(store, scenarios)
    again = store.manifest("syn-x")
    assert again.kind == KIND == "synthetic" and again.format == "agentgym-dataset/1"
    assert again.splits == m.splits and sum(m.splits.values()) == 40  # type: ignore[attr-defined]
    store.verify(again)  # sha256 of every shard and the checksum
    assert [x.path for x in again.shards["train"]][0].startswith("train-00000-of-")
    assert pq.read_schema(tmp_path / "datasets" / "syn-x" / again.shards["train"][0].path).names == scenario_schema().names
    back = read_scenarios(store, again, "train") + read_scenarios(store, again, "eval")
    assert sorted(s.scenario_id for s in back) == sorted(s.scenario_id for s in scenarios)
    lines = []

    class Out:
        def write(self, text: str) -> None:
            lines.append(text)

    assert store.export_jsonl(again, Out()) == 40  # type: ignore[arg-type]
    assert json.loads(lines[0])["family"] in ("edge", "paraphrase")
    # the same scenarios give the same bytes: the same checksum
    assert _write(DatasetStore(str(tmp_path / "other")), scenarios).checksum == again.checksum  # type: ignore[attr-defined]


def test_announcement_encodes_as_dataset_ready(tmp_path: Path) -> None:
    m = _write(DatasetStore(str(tmp_path)), _scenarios())
    record = m.announcement()  # type: ignore[attr-defined]
    codec = AvroCodec()
    back = codec.decode(codec.encode("DatasetReady", record)).record
    assert back["kind"] == "synthetic" and back["num_examples"] == 40 and back["labeller_versions"] == ["rules-1"]
    assert back["manifest_uri"].endswith("/syn-x/manifest.json")


def test_rows_for_the_gate_and_for_training(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path))
    m = _write(store, _scenarios())
    suite = eval_suite_rows(store, m, "eval")  # type: ignore[arg-type]
    assert suite and all(r["completion"] and r["completion"][0]["role"] == "assistant" for r in suite)
    assert all(r["prompt"][-1]["role"] == "user" for r in suite)
    assert len(eval_suite_rows(store, m, "eval", families=["edge"])) < len(suite) or \
        all(r["family"] == "edge" for r in suite)  # type: ignore[arg-type]
    aug = augmentation_rows(store, m, "train")  # type: ignore[arg-type]
    assert aug and set(aug[0]) == set(arrow_schema("sft").names)
    assert {r["source"] for r in aug} <= {"synthetic:paraphrase", "synthetic:edge"}
    from agentgym.trainers.evaluation import reference_of

    assert reference_of(suite[0]).startswith("Done: lookup_order(")
    sft = store.write(dataset_id="aug", tenant_id="t", agent_id="a", kind="sft", created_ms=1, rows={"train": aug})
    assert sft.splits["train"] == len(aug)  # they fit an SFT dataset as they are


def test_readers_refuse_other_kinds(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path))
    sft = store.write(dataset_id="s", tenant_id="t", agent_id="a", kind="sft", created_ms=1, rows={})
    with pytest.raises(DatasetError, match="not synthetic"):
        eval_suite_rows(store, sft)


def test_lineage_records_one_per_scenario_and_source(tmp_path: Path) -> None:
    scenarios = _scenarios()
    splits = assign_splits(scenarios, 0.3)
    m = _write(DatasetStore(str(tmp_path)), scenarios)
    records = lineage_records(m, splits)  # type: ignore[arg-type]
    with_sources = [s for s in scenarios if s.source_trace_ids]
    assert len(records) == 2 * len(with_sources) + (len(scenarios) - len(with_sources))
    assert {r["source_trace_id"] for r in records} >= {"t1", "t2", ""}
    assert {r["split"] for r in records} == {"train", "eval"} and all(r["created_ms"] == m.created_ms for r in records)
    # event ids are deterministic per dataset, scenario and source trace, and unique within the dataset
    ids = [r["event_id"] for r in records]
    assert len(set(ids)) == len(ids) and ids == [r["event_id"] for r in lineage_records(m, splits)]  # type: ignore[arg-type]
    assert ids[0] == lineage_event_id(m.dataset_id, records[0]["scenario_id"], records[0]["source_trace_id"])
    assert lineage_event_id("other", records[0]["scenario_id"], records[0]["source_trace_id"]) != ids[0]
    # each is a valid ScenarioLineage record of gym-scenario-lineage-v1
    codec = AvroCodec()
    for r in records[:5]:
        assert codec.decode(codec.encode("ScenarioLineage", r, "gym-scenario-lineage-v1")).record == r


def test_dataset_ids_are_stable_and_path_safe() -> None:
    a = synthetic_dataset_id("Acme Corp", "support/bot", "fp1")
    assert a == synthetic_dataset_id("Acme Corp", "support/bot", "fp1") != synthetic_dataset_id("Acme Corp", "support/bot", "fp2")
    assert a.startswith("syn-acme-corp-support-bot-") and "/" not in a
