"""Fine-tuning on Ray Train (CPU, a tiny model), and the trainer service end to end on the real broker.

One local Ray (2 CPUs, no dashboard) for the module, shut down at the end. The model
is ``tiny:llama``: built from a config with random weights and the byte-level
tokenizer; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from agentgym.ops.cli import main as cli
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.rows import insert_records
from agentgym.schemas.topics import TOPICS
from tests import trainer_samples
from tests.trainer_samples import shout_dataset
from tests.kafka_utils import consume_all, decode_all, drain_sink
from agentgym.processors.datasets.builder import DatasetBuilder
from agentgym.producers.records import RecordProducer, watermarks
from agentgym.trainers.modeling import generate, load_for_inference
from agentgym.trainers.registry import ModelRegistry
from agentgym.trainers.service import TrainerService
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.trainers.settings import GateSettings, TrainerServiceSettings, TrainSettings
from agentgym.trainers.training.job import TrainJob
from agentgym.trainers.training.launcher import launch


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a hub
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}})
    try:
        yield
    finally:
        ray.shutdown()


def small(home: Path, **kw: Any) -> TrainSettings:
    """A short CPU run: 20 steps of 8 sequences on the tiny model."""
    fields: dict[str, Any] = dict(home=home, train_max_steps=20, train_batch_size=8, train_learning_rate=1e-2,
                                  train_lora_r=8, train_lora_alpha=16, train_logging_steps=5, train_save_steps=10,
                                  train_max_length=128, train_use_gpu="no")
    fields.update(kw)
    return TrainSettings(**fields)


def preempted_once(config: dict[str, Any]) -> None:
    """``train_func``, but the first attempt dies right after its first checkpoint (a preempted worker)."""
    import ray.train

    from agentgym.trainers.training import callbacks
    from agentgym.trainers.training.train_func import train_func

    if ray.train.get_checkpoint() is None:
        saved = callbacks.RayReportCallback.on_save

        def on_save(self: Any, *args: Any, **kwargs: Any) -> None:
            saved(self, *args, **kwargs)
            raise RuntimeError("simulated preemption after the first checkpoint")

        callbacks.RayReportCallback.on_save = on_save  # type: ignore[method-assign]
    train_func(config)


def test_loss_falls_the_run_survives_a_failure_and_the_adapter_reloads_and_generates(ray_local: None, tmp_path: Path) -> None:
    manifest = shout_dataset(tmp_path)
    job = TrainJob.for_dataset(manifest, "tiny:llama", small(tmp_path, train_max_failures=1),
                               job_id=f"job-test-{uuid.uuid4().hex[:6]}")
    result = launch(job, train_loop=preempted_once)
    m = result.metrics
    print(f"\ntrain loss {m['train_loss_first']:.4f} -> {m['train_loss_last']:.4f}; "
          f"held-out loss {m['eval_before_loss']:.4f} -> {m['eval_loss']:.4f}; {m['steps']:.0f} steps, "
          f"{m['train_tokens_per_s']:.0f} tokens/s (after the resume)")
    # the worker died after the step-10 checkpoint; Ray Train restarted it and training resumed there
    assert m["resumed_from_step"] == 10 and m["steps"] == 20
    assert m["train_loss_last"] < 0.93 * m["train_loss_first"], "training loss falls"
    assert m["eval_loss"] < 0.95 * m["eval_before_loss"], "held-out loss falls too"
    adapter = Path(result.adapter_uri)
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    progress = json.loads((Path(job.storage_path) / job.job_id / "agentgym-progress.json").read_text())
    assert progress["job_id"] == job.job_id and progress["metrics"]["steps"] == 20  # the last report: the final one

    # reloaded on top of the base model, the adapter changes the model and generates
    tuned, tok = load_for_inference("tiny:llama", result.adapter_uri, device="cpu", cache_dir=str(tmp_path / "models" / "base"))
    base, _ = load_for_inference("tiny:llama", None, device="cpu", cache_dir=str(tmp_path / "models" / "base"))
    ids = tok("<|user|>\nshout plum 7\n<|assistant|>\n", return_tensors="pt").input_ids
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, base(ids).logits)
    text = generate(tuned, tok, [{"role": "user", "content": "shout plum 7"}], max_new_tokens=12)
    assert isinstance(text, str) and text.strip()


def _skip_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Commits the group's offsets at the topic's end, so the service sees only what this test announces."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = [TopicPartition(topic, p, watermarks(c, topic, p)[1]) for p in parts]
        c.commit(offsets=offsets, asynchronous=False)
    finally:
        c.close()


def test_a_dataset_from_the_topic_ends_in_the_registry(ray_local: None, bootstrap: str, tmp_path: Path, unique: str) -> None:
    """Labelled runs -> builder -> gym-datasets-v1 -> trainer service -> Ray job -> gate -> gym-models-v1 (and ClickHouse)."""
    tenant, agent = f"t-{unique}", "shouter"
    group = f"trainer-{unique}"
    _skip_to_end(bootstrap, group, TOPICS["datasets"].name)
    store = open_store(f"chdb://{tmp_path / 'ch'}")
    sink = ClickHouseSink(bootstrap, store, group=f"sink-{unique}", batch_ms=200,
                          specs=[TOPICS["datasets"], TOPICS["models"], TOPICS["experiments"]])
    service = None
    try:
        migrate(store)
        exps, outs = trainer_samples.runs(tenant, agent, 90, seed=2)
        insert_records(store, "Experience", exps)
        insert_records(store, "Outcome", outs)
        dsettings = DatasetSettings(home=tmp_path, bootstrap_servers=bootstrap, dataset_min_new_examples=50,
                                    dataset_min_examples=10, dataset_eval_fraction=0.15, dataset_window_days=36500)
        producer = RecordProducer(bootstrap)
        built = DatasetBuilder(store, dsettings, announce=lambda m: producer.send("datasets", m.announcement())).run_once()
        producer.close()
        sft = next(m for m in built if m.tenant_id == tenant and m.kind == "sft")

        service = TrainerService(
            TrainerServiceSettings(home=tmp_path, bootstrap_servers=bootstrap, trainer_group=group, trainer_min_examples=10,
                                   trainer_cooldown_s=0, trainer_kinds="sft"),
            small(tmp_path),
            GateSettings(gate_loss_margin=0.02, gate_evaluator="contains_reference", gate_max_new_tokens=16,
                         gate_max_eval_examples=8, experiment_treatment_weight=0.1),
        )
        outcomes = []
        for _ in range(20):
            outcomes += service.poll_once(1.0)
            if outcomes:
                break
        records = {r.dataset_id: r for r in service.jobs.list()}
        assert records[next(m.dataset_id for m in built if m.tenant_id == tenant and m.kind == "preference")].status == "skipped"
        [done] = outcomes
        rec = done.record
        assert (rec.dataset_id, rec.status, rec.verdict) == (sft.dataset_id, "succeeded", "candidate"), rec.reason
        assert done.metrics["gate_eval_loss"] < done.metrics["gate_champion_eval_loss"]

        registry = ModelRegistry(bootstrap)
        versions = {v.model_version: v for v in registry.versions(tenant, agent)}
        cand = versions[rec.model_version]
        assert (cand.status, cand.dataset_id, cand.base_model) == ("candidate", sft.dataset_id, "tiny:llama")
        assert cand.adapter_uri and Path(cand.adapter_uri, "adapter_model.safetensors").is_file()
        assert cand.hyperparameters["method"] == "sft" and cand.metrics["eval_loss"] < cand.metrics["eval_before_loss"]
        champion = registry.champion(tenant, agent)
        assert champion is not None and champion.adapter_uri is None and cand.parent_version is None

        # the candidate's A/B experiment against the champion, with a small traffic share
        [exp] = decode_all(consume_all(bootstrap, "gym-experiments-v1", 1,
                                       match=lambda msg: msg.key().decode() == f"exp-{cand.model_version}"))
        assert exp["status"] == "running" and exp["tenant_id"] == tenant
        assert {(v["model_version"], v["weight"], v["is_control"]) for v in exp["variants"]} == {
            (champion.model_version, 0.9, True), (cand.model_version, 0.1, False)}

        # a replayed announcement does not train again
        with RecordProducer(bootstrap) as again:
            again.send("datasets", sft.announcement())
        for _ in range(10):
            if service.poll_once(1.0) or any(r.status == "skipped" and r.dataset_id == sft.dataset_id for r in service.jobs.list()):
                break
        assert any(r.status == "skipped" and "already handled" in r.reason
                   for r in service.jobs.list() if r.dataset_id == sft.dataset_id)

        # `agentgym models`: the registry from the command line; promotion retires the previous champion
        runner = CliRunner()
        listed = runner.invoke(cli, ["models", "list", "--bootstrap", bootstrap, "--tenant", tenant])
        assert listed.exit_code == 0 and cand.model_version in listed.output and "candidate" in listed.output, listed.output
        shown = json.loads(runner.invoke(cli, ["models", "show", cand.model_version, "--bootstrap", bootstrap]).output)
        assert shown["adapter_uri"] == cand.adapter_uri and shown["dataset_id"] == sft.dataset_id
        promoted = runner.invoke(cli, ["models", "promote", cand.model_version, "--bootstrap", bootstrap])
        assert promoted.exit_code == 0 and f"{cand.model_version}: champion" in promoted.output, promoted.output
        after = {v.model_version: v.status for v in registry.versions(tenant, agent)}
        assert after == {cand.model_version: "champion", champion.model_version: "retired"}
        registry.close()

        # the sink records the dataset, the registry entries and the experiment in ClickHouse
        def in_clickhouse() -> bool:
            q = lambda sql: store.query(sql, {"t": tenant}).rows  # noqa: E731
            return (bool(q("SELECT 1 FROM v_datasets WHERE tenant_id = {t:String} AND kind = 'sft'"))
                    and q("SELECT status FROM v_model_versions WHERE tenant_id = {t:String} ORDER BY status")
                    == [("champion",), ("retired",)]
                    and bool(q("SELECT 1 FROM v_experiments WHERE tenant_id = {t:String}")))

        drain_sink(sink, in_clickhouse)
    finally:
        if service is not None:
            service.close()
        sink.close()
        store.close()
