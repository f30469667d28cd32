"""The candidate's experiment takes its audit rate from AGENTGYM_EXPERIMENT_AUDIT_RATE (default: no audit sample)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentgym.trainers.experiments import candidate_experiment
from agentgym.trainers.settings import GateSettings


def test_the_candidate_experiment_has_the_configured_audit_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    assert candidate_experiment("acme", "bot", "v1", "v2", GateSettings()).audit_rate == 0.0
    monkeypatch.setenv("AGENTGYM_EXPERIMENT_AUDIT_RATE", "0.15")
    cfg = candidate_experiment("acme", "bot", "v1", "v2", GateSettings())
    assert cfg.audit_rate == 0.15 and cfg.primary_metric.name == "success_rate"
    assert cfg.to_record()["audit_rate"] == 0.15


@pytest.mark.parametrize("bad", ["1", "-0.1", "x"])
def test_an_audit_rate_outside_0_1_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("AGENTGYM_EXPERIMENT_AUDIT_RATE", bad)
    with pytest.raises(ValidationError, match="experiment_audit_rate"):
        GateSettings()
