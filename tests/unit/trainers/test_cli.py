"""``agentgym datasets list|show|export`` against a local dataset store."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agentgym.ops.cli import main
from agentgym.processors.datasets.store import DatasetStore


def test_datasets_list_show_export(tmp_path: Path) -> None:
    store = DatasetStore(str(tmp_path / "ds"))
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "completion": [{"role": "assistant", "content": f"a{i}"}],
             "trace_id": f"t{i}", "labeller_version": "rules-1", "source": "success", "prompt_key": f"k{i}"} for i in range(5)]
    m = store.write(dataset_id="ds-a", tenant_id="acme", agent_id="bot", kind="sft", created_ms=1_700_000_000_000,
                    rows={"train": rows[:4], "eval": rows[4:]}, lineage={"trace_ids": [f"t{i}" for i in range(5)]})
    runner = CliRunner()
    out = runner.invoke(main, ["datasets", "list", "--store", str(tmp_path / "ds")])
    assert out.exit_code == 0, out.output
    assert "ds-a" in out.output and "acme/bot" in out.output
    out = runner.invoke(main, ["datasets", "list", "--store", str(tmp_path / "ds"), "--tenant", "other"])
    assert "no datasets" in out.output
    out = runner.invoke(main, ["datasets", "show", "ds-a", "--store", str(tmp_path / "ds")])
    shown = json.loads(out.output)
    assert shown["checksum"] == m.checksum and shown["verified"] is True and shown["splits"] == {"train": 4, "eval": 1}
    target = tmp_path / "out.jsonl"
    out = runner.invoke(main, ["datasets", "export", "ds-a", "--store", str(tmp_path / "ds"), "--split", "train", "-o", str(target)])
    assert out.exit_code == 0, out.output
    lines = [json.loads(x) for x in target.read_text().splitlines()]
    assert [x["trace_id"] for x in lines] == ["t0", "t1", "t2", "t3"] and {x["split"] for x in lines} == {"train"}
    out = runner.invoke(main, ["datasets", "show", "ds-missing", "--store", str(tmp_path / "ds")])
    assert out.exit_code != 0 and "no dataset" in out.output
