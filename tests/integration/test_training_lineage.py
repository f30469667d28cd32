"""Rounds train from the champion, and ``agentgym models show`` prints the lineage (real broker).

Three generations of one agent: the base model (the first champion), ``v1`` (a fresh
LoRA, promoted by its experiment: the base retires), and ``v2``, which the trainer
service trains from ``v1``'s adapter and which its experiment rolls back. Registry,
job records, experiments and decisions are the real ones (the registry changes are
the promoter's, made directly); only the Ray
run of ``v2`` is replaced by a stand-in that writes the adapter it starts from with its
B matrices zeroed (training from an adapter itself is tested on the tiny model in
``tests/unit/trainers/test_init_from_adapter.py``; a Ray run here would cost ~100 s):
``v1``'s adapter is a strong random perturbation, worse than the base, so the stand-in
is better on held-out loss and the gate passes it.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from agentgym.ops.cli import main as cli
from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.producers.records import RecordProducer
from agentgym.trainers import service as service_module
from agentgym.trainers.experiments import candidate_experiment
from agentgym.trainers.jobs import JobRecord
from agentgym.trainers.modeling import load_model, resolve_base
from agentgym.trainers.registry import ModelRegistry, ModelVersion
from agentgym.trainers.service import TrainerService
from agentgym.trainers.settings import GateSettings, TrainerServiceSettings, TrainSettings
from agentgym.trainers.training.launcher import TrainResult
from tests import trainer_samples

pytestmark = pytest.mark.integration

AGENT = "shouter"


def _dataset(home: Path, dataset_id: str, tenant: str) -> Manifest:
    rng = random.Random(dataset_id)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for i in range(16):
        word, number = rng.choice(trainer_samples.WORDS), rng.randint(1, 999)
        rows["eval" if i % 4 == 0 else "train"].append({
            "prompt": [{"role": "user", "content": f"shout {word} {number}"}],
            "completion": [{"role": "assistant", "content": trainer_samples.answer(word, number)}],
            "trace_id": f"t{i}", "labeller_version": "rules-2", "source": "success", "prompt_key": f"k{i}",
        })
    return DatasetStore(str(home / "datasets")).write(dataset_id=dataset_id, tenant_id=tenant, agent_id=AGENT, kind="sft",
                                                      created_ms=1, rows=rows)


def _adapter(base_path: str, directory: Path) -> Path:
    """A finished job's adapter: LoRA r=4 on q/v with non-zero weights."""
    from peft import LoraConfig, get_peft_model

    gen = torch.Generator().manual_seed(3)
    model = get_peft_model(load_model(base_path), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                             task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
    model.save_pretrained(directory)
    return directory


def _decide(producer: RecordProducer, admin: ExperimentAdmin, registry: ModelRegistry, experiment_id: str, tenant: str,
            action: str, candidate: str) -> None:
    """The experiments processor's two writes (the decision, then the configuration applying it), and what the
    promoter makes of them (``tests/integration/test_promoter.py`` tests the promoter itself)."""
    producer.send("decisions", {
        "event_id": f"{experiment_id}:v1:{action}", "tenant_id": tenant, "experiment_id": experiment_id,
        "timestamp_ms": int(time.time() * 1000), "action": action, "winner": "treatment" if action == "promote_winner" else None,
        "reason": f"test {action}", "evidence_json": "{}", "decided_by": "auto"})
    if action == "promote_winner":
        admin.change(experiment_id, lambda c: c.promote("treatment", "test"))
        registry.promote(candidate)
    else:
        admin.change(experiment_id, lambda c: c.rollback("test"))
        registry.retire(candidate)


@pytest.mark.timeout(180)
def test_a_round_trains_from_the_champion_and_models_show_prints_three_generations(
        bootstrap: str, registry: ModelRegistry, tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    tenant = f"t-{unique}"
    settings = TrainerServiceSettings(home=tmp_path, bootstrap_servers=bootstrap, trainer_group=f"trainer-{unique}",
                                      trainer_auto_promote=False)
    train_settings = TrainSettings(home=tmp_path, train_use_gpu="no", train_lora_r=16, train_max_length=64)
    service = TrainerService(settings, train_settings,
                             GateSettings(gate_loss_margin=0.0, gate_max_eval_examples=4, experiment_treatment_weight=0.1))
    producer, admin = RecordProducer(bootstrap), ExperimentAdmin(bootstrap)
    try:
        base_path = resolve_base("tiny:llama", tmp_path / "models" / "base")
        # generation 0 and 1: the base champion; v1, a fresh LoRA on it, promoted by its experiment
        base = registry.ensure_base_champion(tenant, AGENT, "tiny:llama")
        v1, job1 = f"{AGENT}-ft-{unique}-v1", f"job-{unique}-1"
        v1_adapter = _adapter(base_path, tmp_path / "models" / v1)
        registry.register(ModelVersion(
            tenant_id=tenant, model_version=v1, agent_id=AGENT, base_model="tiny:llama", status="candidate",
            adapter_uri=str(v1_adapter), dataset_id=f"ds-{unique}-1", parent_version=None,
            hyperparameters={"job_id": job1, "init_from": "base", "init_adapter": ""}))
        exp1 = admin.create(candidate_experiment(tenant, AGENT, base.model_version, v1, GateSettings())).experiment_id
        service.jobs.save(JobRecord(job_id=job1, dataset_id=f"ds-{unique}-1", tenant_id=tenant, agent_id=AGENT, kind="sft",
                                    status="succeeded", model_version=v1, verdict="candidate", experiment_id=exp1))
        print(f"\n[{time.monotonic() - started:.1f}s] v1 registered")
        _decide(producer, admin, registry, exp1, tenant, "promote_winner", v1)
        print(f"[{time.monotonic() - started:.1f}s] v1 promoted")
        champion = registry.champion(tenant, AGENT)
        assert champion is not None and champion.model_version == v1

        # the policy: from the champion's adapter by default; a fresh LoRA with init_from=base, or for a base champion
        assert service.init_adapter_for(champion, "tiny:llama") == str(v1_adapter)
        assert service.init_adapter_for(base, "tiny:llama") is None
        assert service.init_adapter_for(champion, "some/other-base") is None
        as_base = TrainerService(settings, TrainSettings(home=tmp_path, train_init_from="base"))
        assert as_base.init_adapter_for(champion, "tiny:llama") is None
        as_base.close()

        # generation 2: the service's next round starts from v1's adapter
        launched: list[Any] = []

        def stand_in(job: Any, **_: Any) -> TrainResult:
            launched.append(job)
            shutil.copytree(job.init_adapter, job.adapter_uri)
            weights = Path(job.adapter_uri, "adapter_model.safetensors")
            tensors = load_file(str(weights))
            save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()}, str(weights))
            return TrainResult(job=job, adapter_uri=job.adapter_uri, metrics={"steps": 0.0})

        monkeypatch.setattr(service_module, "launch", stand_in)
        monkeypatch.setattr(service_module, "ensure_ray", lambda *a, **k: None)
        monkeypatch.setattr(service_module, "cluster_has_gpus", lambda *a, **k: False)
        manifest = _dataset(tmp_path, f"ds-{unique}-2", tenant)
        now = int(time.time() * 1000)
        rec = service.jobs.save(JobRecord(job_id=f"job-{unique}-2", dataset_id=manifest.dataset_id, tenant_id=tenant,
                                          agent_id=AGENT, kind="sft", status="deferred", dataset_uri=manifest.uri,
                                          num_examples=manifest.num_examples, created_ms=now, updated_ms=now))
        outcome = service.run_job(rec)
        print(f"[{time.monotonic() - started:.1f}s] v2 trained and gated")
        assert outcome.record.status == "succeeded" and outcome.model is not None, outcome.record.reason
        [job] = launched
        assert (job.init_adapter, job.init_from) == (str(v1_adapter), "champion")
        assert (job.lora_r, job.lora_alpha, job.lora_target_modules) == (4, 8, "q_proj,v_proj"), "v1's LoRA shape, not r=16"
        v2 = outcome.model
        assert v2.parent_version == v1 and v2.status == "candidate" and outcome.experiment_id == f"exp-{v2.model_version}"
        assert (v2.hyperparameters["init_from"], v2.hyperparameters["init_adapter"]) == ("champion", str(v1_adapter))
        assert v2.hyperparameters["lora_r"] == "4" and v2.hyperparameters["job_id"] == rec.job_id
        # the gate scored v1 (the champion) as the baseline
        assert outcome.metrics["gate_eval_loss"] < outcome.metrics["gate_champion_eval_loss"]
        _decide(producer, admin, registry, outcome.experiment_id, tenant, "rollback", v2.model_version)

        print(f"[{time.monotonic() - started:.1f}s] v2 rolled back")
        runner = CliRunner()
        shown = runner.invoke(cli, ["models", "show", v2.model_version, "--bootstrap", bootstrap,
                                    "--jobs-dir", settings.trainer_jobs_dir])
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.stdout)
        assert data["model_version"] == v2.model_version and data["parent_version"] == v1  # the record, as before
        lineage = data["lineage"]
        assert [g["model_version"] for g in lineage] == [v2.model_version, v1, base.model_version]
        assert [g["status"] for g in lineage] == ["retired", "champion", "retired"]
        assert [(g["dataset_id"], g["job_id"], g["job_status"], g["init_from"]) for g in lineage] == [
            (manifest.dataset_id, rec.job_id, "succeeded", "champion"), (f"ds-{unique}-1", job1, "succeeded", "base"),
            (None, "", "", "")]
        assert [[(e["experiment_id"], e["effect"]) for e in g["events"]] for g in lineage] == [
            [(outcome.experiment_id, "rolled_back")], [(exp1, "promoted")], [(exp1, "retired")]]

        print(f"[{time.monotonic() - started:.1f}s] models show")
        text = runner.invoke(cli, ["models", "show", v2.model_version, "--bootstrap", bootstrap, "--lineage",
                                   "--jobs-dir", settings.trainer_jobs_dir])
        assert text.exit_code == 0, text.output
        print("\n" + text.stdout)
        lines = text.stdout.splitlines()

        def line_of(fragment: str) -> int:
            return next(i for i, line in enumerate(lines) if fragment in line)

        assert line_of(f"{v2.model_version} [retired] from its parent's adapter ({v1})") \
            < line_of(f"rolled back by {outcome.experiment_id}") \
            < line_of(f"{v1} [champion] fresh LoRA on tiny:llama") < line_of(f"promoted by {exp1}") \
            < line_of(f"{base.model_version} [retired] base model tiny:llama, no adapter") \
            < line_of(f"retired by {exp1}")
        assert f"dataset {manifest.dataset_id}  job {rec.job_id} (succeeded, candidate)" in text.stdout
        assert f"dataset ds-{unique}-1  job {job1} (succeeded, candidate)" in text.stdout
        assert f"({v1} won)" in text.stdout

        missing = runner.invoke(cli, ["models", "show", f"{unique}-nope", "--bootstrap", bootstrap])
        assert missing.exit_code != 0 and f"no model version '{unique}-nope'" in missing.output
    finally:
        producer.close()
        admin.close()
        service.close()
    print(f"lineage test: {time.monotonic() - started:.1f}s")
