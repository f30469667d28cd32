"""The dataset store: shards, manifest, checksum, lineage, listing, JSONL export."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.processors.datasets.exceptions import ChecksumMismatchError, DatasetNotFoundError


def rows(n: int, offset: int = 0) -> list[dict[str, object]]:
    return [{"prompt": [{"role": "user", "content": f"q{i}"}], "completion": [{"role": "assistant", "content": f"a{i}"}],
             "trace_id": f"t{i}", "labeller_version": "rules-1", "source": "success", "prompt_key": f"k{i}"}
            for i in range(offset, offset + n)]


def write(store: DatasetStore, dataset_id: str = "ds-1", created_ms: int = 1000) -> Manifest:
    return store.write(dataset_id=dataset_id, tenant_id="t", agent_id="a", kind="sft", created_ms=created_ms,
                       rows={"train": rows(25), "eval": rows(4, 100)}, shard_rows=10,
                       counts={"runs_read": 40, "dropped": {"sft_duplicate_exact": 3}},
                       lineage={"trace_ids": [f"t{i}" for i in range(29)], "labeller_versions": ["rules-1"],
                                "source_trace_count": 29})


def test_write_read_and_manifest(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path / "datasets"))
    m = write(store)
    assert m.splits == {"train": 25, "eval": 4} and m.num_examples == 29
    assert [s.path for s in m.shards["train"]] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [s.rows for s in m.shards["train"]] == [10, 10, 5]
    assert store.read(m, "train") == rows(25) and store.read(m, "eval") == rows(4, 100)
    on_disk = json.loads((tmp_path / "datasets" / "ds-1" / "manifest.json").read_text())
    assert on_disk["num_examples"] == 29 and on_disk["lineage"]["labeller_versions"] == ["rules-1"]
    again = store.manifest("ds-1")
    assert again.checksum == m.checksum and again.uri == m.uri and again.uri.startswith("file://")
    assert DatasetStore.open(m.uri).dataset_id == "ds-1" == DatasetStore.open(m.manifest_uri).dataset_id
    ready = m.announcement()
    assert (ready["num_examples"], ready["splits"], ready["source_trace_count"]) == (29, {"train": 25, "eval": 4}, 29)


def test_checksum_is_sha256_over_the_shards_and_catches_tampering(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path))
    m = write(store)
    digest = hashlib.sha256()
    for split in ("train", "eval"):
        for shard in m.shards[split]:
            data = (tmp_path / "ds-1" / shard.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == shard.sha256 and len(data) == shard.bytes
            digest.update(data)
    assert m.checksum == digest.hexdigest()
    store.verify(m)
    # the same rows written again give the same bytes, hence the same checksum
    assert write(store).checksum == m.checksum
    victim = tmp_path / "ds-1" / m.shards["eval"][0].path
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ChecksumMismatchError, match="eval-00000"):
        store.verify(m)


def test_list_export_and_missing(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path))
    assert store.list() == []
    write(store, "ds-old", created_ms=1)
    write(store, "ds-new", created_ms=2)
    (tmp_path / "ds-incomplete").mkdir()  # shards but no manifest: not a dataset yet
    assert [m.dataset_id for m in store.list()] == ["ds-new", "ds-old"]
    out = io.StringIO()
    assert store.export_jsonl(store.manifest("ds-new"), out, ["eval"]) == 4
    first = json.loads(out.getvalue().splitlines()[0])
    assert first["split"] == "eval" and first["completion"] == [{"role": "assistant", "content": "a100"}]
    with pytest.raises(DatasetNotFoundError):
        store.manifest("ds-nope")
    from agentgym.schemas.exceptions import InvalidIdError

    with pytest.raises(InvalidIdError, match="dataset_id"):  # the shared id validator (agentgym.schemas.ids)
        store.manifest("../etc")
