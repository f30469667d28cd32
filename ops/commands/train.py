"""``agentgym train --dataset ID --base MODEL``: one fine-tuning job on Ray Train.

Local Ray by default; ``AGENTGYM_TRAIN_RAY_ADDRESS`` (or ``RAY_ADDRESS``) names a cluster. By default the adapter then
goes through the validation gate and into the registry (candidate or rejected, and a
candidate gets its A/B experiment), exactly as the trainer service does;
``--no-register`` only trains and stores the adapter. ``--job-id`` of an interrupted
job resumes it from its last checkpoint.

What training starts from: with ``--register``, the agent's champion's adapter, trained
further (``--init-from champion``, env ``AGENTGYM_TRAIN_INIT_FROM``, the default; a champion
that is the base model has none: a fresh LoRA), or a fresh LoRA on the base
(``--init-from base``); ``--init-adapter URI`` names the adapter to start from instead
(its LoRA shape wins over ``AGENTGYM_TRAIN_LORA_*``). ``--no-register`` does not read the
registry: a fresh LoRA unless ``--init-adapter`` is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from typing import Any

import click

from agentgym.processors.datasets.exceptions import DatasetError
from agentgym.processors.datasets.store import DatasetStore
from agentgym.trainers.exceptions import TrainersError
from agentgym.trainers.jobs import JobRecord
from agentgym.trainers.service import TrainerService
from agentgym.trainers.settings import TrainSettings, TrainerServiceSettings
from agentgym.trainers.training.job import TrainJob, new_job_id
from agentgym.trainers.training.launcher import cluster_has_gpus, ensure_ray, launch

__all__ = ["train"]


@click.command()
@click.option("--dataset", "dataset", required=True, help="dataset id in the dataset store, or a dataset URL")
@click.option("--base", "base", default=None,
              help="base model: a hub id, a local path, or tiny:llama [default: the agent's champion's base, "
                   "else AGENTGYM_TRAINER_BASE_MODEL]")
@click.option("--job-id", default=None, help="run id; the id of an interrupted job resumes it")
@click.option("--method", type=click.Choice(["sft", "dpo"]), default=None, help="[default: from the dataset's kind]")
@click.option("--workers", type=int, default=None, help="Ray Train workers [env AGENTGYM_TRAIN_NUM_WORKERS]")
@click.option("--gpu/--no-gpu", "gpu", default=None, help="[env AGENTGYM_TRAIN_USE_GPU; auto]")
@click.option("--max-steps", type=int, default=None, help="[env AGENTGYM_TRAIN_MAX_STEPS]")
@click.option("--epochs", type=float, default=None, help="[env AGENTGYM_TRAIN_EPOCHS]")
@click.option("--learning-rate", type=float, default=None, help="[env AGENTGYM_TRAIN_LEARNING_RATE]")
@click.option("--register/--no-register", default=True, show_default=True,
              help="gate the adapter against the champion and register it")
@click.option("--init-from", type=click.Choice(["champion", "base"]), default=None,
              help="start from the champion's adapter (a fresh LoRA when the champion is the base model), or a fresh "
                   "LoRA on the base [env AGENTGYM_TRAIN_INIT_FROM; champion]; --no-register: base")
@click.option("--init-adapter", default=None, metavar="URI",
              help="start from this LoRA adapter (a directory or fsspec URL; its LoRA shape wins over the settings'); "
                   "the registry records init_from=adapter")
def train(dataset: str, base: str | None, job_id: str | None, method: str | None, workers: int | None, gpu: bool | None,
          max_steps: int | None, epochs: float | None, learning_rate: float | None, register: bool, init_from: str | None,
          init_adapter: str | None) -> None:
    """Fine-tune a LoRA adapter on a finished dataset with Ray Train."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides: dict[str, Any] = {}
    if method:
        overrides["train_method"] = method
    if workers is not None:
        overrides["train_num_workers"] = workers
    if gpu is not None:
        overrides["train_use_gpu"] = "yes" if gpu else "no"
    if max_steps is not None:
        overrides["train_max_steps"] = max_steps
    if epochs is not None:
        overrides["train_epochs"] = epochs
    if learning_rate is not None:
        overrides["train_learning_rate"] = learning_rate
    if init_from is not None:
        overrides["train_init_from"] = init_from
    if init_adapter and init_from == "base":
        raise click.UsageError("--init-adapter and --init-from base contradict each other: pass one of them")
    ts = TrainSettings(**overrides)
    failed = False
    try:
        # Ray relays the workers' prints (the trainer's logs) to this process's stdout: they go to stderr, and
        # stdout carries the result alone (`agentgym train ... | jq` works)
        with contextlib.redirect_stdout(sys.stderr):
            try:
                manifest = DatasetStore.open(dataset) if "/" in dataset else DatasetStore(ts.dataset_store).manifest(dataset)
                if register:
                    outcome = _train_and_register(manifest, base, job_id, ts, init_adapter)
                    out = {"job": outcome.record.job_id, "status": outcome.record.status,
                           "model_version": outcome.record.model_version, "verdict": outcome.record.verdict,
                           "reason": outcome.record.reason, "experiment_id": outcome.experiment_id,
                           "metrics": outcome.metrics}
                    failed = outcome.record.status == "failed"
                else:
                    ensure_ray(ts.train_ray_num_cpus, ts.train_ray_address or None)
                    use_gpu = ts.train_use_gpu == "yes" or (ts.train_use_gpu == "auto"
                                                            and cluster_has_gpus(ts.train_num_workers))
                    job = TrainJob.for_dataset(manifest, base or TrainerServiceSettings().trainer_base_model, ts,
                                               job_id=job_id, use_gpu=use_gpu, init_adapter=init_adapter)
                    result = launch(job)
                    out = {"job": job.job_id, "adapter_uri": result.adapter_uri, "metrics": result.metrics}
            finally:
                _disconnect_ray()
    except (TrainersError, DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(out, indent=2))
    if failed:
        raise SystemExit(1)


def _disconnect_ray() -> None:
    """Disconnects from Ray (stopping a local one), so the workers' last relayed lines come before the result."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _train_and_register(manifest: Any, base: str | None, job_id: str | None, ts: Any, init_adapter: str | None) -> Any:
    import time

    service = TrainerService(train_settings=ts)
    now = int(time.time() * 1000)
    rec = JobRecord(job_id=job_id or new_job_id(now), dataset_id=manifest.dataset_id, tenant_id=manifest.tenant_id,
                    agent_id=manifest.agent_id, kind=manifest.kind, status="deferred", reason="agentgym train",
                    dataset_uri=manifest.uri, num_examples=manifest.num_examples, created_ms=now, updated_ms=now)
    existing = service.jobs.get(rec.job_id)
    if existing is not None:
        rec = existing
    try:
        return service.run_job(service.jobs.save(rec), base_model=base, init_adapter=init_adapter)
    finally:
        service.close()
