"""Callbacks that connect the Hugging Face trainer to Ray Train, and Ray Train to the job record.

* :class:`RayReportCallback` runs in every Ray Train worker: every logging step it
  reports the metrics (``ray.train.report``), and every checkpoint the trainer saves is
  reported with it (rank 0's whole checkpoint; each other rank adds its own RNG state
  file to the same checkpoint), so Ray Train keeps the latest checkpoints in its storage
  and hands the newest back through ``ray.train.get_checkpoint()`` after a failure or
  when the job is started again.
* :class:`~agentgym.trainers.training.progress.ProgressCallback` (in its own module, re-exported
  here) runs in the Ray Train controller and writes each job's progress.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from transformers import TrainerCallback

from agentgym.trainers.training.progress import ProgressCallback, clean_metrics

__all__ = ["RayReportCallback", "ProgressCallback", "clean_metrics"]


class RayReportCallback(TrainerCallback):  # type: ignore[misc]
    """Reports metrics at each log and checkpoints at each save to Ray Train.

    Args:
        carry: metrics written into every checkpoint (``agentgym_carry.json``) so a
            resumed run still has them (e.g. the held-out loss before training, which
            the trainer's own state does not keep).
    """

    CARRY_FILE = "agentgym_carry.json"

    def __init__(self, carry: dict[str, float] | None = None) -> None:
        self._last: dict[str, float] = {}
        self.carry: dict[str, float] = dict(carry or {})

    @staticmethod
    def _rank() -> int:
        import ray.train

        return int(ray.train.get_context().get_world_rank())

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        import ray.train

        metrics = clean_metrics({**(logs or {}), "step": state.global_step, "epoch": state.epoch or 0.0})
        self._last.update(metrics)
        ray.train.report(metrics)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import ray.train
        from ray.train import Checkpoint

        metrics = {**self._last, "step": float(state.global_step), "checkpoint": 1.0}
        directory = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        rank = self._rank()
        rng_state = os.path.join(directory, f"rng_state_{rank}.pth")
        if rank == 0 and os.path.isdir(directory):
            with open(os.path.join(directory, self.CARRY_FILE), "w", encoding="utf-8") as fh:
                json.dump(self.carry, fh)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(directory))
        elif os.path.isfile(rng_state):
            # every rank saved its RNG state in its own (node-local) directory; Ray Train merges the ranks' files
            # into one checkpoint, so a resumed worker of any rank continues its dropout and sampling streams exactly
            with tempfile.TemporaryDirectory(prefix="agentgym-rng-") as own:
                shutil.copy2(rng_state, own)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(own))
        else:
            ray.train.report(metrics)
