"""Synthetic generation against the real embedded ClickHouse engine and the real Kafka broker.

Experiences and outcomes are inserted through the store's insert path; the scenarios
are written to a real dataset store, announced on ``gym-datasets-v1``, their lineage
published on ``gym-scenario-lineage-v1``, and both recorded in ClickHouse by the real sink.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentgym.ops.cli import main
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.processors.store.rows import insert_records
from agentgym.schemas.topics import TOPICS
from tests import store_samples
from agentgym.processors.datasets.store import DatasetStore
from agentgym.producers.records import RecordProducer, read_topic
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.trainers.synth.generators import GenerationContext
from agentgym.trainers.synth.output import augmentation_rows, eval_suite_rows, read_scenarios
from agentgym.trainers.synth.scenario import EDGE_FAMILIES
from agentgym.trainers.synth.service import SynthRequest, SynthService
from agentgym.trainers.synth.settings import SynthSettings

AGENT = "support"
SYSTEM = "You route requests to tools."
TOOLS = {"weather": ("get_weather", "city"), "order": ("lookup_order", "order_id"),
         "refund": ("create_refund", "order_id"), "faq": ("search_faq", "query")}
CITIES = ["Oslo", "Lisbon", "Nairobi", "Lima", "Osaka", "Toronto", "Cairo", "Hanoi"]
TOPICS_FAQ = ["reset my password", "change my email", "export my data", "close my account"]
# a real request whose prompt is held out for evaluation (in an SFT dataset's eval split)
HELD_OUT = "I ordered a blue rain jacket three weeks ago and it still has not arrived, where is order 5150?"
# a real request that a plugin tries to copy
REAL_COPY = "Where is order 1234?"


def _request(intent: str, value: str, form: int) -> str:
    return {
        "weather": [f"What's the weather in {value}?", f"Is it raining in {value} today?"],
        "order": [f"Where is order {value}?", f"Has my order {value} shipped?"],
        "refund": [f"I want a refund for order {value}", f"Please refund order {value}"],
        "faq": [f"How do I {value}?", f"Help me {value} please"],
    }[intent][form % 2]


def _run_records(tenant: str, trace: str, text: str, tool: str, arg: str, value: str, failed: bool,
                 ts_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    exp = store_samples.experience(tenant, agent=AGENT, trace=trace, ts_ms=ts_ms, model_version="base-v1")
    exp["input"] = [{"role": "system", "content": SYSTEM, "name": None, "tool_call_id": None},
                    {"role": "user", "content": text, "name": None, "tool_call_id": None}]
    exp["steps"][0].update(name="route", input=text, output=json.dumps({"tool": tool, arg: value}))
    exp["steps"][1].update(name=tool, input=json.dumps({arg: value}), output=None if failed else '{"ok": true}',
                           error="TimeoutError: tool did not answer" if failed else None)
    exp["output"] = f"Done: {tool}({value})"
    out = store_samples.outcome(tenant, trace, label="failure" if failed else "success", agent=AGENT, ts_ms=ts_ms + 5)
    return exp, out


def seed_runs(store: Store, tenant: str, n: int = 90, seed: int = 5) -> dict[str, str]:
    """Inserts ``n`` demo-like runs (plus the held-out and copied ones); returns trace -> request."""
    rng = random.Random(seed)
    now = store_samples.now_ms()
    exps, outs, texts = [], [], {}
    for i in range(n):
        intent = rng.choice(list(TOOLS))
        tool, arg = TOOLS[intent]
        value = rng.choice(CITIES) if arg == "city" else rng.choice(TOPICS_FAQ) if arg == "query" else str(rng.randint(1000, 9999))
        failed = rng.random() < (0.5 if tool == "lookup_order" else 0.1)
        text = _request(intent, value, rng.randrange(2))
        trace = f"{tenant}-r{i:03d}"
        exp, out = _run_records(tenant, trace, text, tool, arg, value, failed, now - 1000 * (n - i))
        exps.append(exp)
        outs.append(out)
        texts[trace] = text
    for trace, text, value in ((f"{tenant}-held", HELD_OUT, "5150"), (f"{tenant}-copy", REAL_COPY, "1234")):
        exp, out = _run_records(tenant, trace, text, "lookup_order", "order_id", value, False, now)
        exps.append(exp)
        outs.append(out)
        texts[trace] = text
    insert_records(store, "Experience", exps)
    insert_records(store, "Outcome", outs)
    return texts


def leaky(ctx: GenerationContext, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """A plugin that tries to leak the held-out prompt and to copy real inputs, among valid scenarios."""
    bad = [HELD_OUT, HELD_OUT.replace("three weeks", "two weeks"), REAL_COPY, REAL_COPY.upper(),
           HELD_OUT.replace("blue", "red")]
    good = [f"Could you check on parcel {rng.randint(10**5, 10**6)} for me, it is late" for _ in range(count)]
    return [{"prompt": text, "tags": ["plugin:leaky"]} for text in (bad + good)[:max(count, len(bad))]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


def _held_out_dataset(datasets: DatasetStore, tenant: str) -> None:
    datasets.write(dataset_id=f"ds-{tenant}-sft", tenant_id=tenant, agent_id=AGENT, kind="sft", created_ms=1, rows={
        "eval": [{"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": HELD_OUT}],
                  "completion": [{"role": "assistant", "content": "Done: lookup_order(5150)"}], "trace_id": f"{tenant}-held",
                  "labeller_version": "rules-1", "source": "success", "prompt_key": "k"}]})


def _service(store: Store, tmp_path: Path, bootstrap: str, announce: Any = None, publish_lineage: Any = None,
             **settings: Any) -> SynthService:
    ds = DatasetSettings(home=tmp_path, dataset_store=str(tmp_path / "datasets"))
    return SynthService(store, DatasetStore(ds.dataset_store), SynthSettings(bootstrap_servers=bootstrap, synth_long_chars=3000,
                                                                             **settings), ds, announce=announce,
                        publish_lineage=publish_lineage)


def test_generate_from_real_runs_end_to_end(bootstrap: str, store: Store, unique: str, tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    texts = seed_runs(store, tenant)
    with RecordProducer(bootstrap) as producer:
        svc = _service(store, tmp_path, bootstrap, announce=lambda m: producer.send("datasets", m.announcement()))
        _held_out_dataset(svc.datasets, tenant)
        out = svc.run(SynthRequest(agent_id=AGENT, n=160, tenant_id=tenant, seed=3, specs=("tool_routing",),
                                   generators=("paraphrase", "failure", "edge", "tests.integration.test_synth:leaky")))
    r, m = out.report, out.manifest
    assert m is not None and out.announced
    # mined from ClickHouse, the held-out run is no seed
    assert r.sources["runs_read"] == len(texts) and r.sources["held_out_prompts"] == 1
    assert r.sources["held_out_datasets"] == [f"ds-{tenant}-sft"] and r.sources["held_out_seeds"] >= 1
    assert all(f"{tenant}-held" not in s.source_trace_ids for s in out.scenarios)
    # the batch is full, every family is there, leaks and copies were rejected
    assert r.accepted == 160 and r.shortfall == 0
    assert set(r.by_family) == {"paraphrase", "failure", "edge", "domain"}
    assert set(r.edge_families) == set(EDGE_FAMILIES)
    assert r.rejected["eval_leak_exact"] >= 1 and r.rejected["eval_leak_near"] >= 1
    assert r.rejected["duplicate_of_real_exact"] >= 2
    contents = {s.messages[-1]["content"].lower() for s in out.scenarios}
    assert HELD_OUT.lower() not in contents and REAL_COPY.lower() not in contents
    # failed runs cluster on lookup_order timeouts, and that cluster gets the most failure-seeded scenarios
    clusters = r.sources["clusters"]
    assert clusters[0]["key"] == "tool:lookup_order" and r.sources["failed"] > 0
    per_key: dict[str, list[int]] = {}
    for c in clusters:
        per_key.setdefault(c["key"], [0, 0])
        per_key[c["key"]][0] += c["size"]
        per_key[c["key"]][1] += sum(f"cluster:{c['id']}" in s.tags for s in out.scenarios)
    # the most frequent failure (lookup_order timeouts) gets the most failure-seeded scenarios
    assert max(per_key, key=lambda k: per_key[k][1]) == max(per_key, key=lambda k: per_key[k][0]) == "tool:lookup_order"
    # lineage: scenarios made from real runs name them; the manifest lists them all
    for s in out.scenarios:
        if s.family in ("paraphrase", "failure"):
            assert s.source_trace_ids and set(s.source_trace_ids) <= set(texts)
    assert set(m.trace_ids) <= set(texts) and m.lineage["source_trace_count"] == len(m.trace_ids) > 10
    assert m.lineage["labeller_versions"] == ["rules-1"] and m.lineage["served_model_versions"] == ["base-v1"]
    # the dataset: same format as finished datasets, the quality report stored with it
    stored = svc.datasets.manifest(m.dataset_id)
    svc.datasets.verify(stored)
    assert stored.kind == "synthetic" and stored.counts["quality"]["accepted"] == 160
    assert stored.counts["dropped"] == r.rejected and (Path(tmp_path / "datasets" / m.dataset_id / "quality_report.json")).is_file()
    assert len(read_scenarios(svc.datasets, stored, "train")) + len(read_scenarios(svc.datasets, stored, "eval")) == 160
    # announced on gym-datasets-v1 ...
    records = read_topic(bootstrap, "datasets", match=lambda rec: rec["dataset_id"] == m.dataset_id)
    assert [(x["kind"], x["num_examples"], x["source_trace_count"]) for x in records] == [("synthetic", 160, len(m.trace_ids))]
    # ... and recorded in ClickHouse by the sink
    sink = ClickHouseSink(bootstrap, store, group=f"synth-{unique}", batch_size=500, batch_ms=200, specs=[TOPICS["datasets"]])
    q = "SELECT kind, num_examples, source_trace_count, splits FROM v_datasets WHERE dataset_id = {d:String}"
    try:
        deadline = time.monotonic() + 60
        while not store.query(q, {"d": m.dataset_id}).rows:
            assert time.monotonic() < deadline, "the sink did not record the DatasetReady"
            sink.process_batch()
    finally:
        sink.close()
    assert store.query(q, {"d": m.dataset_id}).rows == [("synthetic", 160, len(m.trace_ids), m.splits)]


def test_same_seed_same_dataset_and_per_scenario_lineage_in_clickhouse(bootstrap: str, store: Store, unique: str,
                                                                       tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    texts = seed_runs(store, tenant, n=50)
    request = SynthRequest(agent_id=AGENT, n=60, tenant_id=tenant, seed=8)
    with RecordProducer(bootstrap) as producer:
        svc = _service(store, tmp_path, bootstrap, publish_lineage=lambda recs: producer.send_many("scenario-lineage", recs))
        first = svc.run(request)
        second = svc.run(request)  # the same dataset again: its lineage is published twice
    assert first.manifest is not None and second.manifest is not None
    assert [s.scenario_id for s in first.scenarios] == [s.scenario_id for s in second.scenarios]
    assert (second.manifest.dataset_id, second.manifest.checksum) == (first.manifest.dataset_id, first.manifest.checksum)
    other = svc.run(SynthRequest(agent_id=AGENT, n=60, tenant_id=tenant, seed=9, write=False))
    assert [s.scenario_id for s in other.scenarios] != [s.scenario_id for s in first.scenarios]
    expected = sum(max(1, len(s.source_trace_ids)) for s in second.scenarios)
    assert first.lineage_published == second.lineage_published == expected and not first.announce_error
    dataset = second.manifest.dataset_id
    in_topic = read_topic(bootstrap, "scenario-lineage")
    assert sum(r["dataset_id"] == dataset for r in in_topic) == 2 * expected
    # the real sink materialises gym-scenario-lineage-v1 into synthetic_scenarios, as it does every topic
    sink = ClickHouseSink(bootstrap, store, group=f"synth-lineage-{unique}", batch_size=500, batch_ms=200,
                          specs=[TOPICS["scenario-lineage"]])
    try:
        deadline = time.monotonic() + 60
        while sink.stats.rows.get("synthetic_scenarios", 0) < len(in_topic):  # the topic up to our records
            assert time.monotonic() < deadline, f"the sink did not record the ScenarioLineage records: {sink.stats}"
            sink.process_batch()
    finally:
        sink.close()
    assert sink.stats.dead_letters == 0
    # published twice, one row per scenario and source trace (deterministic event ids)
    assert store.query("SELECT count() FROM v_synthetic_scenarios WHERE dataset_id = {d:String}",
                       {"d": dataset}).scalar() == expected
    # every scenario's lineage joins the real run it came from, with its outcome
    rows = store.query("""
        SELECT s.family, count() AS n, countIf(r.trace_id != '') AS joined, uniqExact(s.scenario_id) AS scenarios
        FROM v_synthetic_scenarios AS s
        LEFT JOIN v_runs AS r ON r.tenant_id = s.tenant_id AND r.trace_id = s.source_trace_id
        WHERE s.dataset_id = {d:String} GROUP BY s.family ORDER BY s.family
        SETTINGS join_use_nulls = 0""", {"d": dataset}).rows
    assert sum(r[3] for r in rows) == 60
    for family, n, joined, _ in rows:
        assert joined == n, family  # every source trace is a real run of v_runs
    labels = store.query("""
        SELECT DISTINCT r.outcome_label FROM v_synthetic_scenarios AS s
        INNER JOIN v_runs AS r ON r.tenant_id = s.tenant_id AND r.trace_id = s.source_trace_id
        WHERE s.dataset_id = {d:String} AND s.family = 'failure'""", {"d": dataset}).rows
    assert labels == [("failure",)]
    stored = store.query("""
        SELECT scenario_id, split, family, generator, tags, source_trace_id, expected_tool
        FROM v_synthetic_scenarios WHERE dataset_id = {d:String}""", {"d": dataset}).rows
    want = {(s.scenario_id, split, s.family, s.generator, tuple(s.tags), t, s.expected_tool)
            for split, scs in second.splits.items() for s in scs for t in (s.source_trace_ids or [""])}
    assert {(a, b, c, d, tuple(e), f, g) for a, b, c, d, e, f, g in stored} == want
    assert {t for s in second.scenarios for t in s.source_trace_ids} <= set(texts)


def test_scenarios_serve_the_gate_and_training_augmentation(bootstrap: str, store: Store, unique: str, tmp_path: Path) -> None:
    from agentgym.trainers.evaluation import score_version

    tenant = f"t-{unique}"
    seed_runs(store, tenant, n=40)
    svc = _service(store, tmp_path, bootstrap, synth_eval_fraction=0.5)
    m = svc.run(SynthRequest(agent_id=AGENT, n=40, tenant_id=tenant, seed=1, specs=("tool_routing",))).manifest
    assert m is not None
    suite = eval_suite_rows(svc.datasets, m)
    assert len(suite) >= 5
    scores = score_version("tiny:llama", None, suite[:6], "contains_reference", max_new_tokens=8, max_length=512)
    assert scores.n == 6 and math.isfinite(scores.loss) and scores.loss > 0 and 0.0 <= (scores.success_rate or 0.0) <= 1.0
    aug = augmentation_rows(svc.datasets, m)
    sft = svc.datasets.write(dataset_id=f"aug-{unique}", tenant_id=tenant, agent_id=AGENT, kind="sft", created_ms=1,
                             rows={"train": aug})
    assert sft.splits["train"] == len(aug) > 0


def test_a_registry_model_paraphrases_and_the_rules_catch_what_it_gets_wrong(bootstrap: str, store: Store, unique: str,
                                                                              tmp_path: Path) -> None:
    from agentgym.trainers.registry import ModelRegistry, ModelVersion

    tenant = f"t-{unique}"
    seed_runs(store, tenant, n=30)
    registry = ModelRegistry(bootstrap)
    try:
        registry.register(ModelVersion(tenant_id=tenant, model_version=f"para-{unique}", agent_id=AGENT,
                                       base_model="tiny:llama", status="candidate"))
    finally:
        registry.close()
    svc = _service(store, tmp_path, bootstrap, synth_paraphraser_max_new_tokens=24)
    out = svc.run(SynthRequest(agent_id=AGENT, n=12, tenant_id=tenant, seed=2, generators=("paraphrase",),
                               paraphraser=f"para-{unique}", write=False))
    p = out.report.paraphraser
    assert p["name"] == f"model:para-{unique}"
    model_calls = sum(v for k, v in p["stats"].items() if k.startswith(("model_accepted", "model_rejected")))
    assert model_calls >= 1 and out.report.accepted == 12
    # an untrained tiny model writes noise: its paraphrases are rejected and the rules step in
    assert p["stats"].get("fallback_rules", 0) == model_calls - p["stats"].get("model_accepted", 0)


def test_cli_generate_and_report(bootstrap: str, store: Store, unique: str, tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    seed_runs(store, tenant, n=40)
    runner = CliRunner()
    args = ["synth", "generate", "--agent", AGENT, "--n", "50", "--tenant", tenant, "--seed", "4", "--spec", "tool_routing",
            "--url", f"chdb://{tmp_path / 'ch'}", "--dataset-store", str(tmp_path / "ds"), "--bootstrap-servers", bootstrap,
            "--json", "--report", str(tmp_path / "report.json")]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accepted"] == 50 and report["sources"]["runs_read"] == 42
    assert report["timing"]["scenarios_per_s"] > 0 and 0 < report["diversity"]["score"] <= 1
    assert json.loads((tmp_path / "report.json").read_text())["accepted"] == 50
    (manifest,) = DatasetStore(str(tmp_path / "ds")).list()
    assert manifest.kind == "synthetic" and "announced on gym-datasets-v1" in result.stderr
    assert "records on gym-scenario-lineage-v1" in result.stderr
    shown = runner.invoke(main, ["synth", "report", manifest.dataset_id, "--dataset-store", str(tmp_path / "ds")])
    assert shown.exit_code == 0 and "50/50 scenarios" in shown.output and "diversity: score" in shown.output
    bad = runner.invoke(main, ["synth", "generate", "--agent", AGENT, "--n", "5", "--tenant", tenant, "--spec", "nope.yaml",
                               "--url", f"chdb://{tmp_path / 'ch'}", "--dataset-store", str(tmp_path / "ds"), "--no-announce"])
    assert bad.exit_code != 0 and "nope.yaml" in bad.output

