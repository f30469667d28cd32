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


def _ppi_snapshot() -> dict[str, object]:
    pp = {"control": {"reason": "ok", "n": 400, "m": 41, "label_mean": 0.55, "correction": -0.05, "estimate": 0.50,
                      "variance": 0.001, "gold_mean": 0.49},
          "treatment": {"reason": "ok", "n": 410, "m": 39, "label_mean": 0.88, "correction": -0.08, "estimate": 0.80,
                        "variance": 0.001, "gold_mean": 0.79}}
    row = {"variant": "treatment", "control": "control", "relative_estimate": None, "relative_ci_low": None,
           "relative_ci_high": None, "fixed_horizon_p_value": None}
    return {
        "experiment_id": "exp1", "timestamp_ms": 1_700_000_000_000, "metric": "success_rate", "role": "primary",
        "status": "running", "config_version": 1, "alpha": 0.05, "mixing_rho": 0.06, "srm_p_value": 0.9,
        "srm_chi_square_p_value": 0.7, "message": "inconclusive",
        "arms": [{"variant": "control", "n": 400, "sum": 220.0, "sum_squares": 220.0},
                 {"variant": "treatment", "n": 410, "sum": 361.0, "sum_squares": 361.0}],
        "comparisons": [{**row, "estimate": 0.30, "ci_low": 0.12, "ci_high": 0.48, "p_value": 0.003}],
        "labelled_comparisons": [{**row, "estimate": 0.33, "ci_low": 0.27, "ci_high": 0.39, "p_value": 0.0001}],
        "estimator": "prediction_powered", "audit_units": 80, "variance_reduction": None,
        "details_json": json.dumps({"look": 3, "comparisons": {"treatment": {"reason": "ok"}}, "prediction_powered": pp}),
    }


def test_watch_shows_the_corrected_and_the_plain_labelled_estimate_when_an_audit_sample_exists() -> None:
    out = render_snapshots({"success_rate": _ppi_snapshot()})
    assert "estimator prediction_powered" in out and "audited units 80" in out
    control = next(line for line in out.splitlines() if line.strip().startswith("control"))
    assert "labelled 0.55" in control and "corrected 0.5" in control and "audited 41" in control and "-0.05" in control
    assert "corrected: treatment - control: +0.3 [+0.12, +0.48]" in out
    assert "labelled: treatment - control: +0.33 [+0.27, +0.39]" in out and "(not decided on)" in out


def test_watch_shows_cuped_variance_reduction_and_leaves_plain_snapshots_alone() -> None:
    snap = {**_ppi_snapshot(), "estimator": "cuped", "audit_units": 0, "variance_reduction": 0.42,
            "details_json": json.dumps({"look": 3, "comparisons": {}})}
    out = render_snapshots({"success_rate": snap})
    assert "estimator cuped" in out and "variance reduction 42.0%" in out and "CUPED: treatment - control" in out
    assert "unadjusted: treatment - control: +0.33" in out and "audited" not in out
    plain = {**snap, "estimator": "labelled", "labelled_comparisons": [], "variance_reduction": None}
    out = render_snapshots({"success_rate": plain})
    assert "estimator" not in out and "corrected" not in out and "unadjusted" not in out


def _create(*args: str) -> click.testing.Result:
    from click.testing import CliRunner

    from agentgym.ops.commands.experiments import experiments

    return CliRunner().invoke(experiments, ["create", "e1", "--agent", "bot", "--variant", "control=v1", "--variant", "treatment=v2",
                                            "--bootstrap-servers", "127.0.0.1:1", *args])


@pytest.mark.parametrize(("args", "message"), [
    (("--audit-rate", "1"), "--audit-rate"),
    (("--audit-rate", "-0.1"), "--audit-rate"),
    (("--cuped-lookback-days", "0"), "--cuped-lookback-days"),
    (("--cuped-lookback-days", "121"), "--cuped-lookback-days"),
])
def test_create_refuses_audit_and_cuped_options_out_of_range(args: tuple[str, ...], message: str) -> None:
    result = _create(*args)
    assert result.exit_code == 2 and message in result.output


def test_create_refuses_cuped_on_a_metric_the_experiment_does_not_have() -> None:
    result = _create("--cuped", "latency_ms")  # refused by the configuration's check, before any broker is reached
    assert result.exit_code == 1 and "cuped_metrics" in result.output and "latency_ms" in result.output


def test_create_options_reach_the_configuration() -> None:
    from agentgym.ops.commands.experiments import create

    params = {p.name: p for p in create.params}
    assert params["audit_rate"].default == 0.0 and params["cuped_lookback_days"].default == 28 and params["cuped_metrics"].multiple
