"""The per-worker training function Ray Train runs: ``train_func(config)``.

``config`` is a :class:`~agentgym.trainers.training.job.TrainJob` as a dict. Each worker reads
the dataset (its manifest and Parquet shards, from any fsspec URL), loads the base
model and tokenizer, builds the TRL trainer (:func:`agentgym.trainers.training.trainer.build_trainer`;
Hugging Face ``Trainer`` runs data-parallel across the Ray workers through the
``torch.distributed`` group Ray Train sets up) and trains.

Resuming: when Ray Train hands back a checkpoint (``ray.train.get_checkpoint()``:
after a worker failure, or when a job is started again under the same job id and
storage path), it holds the Hugging Face checkpoint directory -- adapter weights,
optimiser, scheduler, RNG states and trainer state -- and training continues from its
step exactly. A checkpoint marked final (the finished adapter) means the job is done:
its metrics are reported again and nothing is retrained.

Starting from an adapter (``init_adapter``, e.g. the champion's): the base model is
loaded, then the adapter on top as a trainable ``PeftModel`` (copied from its fsspec URL
to this node first), so the held-out loss before training is the adapter's. On a resume
the checkpoint wins: its adapter weights replace the initial ones (the Hugging Face
trainer loads them); should the initial adapter be gone by then, the checkpoint's own
adapter is the starting structure.

At the end, rank 0 saves the adapter and the tokenizer (with its chat template) and
reports them as the final checkpoint, with the metrics: held-out loss before and
after training, first and last logged training loss, steps, tokens and throughput.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentgym.processors.datasets.exceptions import DatasetNotFoundError
from agentgym.processors.datasets.store import DatasetStore
from agentgym.trainers.exceptions import BaseModelError, TrainingError
from agentgym.trainers.fsutil import read_json
from agentgym.trainers.modeling import is_tiny, load_model, load_tokenizer, resolve_base
from agentgym.trainers.training.job import TrainJob
from agentgym.trainers.training.trainer import build_trainer, is_peft, runtime_for

__all__ = ["train_func", "FINAL_MARKER", "base_path_here", "dataset_here"]

FINAL_MARKER = "agentgym_final.json"


def _summarise(log_history: list[dict[str, Any]]) -> dict[str, float]:
    losses = [h["loss"] for h in log_history if "loss" in h]
    out: dict[str, float] = {}
    if losses:
        out["train_loss_first"] = float(losses[0])
        out["train_loss_last"] = float(losses[-1])
    for h in log_history:
        if "num_tokens" in h:
            out["num_tokens"] = float(h["num_tokens"])
    return out


def _adapter_readable(uri: str) -> bool:
    try:
        return read_json(f"{uri.rstrip('/')}/adapter_config.json") is not None
    except (OSError, ValueError):
        return False


def _node() -> str:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return f"{socket.gethostname()} (Ray node {ray.util.get_node_ip_address()})"
    return socket.gethostname()


def base_path_here(job: TrainJob) -> str:
    """What this worker loads as the base model.

    The job's ``base_path`` was resolved where the job was launched. A ``tiny:`` base
    missing on this node is built here (it is deterministic); a local directory missing
    here is an error that says why: on a Ray cluster every node needs it at the same path.
    """
    path = job.base_path
    if is_tiny(job.base_model):
        return path if Path(path).is_dir() else resolve_base(job.base_model)
    if path.startswith(("/", "./", "~")) and not Path(path).expanduser().is_dir():
        raise BaseModelError(
            f"base model directory {path} does not exist on {_node()}: on a Ray cluster every node needs the base "
            "model at the same path (shared storage), or name a hub model id")
    return path


def dataset_here(job: TrainJob) -> Any:
    """The job's dataset manifest, read on this worker (an error names the node and the storage it needs)."""
    try:
        return DatasetStore.open(job.dataset_uri)
    except DatasetNotFoundError as exc:
        raise TrainingError(
            f"dataset {job.dataset_uri} cannot be read on {_node()} ({exc}): on a Ray cluster the dataset store must "
            "be storage every node reaches at the same URL (an fsspec URL such as s3://..., or one shared mount)"
        ) from None


def train_func(config: dict[str, Any]) -> None:
    """Trains one job on this Ray Train worker (see the module docstring)."""
    import ray.train
    from ray.train import Checkpoint

    from agentgym.trainers.training.callbacks import RayReportCallback, clean_metrics

    job = TrainJob.model_validate(config)
    rank = int(ray.train.get_context().get_world_rank())
    workdir = tempfile.mkdtemp(prefix=f"agentgym-{job.job_id}-")
    try:
        resume_dir = None
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            restored = checkpoint.to_directory(os.path.join(workdir, "restored"))
            marker = Path(restored) / FINAL_MARKER
            if marker.is_file():  # the job already finished: hand its result back unchanged
                metrics = json.loads(marker.read_text())
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(restored) if rank == 0 else None)
                return
            resume_dir = restored
        resume_from = json.loads(Path(resume_dir, "trainer_state.json").read_text())["global_step"] if resume_dir else None
        if resume_dir is not None and job.init_adapter and not _adapter_readable(job.init_adapter) \
                and Path(resume_dir, "adapter_config.json").is_file():
            job = job.model_copy(update={"init_adapter": resume_dir})  # the checkpoint's weights win anyway

        import torch

        rt = runtime_for(job)
        base_path = base_path_here(job)
        manifest = dataset_here(job)
        store = DatasetStore(manifest.uri.rsplit("/", 1)[0])
        train_rows, eval_rows = store.read(manifest, "train"), store.read(manifest, "eval")
        tokenizer = load_tokenizer(base_path)
        model = load_model(base_path, dtype=torch.bfloat16 if rt.bf16 else None, attn_implementation=rt.attn_implementation)
        report = RayReportCallback()
        trainer = build_trainer(job, model, tokenizer, train_rows, eval_rows, output_dir=os.path.join(workdir, "hf"),
                                runtime=rt, callbacks=[report])
        carried = Path(resume_dir or "", RayReportCallback.CARRY_FILE)
        if resume_dir is not None and carried.is_file():
            report.carry.update(json.loads(carried.read_text()))
        elif eval_rows:
            before = trainer.evaluate(metric_key_prefix="eval_before")
            report.carry["eval_before_loss"] = float(before["eval_before_loss"])
        started = time.time()
        output = trainer.train(resume_from_checkpoint=resume_dir)
        elapsed = time.time() - started
        metrics = {**report.carry, **_summarise(trainer.state.log_history)}
        if resume_from is not None:
            metrics["resumed_from_step"] = float(resume_from)
        metrics.update(train_loss=float(output.training_loss), steps=float(trainer.state.global_step),
                       train_runtime_s=elapsed, train_examples=float(len(train_rows)), eval_examples=float(len(eval_rows)))
        if "num_tokens" in metrics and elapsed > 0:
            metrics["train_tokens_per_s"] = metrics["num_tokens"] / elapsed
        if eval_rows:
            after = trainer.evaluate(metric_key_prefix="eval")
            metrics.update(clean_metrics(after))
        metrics["final"] = 1.0
        final_dir = os.path.join(workdir, "final")
        if rank == 0:
            if is_peft(trainer.model) and len(trainer.model.peft_config) > 1:  # DPO's frozen "ref" copy stays behind
                trainer.model.save_pretrained(final_dir, selected_adapters=["default"])
            else:
                trainer.model.save_pretrained(final_dir)
            tokenizer.save_pretrained(final_dir)
            Path(final_dir, FINAL_MARKER).write_text(json.dumps(metrics, sort_keys=True))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(final_dir))
        else:
            ray.train.report(metrics)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
