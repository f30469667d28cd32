"""The outcome labeller as a real Faust worker against the real broker.

Each worker is a ``faust -A agentgym.processors.app worker`` subprocess with only the labeller
enabled, its own app id (consumer group, changelog topics) and a short quiet period.
Events go in through the SDK (or raw, for malformed ones); outcomes, dead letters and
drift alerts are read back from their topics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from agentgym.ops.kafka.broker import free_port
from agentgym import AgentGym
from agentgym.schemas import AvroCodec
from tests.kafka_utils import consume_all

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAUST = Path(sys.executable).with_name("faust")
codec = AvroCodec()
QUIET_S = 1.5
START_TIMEOUT_S = 120.0  # a worker's first start: group join, changelog topic creation, recovery


class LabellerWorker:
    """A labeller worker subprocess; its log goes to a file shown when a test fails."""

    def __init__(self, bootstrap: str, app_id: str, home: Path, extra_env: dict[str, str] | None = None) -> None:
        self.bootstrap, self.app_id, self.home = bootstrap, app_id, home
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
        env.update({
            "AGENTGYM_BOOTSTRAP_SERVERS": self.bootstrap,
            "AGENTGYM_PROCESSORS": "labeller",
            "AGENTGYM_APP_ID": self.app_id,
            "AGENTGYM_HOME": str(self.home),
            "AGENTGYM_FAUST_WEB_PORT": str(free_port()),
            "AGENTGYM_LABELLER_QUIET_PERIOD_S": str(QUIET_S),
            "AGENTGYM_LABELLER_TICK_S": "0.2",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        })
        log = self.home / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        self.home.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(FAUST), "-A", "agentgym.processors.app", "worker", "-l", "warn"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def stop(self, timeout_s: float = 60.0) -> None:
        """Graceful stop (SIGTERM: Faust commits offsets and leaves the group), then kill."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def assert_alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"the worker exited:\n{self.log_tail()}"

    def log_tail(self, chars: int = 6000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in self.logs if p.exists())


@pytest.fixture
def start_worker(bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., LabellerWorker]]:
    workers: list[LabellerWorker] = []

    def start(app_id: str | None = None, **extra_env: str) -> LabellerWorker:
        w = LabellerWorker(bootstrap, app_id or f"labeller-test-{uuid.uuid4().hex[:8]}", tmp_path / "worker", extra_env)
        w.start()
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()
    for w in workers:  # a command or join that failed is logged with its traceback
        assert "Traceback" not in w.log_tail(10**7), w.log_tail()


@pytest.fixture
def gym(bootstrap: str, unique: str, tmp_path: Path) -> Iterator[AgentGym]:
    client = AgentGym(bootstrap, tenant_id=f"t-{unique}", agent_id="bot", spool_dir=tmp_path / "spool")
    yield client
    client.close()


def outcomes(bootstrap: str, trace_ids: set[str], expected: int, worker: LabellerWorker,
             timeout_s: float = START_TIMEOUT_S, done: Callable[[list[dict[str, Any]]], bool] | None = None) -> list[dict[str, Any]]:
    """Outcome records of ``trace_ids``, once ``expected`` arrived (and ``done`` holds)."""
    deadline = time.monotonic() + timeout_s
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        worker.assert_alive()
        msgs = consume_all(bootstrap, "gym-outcomes-v1", expected, timeout_s=min(10.0, deadline - time.monotonic()),
                           match=lambda m: m.key() is not None and m.key().decode() in trace_ids)
        got = [codec.decode(m.value(), expected="Outcome").record for m in msgs]
        if len(got) >= expected and (done is None or done(got)):
            return got
    raise AssertionError(f"{len(got)} of {expected} outcomes arrived: {got}\n{worker.log_tail()}")


def latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The highest revision per trace (what storage shows)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["trace_id"] not in out or r["revision"] > out[r["trace_id"]]["revision"]:
            out[r["trace_id"]] = r
    return out


def _experience(gym: AgentGym, **kw: Any) -> str:
    args: dict[str, Any] = {"input": "where is my order?", "output": "it ships Monday", "model_name": "m",
                            "model_version": "v1", "latency_ms": 900.0}
    args.update(kw)
    return gym.record_experience(**args)


def test_explicit_feedback_wins_over_signals(start_worker: Callable[..., LabellerWorker], gym: AgentGym, bootstrap: str) -> None:
    worker = start_worker()
    # the run errored, but the user says it helped: the human wins
    errored_but_liked = _experience(gym, status="error", error="tool timeout", output=None)
    gym.record_feedback(errored_but_liked, thumbs_up=True)
    # the system marked the task complete, but the user rates it 1/5: the human wins
    completed_but_rated_low = _experience(gym)
    gym.record_feedback(completed_but_rated_low, signal="task_completed", source="system")
    gym.record_feedback(completed_but_rated_low, rating=1)
    # an AI judge says good, the user clicks thumbs down: the human wins over the judge too
    judged_good_thumbs_down = _experience(gym)
    gym.record_feedback(judged_good_thumbs_down, rating=9, rating_scale=10, source="ai")
    gym.record_feedback(judged_good_thumbs_down, thumbs_up=False)
    # signals alone: an errored run with no feedback fails by rule
    errored = _experience(gym, status="error", error="boom", output=None)
    assert gym.flush(10) == 0
    ids = {errored_but_liked, completed_but_rated_low, judged_good_thumbs_down, errored}
    got = latest(outcomes(bootstrap, ids, 4, worker))
    assert set(got) == ids
    for trace_id, label in ((errored_but_liked, "success"), (completed_but_rated_low, "failure"), (judged_good_thumbs_down, "failure")):
        o = got[trace_id]
        assert (o["label"], o["labeller"]) == (label, "human"), o
        assert o["confidence"] >= 0.9 and o["reasons"], o
    o = got[errored]
    assert (o["label"], o["labeller"]) == ("failure", "rule:status_error"), o
    assert 0.5 < o["confidence"] < 1 and any("status_error" in r for r in o["reasons"]), o
    for o in got.values():
        assert (o["tenant_id"], o["agent_id"], o["model_version"]) == (gym.tenant_id, "bot", "v1")
        assert o["event_id"] == f"{o['trace_id']}:outcome:{o['revision']}"


def test_late_correction_revises_an_earlier_success(start_worker: Callable[..., LabellerWorker], gym: AgentGym, bootstrap: str) -> None:
    worker = start_worker()
    trace = _experience(gym, assignment={"experiment_id": "exp-1", "variant": "B", "unit_type": "user", "unit_id": "u9"})
    gym.record_feedback(trace, signal="task_completed", source="system")
    assert gym.flush(10) == 0
    first = outcomes(bootstrap, {trace}, 1, worker)
    assert len(first) == 1
    o0 = first[0]
    assert (o0["revision"], o0["label"], o0["labeller"]) == (0, "success", "rule:task_completed"), o0
    assert (o0["experiment_id"], o0["variant"], o0["unit_id"]) == ("exp-1", "B", "u9")
    # hours later in real life: the user corrects the answer
    gym.record_feedback(trace, correction="It ships on Tuesday, from the Oslo warehouse.")
    assert gym.flush(10) == 0
    both = outcomes(bootstrap, {trace}, 2, worker)
    assert sorted(o["revision"] for o in both) == [0, 1], both
    o1 = latest(both)[trace]
    assert (o1["revision"], o1["label"], o1["labeller"]) == (1, "failure", "human"), o1
    assert o1["corrected_output"] == "It ships on Tuesday, from the Oslo warehouse."
    assert o1["confidence"] >= 0.95
    assert (o1["experiment_id"], o1["variant"], o1["unit_id"]) == ("exp-1", "B", "u9")
    assert o1["event_id"] != o0["event_id"]


def _checkpointed(bootstrap: str, app_id: str, tenant_id: str, n_learned: int, timeout_s: float = 30.0) -> bool:
    """Whether the learners changelog holds a checkpoint of the tenant's learner with ``n_learned`` examples."""
    from agentgym.processors.labelling import AgentLearner

    def match(m: Any) -> bool:
        return m.key() is not None and tenant_id.encode() in m.key() and m.value() is not None \
            and AgentLearner.from_bytes(m.value()).model.n_learned == n_learned

    return bool(consume_all(bootstrap, f"{app_id}-labeller-learners-changelog", 1, timeout_s=timeout_s, match=match))


def test_restart_keeps_join_state_and_the_model(start_worker: Callable[..., LabellerWorker], gym: AgentGym,
                                                 bootstrap: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default:\n  model_min_examples: 5\n")
    app_id = f"labeller-restart-{uuid.uuid4().hex[:8]}"
    env = {"AGENTGYM_LABELLER_RULES_PATH": str(rules)}
    worker = start_worker(app_id, **env)
    # the online model learns from explicitly labelled runs (no signals, so only features)
    labelled = []
    for i in range(8):
        ok = i % 2 == 0
        t = _experience(gym, latency_ms=500.0 if ok else 9000.0, completion_tokens=50 if ok else 900)
        gym.record_feedback(t, thumbs_up=ok)
        labelled.append(t)
    # a run whose feedback comes only after the restart
    pending = _experience(gym, model_version="v-restart", latency_ms=600.0,
                          assignment={"experiment_id": "exp-r", "variant": "A", "unit_type": "session", "unit_id": "s1"})
    assert gym.flush(10) == 0
    before = latest(outcomes(bootstrap, set(labelled) | {pending}, 9, worker))
    assert before[pending]["revision"] == 0 and before[pending]["label"] == "unknown", before[pending]
    assert {before[t]["labeller"] for t in labelled} == {"human"}
    # the learner was checkpointed to its changelog (it is what the next worker restores)
    assert _checkpointed(bootstrap, app_id, gym.tenant_id, 8), worker.log_tail()

    worker.stop()
    assert worker.proc is not None and worker.proc.returncode is not None
    worker.start()  # same app id: same consumer group and changelogs

    gym.record_feedback(pending, thumbs_up=False)
    fresh = _experience(gym, latency_ms=550.0, completion_tokens=60)  # no feedback, no signals: the model decides
    assert gym.flush(10) == 0
    after = outcomes(bootstrap, {pending, fresh}, 3, worker, done=lambda rs: latest(rs).get(pending, {}).get("revision") == 1)
    o = latest(after)[pending]
    # joined with the experience recorded before the restart, and the revision counter survived
    assert (o["revision"], o["label"], o["labeller"]) == (1, "failure", "human"), o
    assert (o["model_version"], o["experiment_id"], o["variant"], o["unit_id"]) == ("v-restart", "exp-r", "A", "s1"), o
    # the model's state survived too: it labels with all 8 examples learnt before the restart
    m = latest(after)[fresh]
    assert m["labeller"] == "model:river-logistic-regression", m
    # (@9 when the pending trace's revision, learnt after the restart, reached the learner first)
    assert int(m["labeller_version"].rsplit("@", 1)[1]) >= 8, m
    assert m["label"] in ("success", "failure") and 0.5 <= m["confidence"] <= 1.0


def test_malformed_feedback_goes_to_dead_letters_and_labelling_goes_on(
    start_worker: Callable[..., LabellerWorker], gym: AgentGym, bootstrap: str, unique: str
) -> None:
    worker = start_worker()
    garbage_key = f"garbage-{unique}"
    invalid_trace = f"invalid-{unique}"
    invalid = codec.encode("Feedback", {
        "event_id": f"fb-{unique}", "tenant_id": gym.tenant_id, "agent_id": "bot", "trace_id": invalid_trace,
        "timestamp_ms": int(time.time() * 1000), "kind": "rating", "source": "human", "rating": 9.0, "rating_scale": 5.0,
    })
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce("gym-feedback-v1", b"\x00\x01not avro at all", garbage_key.encode())
    p.produce("gym-feedback-v1", invalid, invalid_trace.encode())
    assert p.flush(10) == 0
    # the worker keeps labelling after the bad input
    trace = _experience(gym)
    gym.record_feedback(trace, thumbs_up=True)
    assert gym.flush(10) == 0
    o = latest(outcomes(bootstrap, {trace}, 1, worker))[trace]
    assert (o["label"], o["labeller"]) == ("success", "human")

    keys = {garbage_key, invalid_trace}
    msgs = consume_all(bootstrap, "gym-deadletter-v1", 2, timeout_s=60, match=lambda m: m.key() is not None and m.key().decode() in keys)
    letters = {m.key().decode(): codec.decode(m.value(), expected="DeadLetter").record for m in msgs}
    assert set(letters) == keys, worker.log_tail()
    sources = {m.key().decode(): m for m in consume_all(bootstrap, "gym-feedback-v1", 2, match=lambda m: m.key() is not None and m.key().decode() in keys)}
    for key, letter in letters.items():
        src = sources[key]
        assert letter["source_topic"] == "gym-feedback-v1" and letter["processor"] == "labeller"
        assert (letter["source_partition"], letter["source_offset"]) == (src.partition(), src.offset())
        assert letter["event_id"] == f"gym-feedback-v1:{src.partition()}:{src.offset()}"
        assert letter["payload"] == src.value() and letter["key"] == key.encode()
    assert letters[garbage_key]["error_type"] == "BadMarkerError"
    assert "marker" in letters[garbage_key]["reason"]
    assert letters[invalid_trace]["error_type"] == "InvalidEventError"
    assert "rating" in letters[invalid_trace]["reason"] and "outside" in letters[invalid_trace]["reason"]
    assert letters[invalid_trace]["tenant_id"] == gym.tenant_id
    worker.assert_alive()


def test_a_drop_in_success_rate_emits_a_drift_alert(start_worker: Callable[..., LabellerWorker], gym: AgentGym, bootstrap: str) -> None:
    worker = start_worker(AGENTGYM_LABELLER_DRIFT_GRACE_PERIOD="10")
    version = f"v-drift-{uuid.uuid4().hex[:6]}"
    good = []
    for _ in range(48):
        t = _experience(gym, model_version=version)
        gym.record_feedback(t, signal="task_completed", source="system")
        good.append(t)
    assert gym.flush(10) == 0
    outcomes(bootstrap, set(good), len(good), worker)  # the good phase is labelled first
    bad = [_experience(gym, model_version=version, status="error", error="regression", output=None) for _ in range(48)]
    assert gym.flush(10) == 0
    outcomes(bootstrap, set(bad), len(bad), worker)
    msgs = consume_all(bootstrap, "gym-drift-v1", 1, timeout_s=60, match=lambda m: m.key() == version.encode())
    alerts = [codec.decode(m.value(), expected="DriftAlert").record for m in msgs]
    assert alerts, worker.log_tail()
    a = alerts[0]
    assert (a["tenant_id"], a["agent_id"], a["model_version"], a["metric"]) == (gym.tenant_id, "bot", version, "success_rate")
    assert a["detector"].startswith("ADWIN(")
    assert a["estimate_before"] > 0.8 and a["estimate_after"] < a["estimate_before"], a
    assert a["n"] > 48
