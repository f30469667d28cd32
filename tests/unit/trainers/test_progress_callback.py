"""The training progress file: the latest metrics and the loss curve so far."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agentgym.trainers.training.progress import ProgressCallback


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


def test_the_controllers_callback_unpickles_without_transformers_or_torch() -> None:
    # Ray Train unpickles the callback in each job's controller, a fresh process: importing the Hugging Face side
    # there cost 12 s of every job's start-up
    probe = ("import pickle, sys; from agentgym.trainers.training.progress import ProgressCallback; "
             "blob = pickle.dumps(ProgressCallback('/nowhere/progress.json', 'job-1')); "
             "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('agentgym')]; "
             "cb = pickle.loads(blob); "
             "print(type(cb).__module__, sorted(m for m in ('transformers', 'torch', 'peft', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["agentgym.trainers.training.progress", "[]"], out.stdout
