"""The validation gate's decision, the evaluators, and a job's description."""

from __future__ import annotations

import pytest

from agentgym.processors.datasets.store import Manifest
from agentgym.trainers.evaluation import EvalCase, EvalScores, contains_reference, exact_match, load_evaluator
from agentgym.trainers.exceptions import DatasetKindError, EvaluatorError
from agentgym.trainers.gate import ValidationGate
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.trainers.settings import GateSettings, TrainSettings
from agentgym.trainers.training.job import TrainJob, model_version_for, new_job_id


def scores(loss: float, rate: float | None = None) -> EvalScores:
    return EvalScores(loss=loss, tokens=100, n=10, success_rate=rate)


# (candidate loss, champion loss, candidate rate, champion rate, loss margin, success margin, passes)
GATE_CASES = [
    (1.00, 1.10, None, None, 0.05, 0.0, True),  # 9.1 % better, 5 % required
    (1.06, 1.10, None, None, 0.05, 0.0, False),  # 3.6 % better: not enough
    (1.10, 1.10, None, None, 0.0, 0.0, False),  # equal is not better, even at margin 0
    (1.20, 1.10, None, None, 0.0, 0.0, False),  # worse
    (1.00, 1.10, 0.80, 0.70, 0.05, 0.05, True),  # both better by their margins
    (1.00, 1.10, 0.72, 0.70, 0.05, 0.05, False),  # success not better by 0.05
    (1.00, 1.10, 0.70, 0.70, 0.05, 0.0, True),  # success equal at margin 0: fine
    (1.00, 1.10, 0.60, 0.70, 0.05, 0.0, False),  # success worse: rejected despite the loss
]


@pytest.mark.parametrize(("cl", "hl", "cr", "hr", "lm", "sm", "passes"), GATE_CASES)
def test_gate_decision(cl: float, hl: float, cr: float | None, hr: float | None, lm: float, sm: float, passes: bool) -> None:
    gate = ValidationGate(GateSettings(gate_loss_margin=lm, gate_success_margin=sm))
    d = gate.decide(scores(cl, cr), scores(hl, hr))
    assert d.passed is passes
    assert d.reason.startswith("passed" if passes else "rejected")
    m = d.metrics()
    assert m["gate_passed"] == float(passes) and m["gate_eval_loss"] == cl and m["gate_champion_eval_loss"] == hl
    assert m["gate_loss_improvement"] == pytest.approx(1 - cl / hl)
    assert ("gate_success_rate" in m) is (cr is not None)


def test_evaluators() -> None:
    cases = [EvalCase([], "It shipped.", "it  shipped."), EvalCase([], "Berlin", "It is in Berlin today"),
             EvalCase([], "42", "41")]
    assert exact_match(cases) == pytest.approx(1 / 3)
    assert contains_reference(cases) == pytest.approx(2 / 3)
    assert exact_match([]) == 0.0
    assert load_evaluator("") is None and load_evaluator(None) is None
    assert load_evaluator("exact_match") is exact_match
    assert load_evaluator("agentgym.trainers.evaluation:contains_reference") is contains_reference
    for bad in ("nope", "agentgym.trainers.evaluation:missing", "no.such.module:fn", "agentgym.trainers.evaluation:BUILTIN_EVALUATORS"):
        with pytest.raises(EvaluatorError):
            load_evaluator(bad)
    with pytest.raises(EvaluatorError):
        ValidationGate(GateSettings(), evaluator="nope")
    with pytest.raises(ValueError, match="AGENTGYM_GATE_EVALUATOR 'nope': allowed"):  # the setting fails at start
        GateSettings(gate_evaluator="nope")


def manifest(kind: str) -> Manifest:
    return Manifest(dataset_id="ds-1", tenant_id="acme", agent_id="Support Bot", kind=kind, created_ms=1,
                    splits={"train": 9, "eval": 1}, shards={}, checksum="x", uri="file:///d/ds-1")


def test_a_job_takes_its_method_from_the_dataset_and_its_settings(tmp_path: object) -> None:
    s = TrainSettings(home=str(tmp_path), train_lora_r=4, train_max_steps=7)
    sft = TrainJob.for_dataset(manifest("sft"), "tiny:llama", s, job_id="job-20250101T000000-abcdef")
    assert (sft.method, sft.lora_r, sft.max_steps, sft.use_gpu) == ("sft", 4, 7, False)
    assert sft.model_version == model_version_for("Support Bot", "job-20250101T000000-abcdef")
    assert sft.model_version.startswith("support-bot-ft-20250101t000000-")
    assert sft.adapter_uri == f"{s.model_store}/{sft.model_version}"
    assert sft.base_path.endswith("tiny-llama")  # materialised under the model store
    assert sft.hyperparameters()["lora_r"] == "4"
    dpo = TrainJob.for_dataset(manifest("preference"), "tiny:llama", s, learning_rate=1e-3)
    assert (dpo.method, dpo.learning_rate) == ("dpo", 1e-3)
    with pytest.raises(DatasetKindError, match="DPO needs a preference dataset"):
        TrainJob.for_dataset(manifest("sft"), "tiny:llama", TrainSettings(home=str(tmp_path), train_method="dpo"))
    assert new_job_id(0) .startswith("job-19700101T000000-")


def test_settings_defaults_live_under_home(tmp_path: object) -> None:
    d = DatasetSettings(home=str(tmp_path), dataset_scrub="email, phone")
    assert d.dataset_store.endswith("/datasets") and d.scrubbers == ["email", "phone"]
    with pytest.raises(ValueError, match="unknown scrubber"):
        DatasetSettings(dataset_scrub="email,passport")
    t = TrainSettings(home=str(tmp_path))
    assert t.model_store.endswith("/models") and t.train_checkpoint_store.endswith("/ray-runs")
