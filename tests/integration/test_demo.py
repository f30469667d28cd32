"""The README's first command, reduced: ``agentgym demo --fast`` on a fresh home, end to end.

The whole loop runs for real: Kafka, the Faust worker (sink, labeller, experiments,
dataset builder), the trainer service (Ray Train, gate, promoter), LM-driven agents
and simulated users. The test asserts what the issues promise, phase by phase: a
fine-tuned model promoted by the experiment's sequential decision, at least 10 points
better than the base on held-out requests; after the traffic drifts, the labeller's
drift alert and a second promotion, trained from the champion, at least 10 points
better on the new traffic; a deliberately broken candidate rolled back automatically
while the champion keeps serving -- and that the demo stops everything it started,
also when interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.long  # minutes: scheduled first (tests/conftest.py)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    env["AGENTGYM_HOME"] = str(home)
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


_DEMO_LIMIT_S = 1500  # the demo's own limit in this test (its --fast loop gives up after 900 s)


def _phase(result: dict, n: int) -> dict:
    [p] = [p for p in result["phases"] if p["phase"] == n]
    return p


# above the demo's own limit (the suite's default is 600 s per test): the demo's timeout,
# which stops its children, must fire first
@pytest.mark.timeout(_DEMO_LIMIT_S + 300)
def test_the_loop_closes_three_times_improvement_drift_recovery_and_a_rollback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = subprocess.run([sys.executable, "-m", "agentgym.ops.cli", "demo", "--fast"], env=_env(home),
                         capture_output=True, text=True, timeout=_DEMO_LIMIT_S, cwd=REPO)
    # the run's account and result, kept with the other CI artefacts ($AGENTGYM_ARTIFACTS, else <repo>/artifacts)
    artifacts = Path(os.environ.get("AGENTGYM_ARTIFACTS") or REPO / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "demo-fast.log").write_text(out.stdout + "\n--- stderr ---\n" + out.stderr[-20000:])
    if (home / "demo" / "result.json").is_file():
        (artifacts / "demo-fast-result.json").write_text((home / "demo" / "result.json").read_text())
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]
    result = json.loads((home / "demo" / "result.json").read_text())
    assert [p["phase"] for p in result["phases"]] == [1, 2, 3], result["phases"]
    assert "agents idle while job-" in out.stdout  # --fast: the traffic waited while a job trained
    one, two, three = (_phase(result, n) for n in (1, 2, 3))

    # phase 1: promotion by the experiment's own decision, applied to the registry, +10 pp held out
    assert result["promoted"] is True and one["promoted"] is True
    assert one["decision"].startswith("promote_winner") and one["status"] == "concluded", one
    assert one["control_version"] == result["base_version"] != one["winner_version"] == one["candidate_version"]
    assert one["heldout"]["diff"] >= 0.10 and one["heldout"]["ci"][0] > 0.0, one["heldout"]
    assert result["improvement"] == one["heldout"]["diff"] and result["winner_version"] == one["winner_version"]

    # phase 2: the traffic changed, the drift detector alerted on a drop, and a candidate trained from the
    # champion was promoted, +10 pp held out on the new traffic, and better on the new kind of request
    alert = result["drift"]["alert"]
    assert alert is not None and alert["estimate_after"] < alert["estimate_before"], result["drift"]
    assert alert["t_s"] >= result["drift"]["started_s"]
    assert two["promoted"] is True and two["decision"].startswith("promote_winner"), two
    assert two["control_version"] == one["winner_version"] and two["parent_version"] == one["winner_version"], two
    assert two["init_from"] == "champion", two
    assert two["heldout"]["diff"] >= 0.10 and two["heldout"]["ci"][0] > 0.0, two["heldout"]
    new_kind = two["heldout"]["new_kind"]
    assert new_kind["candidate"]["rate"] > new_kind["control"]["rate"] + 0.2, new_kind

    # phase 3: the injected bad candidate is rolled back by the live test; the champion keeps serving
    assert three["injected"] and "broken" in three["dataset_id"], three
    assert three["control_version"] == two["winner_version"] and three["parent_version"] == two["winner_version"], three
    assert three["status"] == "rolled_back" and three["decision"].startswith("rollback"), three
    assert three["registry_status"] == "retired" and three["registry_reason"].startswith("rolled back by experiment"), three
    assert result["final_champion"] == two["winner_version"]
    assert three["heldout"]["diff"] < 0.0, three["heldout"]

    # the pipeline really carried the traffic: ClickHouse held every experience
    assert result["stored_experiences"] == result["runs"] > 0
    # the audit sample (default rate 0.2) of the first experiment: simulated reviewers' gold labels, the
    # experiment's labelled and corrected (prediction-powered) estimates beside the simulator's truth
    audit = result["audit"]
    assert result["audit_rate"] == audit["audit_rate"] == 0.2, audit
    assert audit["estimator"] == "prediction_powered", audit
    assert audit["reviews_posted"] > 0 and audit["reviews_stored"] == audit["reviews_posted"], audit
    assert 0 <= audit["reviews_wrong"] < audit["reviews_posted"], audit
    assert 0 < audit["audit_units"] <= audit["reviews_posted"], audit
    for arm in ("control", "treatment"):  # the decision needed the engine's 30 audited units per arm
        a = audit["arms"][arm]
        assert 30 <= a["m"] <= a["n"] and a["truth_units"] > 0, audit
        assert 0.0 <= a["labelled"] <= 1.0 and 0.0 <= a["truth"] <= 1.0 and a["corrected"] is not None, audit
    lo, hi = audit["corrected_ci"]
    assert lo <= audit["corrected_diff"] <= hi, audit
    assert audit["corrected_diff"] > 0 and audit["labelled_ci"] is not None and audit["truth_diff"] is not None, audit
    assert "corrected (PPI)" in out.stdout and f"reviewers posted {audit['reviews_posted']} gold labels" in out.stdout
    # the account names each phase as it happens
    for line in ("phase 2 (drift)", "drift alert", "phase 3 (prepared): the demo injects a deliberately broken dataset",
                 f"registry: {three['candidate_version']} retired"):
        assert line in out.stdout, line
    # the report: self-contained; the three experiments' confidence sequences, the lineage, the drift alert
    html = Path(result["report_path"]).read_text()
    assert html.count("<svg") >= 7 and one["winner_version"] in html and two["winner_version"] in html
    assert "Lineage: dataset" in html and "Drift alerts" in html and three["experiment_id"] in html
    assert "Audit sample: labelled against corrected estimates" in html and "corrected (prediction-powered)" in html
    # everything it started is stopped
    assert "stopped the trainer process" in out.stdout and "stopped the processors process" in out.stdout
    assert "stopped the demo's Kafka broker" in out.stdout
    assert not (home / "demo" / "pids.json").exists()
    assert not (home / "demo" / "kafka-data" / "broker.pid").exists()


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "agentgym.ops.cli", "demo", "--fast"], env=_env(home), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    pids: dict[str, int] = {}
    broker_pid = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until the stack is up: interrupt the base model's pre-training
            lines.append(line)
            if "2/5" in line:
                break
        assert lines and "2/5" in lines[-1], "the demo ended before step 2/5:\n" + "".join(lines)[-3000:]
        pids = json.loads((home / "demo" / "pids.json").read_text())
        broker_pid = int((home / "demo" / "kafka-data" / "broker.pid").read_text())
        assert set(pids) == {"processors", "trainer"} and all(_alive(p) for p in pids.values())
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=180)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted" in out
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in [*pids.values(), broker_pid]):
        time.sleep(0.2)
    assert not any(_alive(p) for p in [*pids.values(), broker_pid]), out[-3000:]
    assert not (home / "demo" / "pids.json").exists()


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group ``pgid`` is still running (zombies aside)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


@pytest.mark.timeout(120)
def test_sigkill_of_the_demo_leaves_no_child_running(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup in the demo: its watchdog must stop the broker and the worker."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "agentgym.ops.cli", "demo", "--fast"], env=_env(home), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    groups: list[int] = []
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the broker is up and the worker is being started
            lines.append(line)
            if "Kafka 4.1 (KRaft) on" in line:
                break
        pids_file = home / "demo" / "pids.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "processors" not in (json.loads(pids_file.read_text()) if pids_file.exists() else {}):
            time.sleep(0.1)
        groups = [*json.loads(pids_file.read_text()).values(), int((home / "demo" / "kafka-data" / "broker.pid").read_text())]
        assert len(groups) == 2 and all(_group_alive(g) for g in groups), "".join(lines)
        proc.kill()  # SIGKILL: no finally, no atexit in the demo
        proc.wait(timeout=10)
        deadline = time.monotonic() + 45  # the watchdog's grace (10 s) for SIGTERM, then SIGKILL
        while time.monotonic() < deadline and any(_group_alive(g) for g in groups):
            time.sleep(0.2)
        assert not [g for g in groups if _group_alive(g)], "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        for g in groups:  # never leave a broker behind, even when the assertion failed
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass
