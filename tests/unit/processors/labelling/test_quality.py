"""Measured quality on a seeded simulated stream: the online model must beat the rules alone.

Pure and fast (no Kafka): the stream runs through the same engine the Faust agent
uses. Numbers for several seeds: ``python -m agentgym.processors.labelling.evaluate``.
"""

from __future__ import annotations

import pytest

from agentgym.processors.labelling.evaluate import (
    CONFIGURATIONS,
    brier_score,
    evaluate,
    expected_calibration_error,
    main,
)
from agentgym.processors.labelling.simulator import SimConfig, simulate
from agentgym.schemas import AvroCodec

RULES = "rules (fallback base rate)"
MODEL = "rules + logistic regression"


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    cfg = SimConfig(n_traces=4000, seed=11)
    return evaluate(cfg, {name: CONFIGURATIONS[name] for name in (RULES, MODEL)})


def test_the_online_model_beats_the_rules_only_baseline(report) -> None:  # type: ignore[no-untyped-def]
    rules, model = report.quality(RULES), report.quality(MODEL)
    assert report.without_explicit > 0.8 * report.traces  # most runs get no explicit feedback
    assert model.accuracy > rules.accuracy + 0.02, (model, rules)
    assert model.brier < rules.brier - 0.01, (model, rules)
    # on the traces no rule decides, the model against the base rate
    assert model.by_source["model"][1] > rules.by_source["fallback"][1] + 0.05
    assert model.by_source["model"][0] > 0.3 * model.n


def test_calibration_error_is_small(report) -> None:  # type: ignore[no-untyped-def]
    model = report.quality(MODEL)
    assert model.ece < 0.08, model
    assert 0.0 <= model.brier < 0.15


def test_the_drifted_model_version_raises_a_drift_alert(report) -> None:  # type: ignore[no-untyped-def]
    assert report.drift_start_ms is not None
    drifted = [a for a in report.drift_alerts if a["model_version"] == "v2"]
    assert drifted and all(a["timestamp_ms"] > report.drift_start_ms for a in drifted)
    assert all(a["estimate_after"] < a["estimate_before"] for a in drifted)


def test_calibration_metrics() -> None:
    assert brier_score([1.0, 0.0], [True, False]) == 0.0
    assert brier_score([0.5, 0.5], [True, False]) == 0.25
    # perfectly calibrated: 80 % right at confidence 0.8
    assert expected_calibration_error([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0.0)
    # over-confident: 50 % right at 0.9
    assert expected_calibration_error([0.9] * 10, [True] * 5 + [False] * 5) == pytest.approx(0.4)
    assert expected_calibration_error([], []) == 0.0


def test_the_simulated_stream_is_seeded_noisy_and_fits_the_schemas() -> None:
    a, b = simulate(SimConfig(n_traces=300, seed=3)), simulate(SimConfig(n_traces=300, seed=3))
    assert [e.record for e in a.events] == [e.record for e in b.events]
    assert 0.5 < sum(a.truth.values()) / len(a.truth) < 0.85
    assert 0.05 < len(a.explicit) / len(a.truth) < 0.35
    assert [e.time_ms for e in a.events] == sorted(e.time_ms for e in a.events)
    codec = AvroCodec()
    for e in a.events:
        name = "Experience" if e.kind == "experience" else "Feedback"
        codec.encode(name, e.record)
    kinds = {(e.record["kind"], e.record["source"]) for e in a.events if e.kind == "feedback"}
    assert {("rating", "ai"), ("implicit", "system"), ("implicit", "human"), ("comment", "human")} <= kinds


def test_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--traces", "400", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and MODEL in out and RULES in out
