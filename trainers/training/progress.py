"""The Ray Train controller's callback: each job's progress, as JSON, where the job's readers find it.

:class:`ProgressCallback` runs in the Ray Train controller and writes the latest progress
(step, loss, throughput) and the loss curve so far (``history``: ``[step, loss]`` pairs) as
JSON to an fsspec URL, where ``agentgym trainer jobs``, the trainer service and the demo's
report read it.

Ray Train unpickles the callback in the controller, a process of its own started for every
job, so this module imports neither transformers nor torch: through the Hugging Face
callback's module (``transformers.TrainerCallback`` pulls in peft and most of transformers)
the controller of every job spent 12 of its 18 s of start-up importing them (measured
2026-12-04 on a two-core host).
"""

from __future__ import annotations

import math
import time
from typing import Any

from agentgym.trainers.fsutil import write_json

try:  # the controller-side callback base of Ray Train V2
    from ray.train import UserCallback as _UserCallback
except ImportError:  # pragma: no cover - Ray Train V1
    _UserCallback = object  # type: ignore[assignment,misc]

__all__ = ["ProgressCallback", "clean_metrics"]


def clean_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """Finite numbers only (Ray and JSON want plain floats)."""
    out: dict[str, float] = {}
    for k, v in logs.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


class ProgressCallback(_UserCallback):  # type: ignore[misc,valid-type]
    """Writes each report's metrics (rank 0's) as the job's progress to ``uri``."""

    def __init__(self, uri: str, job_id: str) -> None:
        self.uri = uri
        self.job_id = job_id
        self.started = time.time()
        self.history: list[list[float]] = []

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        latest = metrics[0] if metrics else {}
        clean = clean_metrics(latest)
        if "loss" in clean and "step" in clean and (not self.history or self.history[-1][0] != clean["step"]):
            self.history.append([clean["step"], clean["loss"]])
        try:
            write_json(self.uri, {
                "job_id": self.job_id, "updated_ms": int(time.time() * 1000), "elapsed_s": time.time() - self.started,
                "metrics": clean, "history": self.history, "checkpoint": getattr(checkpoint, "path", None),
            })
        except Exception:  # progress is informative; a failed write must not fail training
            pass
