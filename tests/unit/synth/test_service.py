"""The service without ClickHouse: a spec-only batch, held-out prompts from the dataset store and from files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentgym.schemas.codec import AvroCodec
from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.producers.exceptions import DeliveryError
from agentgym.trainers.synth.exceptions import NoSourcesError, SynthError
from agentgym.trainers.synth.output import eval_suite_rows
from agentgym.trainers.synth.service import REPORT_FILE, SynthRequest, SynthService, load_prompt_list
from agentgym.trainers.synth.settings import SynthSettings

HELD = "Has order 4242 shipped yet?"


def _service(tmp_path: Path, announced: list[Manifest], lineage: list[dict[str, Any]] | None = None) -> SynthService:
    ds = DatasetSettings(dataset_store=str(tmp_path / "datasets"))
    datasets = DatasetStore(ds.dataset_store)
    # a finished SFT dataset of the same agent whose eval split holds a prompt the scenarios must not leak
    datasets.write(dataset_id="ds-sft", tenant_id="t", agent_id="support", kind="sft", created_ms=1, rows={
        "eval": [{"prompt": [{"role": "user", "content": HELD}], "completion": [{"role": "assistant", "content": "x"}],
                  "trace_id": "r1", "labeller_version": "", "source": "success", "prompt_key": "k"}]})
    return SynthService(None, datasets, SynthSettings(synth_long_chars=600), ds, announce=announced.append,
                        publish_lineage=None if lineage is None else lineage.extend, clock=lambda: 1_700_000_000_000)


def test_spec_only_batch_is_written_announced_and_leak_free(tmp_path: Path) -> None:
    prompts = tmp_path / "held.jsonl"
    prompts.write_text(json.dumps({"prompt": "What's the weather in Oslo?"}) + "\n" + json.dumps("Where is order 1234?") + "\n")
    announced: list[Manifest] = []
    lineage: list[dict[str, Any]] = []
    svc = _service(tmp_path, announced, lineage)
    out = svc.run(SynthRequest(agent_id="support", n=300, tenant_id="t", seed=4, generators=("edge",),
                               specs=("tool_routing",), eval_prompt_files=(str(prompts),)))
    r = out.report
    assert r.accepted == 300 and r.sources["runs_read"] == 0 and r.sources["held_out_prompts"] == 3
    assert r.sources["held_out_datasets"] == ["ds-sft"]
    assert r.rejected.get("eval_leak_exact", 0) >= 1  # the spec fills templates that hit held-out prompts
    texts = {s.messages[-1]["content"].lower() for s in out.scenarios}
    assert HELD.lower() not in texts and "what's the weather in oslo?" not in texts
    m = out.manifest
    assert m is not None and announced == [m] and out.announced
    # one ScenarioLineage record per scenario (spec and edge scenarios have no real source), valid for the topic
    assert out.lineage_published == len(lineage) == 300 and {r["source_trace_id"] for r in lineage} == {""}
    assert {r["dataset_id"] for r in lineage} == {m.dataset_id} and len({r["event_id"] for r in lineage}) == 300
    codec = AvroCodec()
    assert all(codec.decode(codec.encode("ScenarioLineage", r)).record == r for r in lineage[:10])
    assert m.kind == "synthetic" and m.counts["quality"]["accepted"] == 300 and m.lineage["specs"][0]["name"] == "tool_routing"
    assert (tmp_path / "datasets" / m.dataset_id / REPORT_FILE).is_file()
    assert eval_suite_rows(svc.datasets, m)
    # same request, same dataset id and bytes
    again = _service(tmp_path, []).run(SynthRequest(agent_id="support", n=300, tenant_id="t", seed=4, generators=("edge",),
                                                    specs=("tool_routing",), eval_prompt_files=(str(prompts),)))
    assert again.manifest is not None and again.manifest.dataset_id == m.dataset_id and again.manifest.checksum == m.checksum


def test_dry_runs_write_nothing_and_nothing_to_work_from_is_an_error(tmp_path: Path) -> None:
    svc = _service(tmp_path, [])
    out = svc.run(SynthRequest(agent_id="support", n=10, tenant_id="t", specs=("tool_routing",), write=False))
    assert out.manifest is None and len(out.scenarios) == 10 and out.notes == ["dry run: nothing written"]
    assert [m.kind for m in svc.datasets.list()] == ["sft"]
    with pytest.raises(NoSourcesError, match="no usable real runs"):
        svc.run(SynthRequest(agent_id="support", n=10, tenant_id="t"))
    with pytest.raises(SynthError, match="not a YAML domain spec"):
        svc.run(SynthRequest(agent_id="support", n=10, tenant_id="t", specs=("edge",)))


def test_prompt_lists(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first prompt\n\n second \n")
    assert load_prompt_list(tmp_path / "a.txt") == [[{"role": "user", "content": "first prompt"}],
                                                    [{"role": "user", "content": "second"}]]
    (tmp_path / "b.json").write_text(json.dumps(["x", [{"role": "system", "content": "s"}, {"role": "user", "content": "y"}]]))
    assert load_prompt_list(tmp_path / "b.json")[1][1] == {"role": "user", "content": "y"}
    (tmp_path / "c.jsonl").write_text('{"prompt": 3}\n')
    with pytest.raises(SynthError, match=r"c.jsonl:1: expected a prompt"):
        load_prompt_list(tmp_path / "c.jsonl")
    with pytest.raises(SynthError, match="cannot read"):
        load_prompt_list(tmp_path / "missing.txt")


def test_a_failed_announcement_leaves_the_dataset_and_says_so(tmp_path: Path) -> None:
    svc = _service(tmp_path, [])

    def announce(manifest: Manifest) -> None:
        raise DeliveryError("Kafka did not acknowledge the DatasetReady record within 30.0s")

    svc.announce = announce
    out = svc.run(SynthRequest(agent_id="support", n=20, tenant_id="t", specs=("tool_routing",)))
    assert out.manifest is not None and not out.announced
    assert out.announce_error is not None and "did not acknowledge" in out.announce_error
    assert svc.datasets.manifest(out.manifest.dataset_id).kind == "synthetic"
    assert "written but not announced" in out.notes[-1]


def test_lineage_is_published_before_the_announcement_and_a_failure_stops_it(tmp_path: Path) -> None:
    announced: list[Manifest] = []
    svc = _service(tmp_path, announced)

    def publish(records: Any) -> None:
        raise DeliveryError("Kafka did not acknowledge 20 ScenarioLineage records within 30.0s")

    svc.publish_lineage = publish
    out = svc.run(SynthRequest(agent_id="support", n=20, tenant_id="t", specs=("tool_routing",)))
    assert out.manifest is not None and not out.announced and announced == [] and out.lineage_published is None
    assert out.announce_error is not None and "ScenarioLineage" in out.announce_error
    assert "written but not announced" in out.notes[-1]
