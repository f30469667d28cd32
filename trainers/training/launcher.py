"""The launcher: runs a :class:`~agentgym.trainers.training.job.TrainJob` as a Ray Train ``TorchTrainer``.

Ray: an already initialised Ray is used as it is; otherwise ``AGENTGYM_TRAIN_RAY_ADDRESS``
(or Ray's own ``RAY_ADDRESS``) names a cluster (``head:6379``, ``ray://head:10001`` or
``auto``), and without either a local Ray starts (``ray.init()``,
``AGENTGYM_TRAIN_RAY_NUM_CPUS`` CPUs). Workers, GPUs and their placement over the
cluster's nodes come from the job (``ScalingConfig(num_workers, use_gpu,
placement_strategy)``).

On a cluster every worker reads the dataset and the base model and writes checkpoints
itself, so the dataset URI, the base model's path and the job's storage path must name
the same storage on every node (an fsspec URL, or one shared mount); a worker whose
node lost its copy of a ``tiny:`` base builds it again (it is deterministic).

The run is named by the job id under the job's storage path, so starting the same job
again resumes it from its latest checkpoint (Ray Train restores the run's checkpoint
state from storage), and ``FailureConfig(max_failures)`` restarts failed workers from
it. The finished adapter (the run's final checkpoint) is copied to the model store at
``<model_store>/<model_version>``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentgym.trainers.exceptions import TrainingError
from agentgym.trainers.modeling import is_tiny
from agentgym.trainers.training.job import TrainJob
from agentgym.trainers.training.train_func import FINAL_MARKER, train_func
from agentgym.schemas.ids import validate_id

__all__ = ["TrainResult", "ensure_ray", "cluster_has_gpus", "launch", "progress_uri_for", "node_local_paths"]

log = logging.getLogger("agentgym.train")


@dataclass
class TrainResult:
    """What a finished job produced."""

    job: TrainJob
    adapter_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_path: str = ""


def ensure_ray(num_cpus: int | None = None, address: str | None = None, **init_kwargs: Any) -> None:
    """Connects to Ray unless connected: ``address`` (``AGENTGYM_TRAIN_RAY_ADDRESS``), else
    ``RAY_ADDRESS`` when set, else a local Ray of ``num_cpus`` CPUs."""
    import ray

    _quiet_print_patch()
    _ray_train_env()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **init_kwargs)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **init_kwargs)


def _ray_train_env() -> None:
    """Ray Train's controller polls its workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``
    (Ray's default 2 s), and a worker's ``ray.train.report`` waits for the next poll. With a
    report every few logging steps, a short CPU job spent most of its time waiting: a
    100-step demo job took 47.7 s of steps at 2 s and 12.0 s at 0.5 s. 0.5 s unless the user
    set it (Ray Train propagates the variable from this driver to its controller and workers,
    on a cluster too)."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")


def _quiet_print_patch() -> None:
    """Turns Ray Train's print patch off (unless the user set it), for the workers too.

    The patch routes ``print`` to Ray's logger, which defeats dill's capture of
    ``dis.dis`` output -- and ``datasets`` fingerprints every ``map`` function with dill,
    so worker logs would fill with bytecode listings. (Ray Train propagates this
    variable from the driver to its workers.)
    """
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")


def node_local_paths(job: TrainJob) -> list[str]:
    """The job's storage that is a path on the launching machine (no URL scheme): dataset, checkpoints, model
    store, base model. On a cluster of several hosts each must be one shared mount at the same path."""
    def local(uri: str) -> bool:
        return "://" not in uri or uri.startswith("file://")

    named = [("dataset", job.dataset_uri), ("checkpoint store", job.storage_path), ("model store", job.model_store)]
    out = [f"{what} {uri}" for what, uri in named if local(uri)]
    if not is_tiny(job.base_model) and job.base_path.startswith("/"):  # a tiny base is rebuilt where it is missing
        out.append(f"base model {job.base_path}")
    return out


