"""``agentgym experiments``: option parsing and the watch view (no broker)."""

from __future__ import annotations

import json

import click
import pytest

from agentgym.ops.commands.experiments import parse_guardrail, parse_variant, render_snapshots


def test_parse_variant() -> None:
    assert parse_variant("control=v3") == ("control", "v3", 1.0)
    assert parse_variant("treatment=v4:0.25") == ("treatment", "v4", 0.25)
    for bad in ("control", "=v3", "a=v3:x"):
        with pytest.raises(click.BadParameter):
            parse_variant(bad)


def test_parse_guardrail() -> None:
    assert parse_guardrail("latency_ms:0.1") == {"name": "latency_ms", "limit": 0.1}
    assert parse_guardrail("latency_ms:0.1:cap=30000:direction=decrease") == {
        "name": "latency_ms", "limit": 0.1, "cap": 30000.0, "direction": "decrease"}
    for bad in ("latency_ms", "latency_ms:x", "latency_ms:0.1:colour=red"):
        with pytest.raises(click.BadParameter):
            parse_guardrail(bad)


def test_render_snapshots_shows_estimates_intervals_p_values_n_and_status() -> None:
    snap = {
        "experiment_id": "exp1", "timestamp_ms": 1_700_000_000_000, "metric": "success_rate", "role": "primary",
        "status": "running", "config_version": 2, "alpha": 0.05, "mixing_rho": 0.06, "srm_p_value": 0.9,
        "srm_chi_square_p_value": 0.7, "message": "inconclusive",
        "arms": [{"variant": "control", "n": 1200, "sum": 600.0, "sum_squares": 600.0},
                 {"variant": "treatment", "n": 1180, "sum": 650.0, "sum_squares": 650.0}],
        "comparisons": [{"variant": "treatment", "control": "control", "estimate": 0.0508, "ci_low": -0.01, "ci_high": 0.11,
                         "relative_estimate": 0.10, "relative_ci_low": -0.02, "relative_ci_high": 0.22,
                         "p_value": 0.21, "fixed_horizon_p_value": 0.012}],
        "details_json": json.dumps({"look": 7, "comparisons": {"treatment": {"reason": "ok", "adjusted_p_value": 0.21}}}),
    }
    out = render_snapshots({"success_rate": snap})
    for text in ("exp1", "config v2", "look 7", "status running", "1,200", "+0.0508", "[-0.01, +0.11]", "+10.0%", "p 0.21",
                 "fixed-horizon 0.012", "inconclusive"):
        assert text in out, text
    assert render_snapshots({}) == "no statistics yet"
