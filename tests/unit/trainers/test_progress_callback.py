"""The training progress file: the latest metrics and the loss curve so far."""

from __future__ import annotations

import json
from pathlib import Path

from agentgym.trainers.training.callbacks import ProgressCallback


def test_progress_keeps_the_loss_curve_once_per_step(tmp_path: Path) -> None:
    uri = str(tmp_path / "progress.json")
    cb = ProgressCallback(uri, "job-1")
    cb.after_report(None, [{"loss": 2.5, "step": 10, "epoch": 0.5}], None)
    cb.after_report(None, [{"loss": 2.5, "step": 10, "checkpoint": 1.0}], None)  # the same step reported with its checkpoint
    cb.after_report(None, [{"step": 15, "grad_norm": float("nan")}], None)  # no loss: not a point of the curve
    cb.after_report(None, [{"loss": 1.75, "step": 20}], None)
    doc = json.loads(Path(uri).read_text())
    assert doc["job_id"] == "job-1"
    assert doc["history"] == [[10.0, 2.5], [20.0, 1.75]]
    assert doc["metrics"] == {"loss": 1.75, "step": 20.0}