def _warn_if_paths_are_node_local(job: TrainJob) -> None:
    import ray

    try:
        hosts = {n.get("NodeManagerHostname") for n in ray.nodes() if n.get("Alive")}
    except Exception:  # informative only
        return
    paths = node_local_paths(job)
    if len(hosts) > 1 and paths:
        log.warning("train: %s runs on a cluster of %d hosts, and these are local paths: %s. Every node must see "
                    "them at the same path (one shared mount); otherwise use URLs every node reaches (s3://...)",
                    job.job_id, len(hosts), "; ".join(paths))


def cluster_has_gpus(num_workers: int) -> bool:
    """Whether the connected Ray cluster has a GPU for each of ``num_workers`` workers."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0)) >= num_workers


def progress_uri_for(job: TrainJob) -> str:
    return f"{job.storage_path.rstrip('/')}/{validate_id(job.job_id, 'job_id')}/agentgym-progress.json"


def launch(job: TrainJob, *, progress_uri: str | None = None, ray_num_cpus: int | None = None,
           train_loop: Callable[[dict[str, Any]], None] | None = None, ray_address: str | None = None) -> TrainResult:
    """Runs the job on Ray Train and stores its adapter.

    Args:
        job: the job (its ``job_id`` names the run: the same id resumes it).
        progress_uri: where the controller writes progress JSON (default: in the run's directory).
        ray_num_cpus: CPUs of a local Ray, when this call starts one.
        ray_address: the cluster to connect to, when Ray is not connected yet (default: ``RAY_ADDRESS``, else local).
        train_loop: the per-worker function (default :func:`~agentgym.trainers.training.train_func.train_func`;
            a wrapper may add to it, e.g. fault injection in tests).

    Raises:
        TrainingError: the run failed or left no adapter.
    """
    import fsspec
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from agentgym.trainers.training.progress import ProgressCallback

    ensure_ray(ray_num_cpus, ray_address)  # also Ray Train's environment defaults (print patch, poll interval)
    _warn_if_paths_are_node_local(job)
    trainer = TorchTrainer(
        train_loop or train_func,
        train_loop_config=job.model_dump(),
        scaling_config=ScalingConfig(num_workers=job.num_workers, use_gpu=job.use_gpu,
                                     placement_strategy=job.placement_strategy),
        run_config=RunConfig(
            name=job.job_id,
            storage_path=job.storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=job.max_failures),
            callbacks=[ProgressCallback(progress_uri or progress_uri_for(job), job.job_id)],  # type: ignore[list-item]
        ),
    )
    log.info("train: %s (%s on %s, %d worker(s), gpu=%s) -> %s", job.job_id, job.method, job.dataset_id,
             job.num_workers, job.use_gpu, job.model_version)
    try:
        result = trainer.fit()
    except Exception as exc:
        raise TrainingError(f"training job {job.job_id} failed: {exc}") from exc
    if result.error is not None:
        raise TrainingError(f"training job {job.job_id} failed: {result.error}")
    checkpoint = result.checkpoint
    if checkpoint is None:
        raise TrainingError(f"training job {job.job_id} reported no checkpoint")
    fs, target = fsspec.core.url_to_fs(job.adapter_uri)
    with checkpoint.as_directory() as local:
        marker = os.path.join(local, FINAL_MARKER)
        if not os.path.isfile(marker):
            raise TrainingError(f"training job {job.job_id}: the last checkpoint is not a finished adapter")
        with open(marker, encoding="utf-8") as fh:
            metrics = {k: float(v) for k, v in json.load(fh).items()}
        fs.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(local)):
            src = os.path.join(local, name)
            if os.path.isfile(src):
                fs.put_file(src, f"{target.rstrip('/')}/{name}")
    log.info("train: %s finished: %s", job.job_id, {k: round(v, 4) for k, v in metrics.items()})
    return TrainResult(job=job, adapter_uri=job.adapter_uri, metrics=metrics, checkpoint_path=str(checkpoint.path))
