"""A/B experiments end to end: the real broker, the real Faust worker (sink + experiments),
the SDK assigning and following the live configuration, ``agentgym experiments`` and ClickHouse.

Outcomes are produced to ``gym-outcomes-v1`` directly (as the labeller would, with the
assignment's experiment, variant and unit), so these tests do not depend on the labeller.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from agentgym.ops.cli import main as cli
from agentgym.processors.store import StoreSettings, open_reader
from agentgym import AgentGym, Assignment
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests.kafka_utils import TopicTail
from tests.workers import Worker, wait_for, worker_env

pytestmark = pytest.mark.integration

CODEC = AvroCodec()
OUTCOMES = TOPICS["outcomes"].name


@pytest.fixture
def worker(bootstrap: str, unique: str, tmp_path: Path) -> Iterator[Worker]:
    home = tmp_path / "home"
    env = worker_env(bootstrap, home, f"exp-{unique}", "sink,experiments",
                     AGENTGYM_EXPERIMENTS_SNAPSHOT_INTERVAL_S="1", AGENTGYM_SINK_GROUP=f"sink-{unique}",
                     AGENTGYM_SINK_BATCH_MS="100")
    w = Worker(env, tmp_path / "worker.log").start()
    w.home = home  # type: ignore[attr-defined]
    yield w
    w.stop()


@pytest.fixture
def gym(bootstrap: str, unique: str, tmp_path: Path) -> Iterator[AgentGym]:
    with AgentGym(bootstrap, f"t-{unique}", "bot", spool_dir=tmp_path / "spool", linger_ms=5) as g:
        yield g


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _create(bootstrap: str, exp: str, tenant: str, *extra: str) -> None:
    out = _invoke("experiments", "create", exp, "--agent", "bot", "--tenant", tenant, "--bootstrap-servers", bootstrap,
                  "--variant", "control=model-v1", "--variant", "treatment=model-v2", "--metric", "success_rate",
                  "--min-samples", "100", *extra)
    assert f"created {exp} (running" in out


def _traffic(gym: AgentGym, exp: str, units: int, p: dict[str, float], latency: dict[str, float], seed: int) -> dict[str, int]:
    """Simulated agents: each unit is assigned, served, recorded, and its outcome labelled."""
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": gym.settings.bootstrap_servers, "linger.ms": 5})
    served: dict[str, int] = {}
    for i in range(units):
        unit = f"user-{i}"
        a = gym.assign(exp, unit)
        assert isinstance(a, Assignment) and a.active
        served[a.model_version] = served.get(a.model_version, 0) + 1
        trace = gym.record_experience(input="hi", output="hello", model_name="llama", model_version=a.model_version,
                                      latency_ms=max(1.0, rng.gauss(latency[a.variant], 60.0)), assignment=a, user_id=unit)
        label = "success" if rng.random() < p[a.variant] else "failure"
        outcome = {"event_id": f"o-{trace}", "tenant_id": gym.tenant_id, "agent_id": gym.agent_id, "trace_id": trace,
                   "timestamp_ms": int(time.time() * 1000), "label": label, "confidence": 0.9, "labeller": "test",
                   "model_version": a.model_version, "experiment_id": exp, "variant": a.variant, "unit_id": unit}
        producer.produce(OUTCOMES, CODEC.encode("Outcome", outcome), trace.encode())
        producer.poll(0)
    assert producer.flush(30) == 0
    assert gym.flush(30) == 0
    return served


def _decision(bootstrap: str, exp: str, worker: Worker, timeout_s: float = 90.0) -> dict[str, Any]:
    found: list[Any] = []
    with TopicTail(bootstrap, TOPICS["decisions"].name, match=lambda m: m.key() == exp.encode()) as tail:
        def got() -> bool:
            found.extend(tail.read())
            return bool(found)

        wait_for(got, timeout_s, f"a decision on {exp}", worker, every=0.5)
    return CODEC.decode(found[0].value()).record


def _clickhouse_rows(worker: Worker, sql: str, params: dict[str, str]) -> list[tuple[Any, ...]]:
    reader = open_reader(settings=StoreSettings(clickhouse_url=f"chdb://{worker.home / 'clickhouse'}"))  # type: ignore[attr-defined]
    try:
        return list(reader.query(sql, params).rows)
    finally:
        reader.close()


def test_a_truly_better_variant_is_promoted(bootstrap: str, worker: Worker, gym: AgentGym, unique: str) -> None:
    exp = f"exp-better-{unique}"
    _create(bootstrap, exp, gym.tenant_id, "--guardrail", "latency_ms:0.5:cap=10000")
    follower = gym.follow_experiments(wait_s=20)
    assert wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")

    served = _traffic(gym, exp, 700, p={"control": 0.45, "treatment": 0.75}, latency={"control": 800.0, "treatment": 800.0}, seed=1)
    assert 250 < served["model-v2"] < 450  # the 50/50 split

    decision = _decision(bootstrap, exp, worker)
    assert decision["action"] == "promote_winner" and decision["winner"] == "treatment", decision
    evidence = json.loads(decision["evidence_json"])
    primary = evidence["metrics"]["success_rate"]
    assert primary["arms"]["control"]["n"] >= 100 and primary["arms"]["treatment"]["n"] >= 100
    comp = primary["comparisons"][0]
    assert comp["adjusted_p_value"] <= 0.05 and comp["state"]["interval"][0] > 0
    assert evidence["metrics"]["latency_ms"]["comparisons"][0]["guardrail"]["status"] == "holds"

    # the live configuration now sends everyone to the winner, and the running SDK follows it
    wait_for(lambda: (follower.get(exp) or {}).get("status") == "concluded", 15, "the SDK to see the promotion", worker)
    assert {gym.assign(exp, f"user-{i}").model_version for i in range(50)} == {"model-v2"}  # type: ignore[union-attr]

    # ops see it: the stats topic through `watch`, the configuration through `list`
    watched = _invoke("experiments", "watch", exp, "--once", "--bootstrap-servers", bootstrap)
    assert "success_rate (primary)" in watched and "treatment - control" in watched and "latency_ms (guardrail)" in watched
    listed = _invoke("experiments", "list", "--all", "--bootstrap-servers", bootstrap)
    assert exp in listed and "concluded" in listed

    # and ClickHouse holds the configuration versions, the snapshots and the decision
    t = {"t": gym.tenant_id, "e": exp}

    def stored() -> bool:
        rows = _clickhouse_rows(worker, "SELECT (SELECT count() FROM v_decisions WHERE tenant_id = {t:String} AND experiment_id = {e:String}),"
                                        " (SELECT count() FROM v_stats_snapshots WHERE experiment_id = {e:String}),"
                                        " (SELECT status FROM v_experiments WHERE experiment_id = {e:String} LIMIT 1)", t)
        return rows[0][0] == 1 and rows[0][1] >= 2 and rows[0][2] == "concluded"

    wait_for(stored, 60, "decisions, snapshots and the concluded configuration in ClickHouse", worker, every=1.0)


def test_a_guardrail_breach_rolls_back_and_the_running_sdk_honours_it(bootstrap: str, worker: Worker, gym: AgentGym, unique: str) -> None:
    exp = f"exp-slow-{unique}"
    _create(bootstrap, exp, gym.tenant_id, "--guardrail", "latency_ms:0.2")
    follower = gym.follow_experiments(wait_s=20)
    assert wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")
    # a unit the running agent serves from the treatment until the rollback
    treated = next(f"user-{i}" for i in range(100) if gym.assign(exp, f"user-{i}").variant == "treatment")  # type: ignore[union-attr]

    _traffic(gym, exp, 700, p={"control": 0.6, "treatment": 0.6}, latency={"control": 800.0, "treatment": 1600.0}, seed=2)

    decision = _decision(bootstrap, exp, worker)
    seen_decision = time.monotonic()
    assert decision["action"] == "rollback" and "latency_ms" in decision["reason"], decision
    guard = json.loads(decision["evidence_json"])["metrics"]["latency_ms"]["comparisons"][0]["guardrail"]
    assert guard["status"] == "breached" and guard["degradation"]["estimate"] > 0.2

    # the running client switches the treated unit back to the control within seconds
    wait_for(lambda: gym.assign(exp, treated).variant == "control", 10, "the SDK to honour the rollback", worker, every=0.05)  # type: ignore[union-attr]
    assert time.monotonic() - seen_decision < 10
    a = gym.assign(exp, treated)
    assert a is not None and a.model_version == "model-v1" and a.status == "rolled_back" and not a.active
    cfg = follower.get(exp)
    assert cfg is not None and cfg["config_version"] == 2 and cfg["updated_by"] == "agentgym-experiments"


class _Snapshots:
    """The latest StatsSnapshot of one experiment per metric, following gym-experiment-stats-v1."""

    def __init__(self, bootstrap: str, exp: str) -> None:
        self.tail = TopicTail(bootstrap, TOPICS["experiment-stats"].name, match=lambda m: m.key() == exp.encode())
        self.latest: dict[str, dict[str, Any]] = {}

    def get(self, metric: str) -> dict[str, Any] | None:
        for m in self.tail.read():
            rec = CODEC.decode(m.value()).record
            seen = self.latest.get(rec["metric"])
            if seen is None or rec["timestamp_ms"] >= seen["timestamp_ms"]:
                self.latest[rec["metric"]] = rec
        return self.latest.get(metric)

    def close(self) -> None:
        self.tail.close()


def test_statistics_survive_a_worker_crash(bootstrap: str, worker: Worker, gym: AgentGym, unique: str, tmp_path: Path) -> None:
    """SIGKILL mid-experiment: the restarted worker restores units and partials from the changelogs,
    so units seen before the crash are neither lost nor counted again."""
    exp = f"exp-crash-{unique}"
    _create(bootstrap, exp, gym.tenant_id, "--min-samples", "100000")  # never decides: we only count
    follower = gym.follow_experiments(wait_s=20)
    assert wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")

    snapshots = _Snapshots(bootstrap, exp)

    def units_counted() -> int:
        snap = snapshots.get("success_rate")
        return sum(a["n"] for a in snap["arms"]) if snap else -1

    _traffic(gym, exp, 200, p={"control": 0.5, "treatment": 0.5}, latency={"control": 800.0, "treatment": 800.0}, seed=3)
    wait_for(lambda: units_counted() == 200, 60, "200 units in a snapshot", worker, every=0.5)
    worker.kill()

    restarted = Worker(worker.env, tmp_path / "worker-restarted.log").start()
    try:
        # units 100..299: the first 100 were seen before the crash (their new outcomes are not first ones)
        rng = random.Random(4)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(100, 300):
            a = gym.assign(exp, f"user-{i}")
            assert a is not None
            trace = gym.record_experience(input="hi", output="ok", model_name="llama", model_version=a.model_version,
                                          latency_ms=800.0, assignment=a)
            rec = {"event_id": f"o-{trace}", "tenant_id": gym.tenant_id, "agent_id": "bot", "trace_id": trace,
                   "timestamp_ms": int(time.time() * 1000), "label": rng.choice(["success", "failure"]), "confidence": 1.0,
                   "labeller": "test", "experiment_id": exp, "variant": a.variant, "unit_id": f"user-{i}"}
            producer.produce(OUTCOMES, CODEC.encode("Outcome", rec), trace.encode())
        assert producer.flush(30) == 0 and gym.flush(30) == 0
        try:
            wait_for(lambda: units_counted() == 300, 90, "300 units after the restart", restarted, every=1.0)
        except AssertionError as exc:
            raise AssertionError(f"the latest snapshot: {snapshots.latest.get('success_rate')}\n{exc}") from None
        time.sleep(3)  # a few more looks: the count stays put
        assert units_counted() == 300
    finally:
        restarted.stop()
        snapshots.close()


def test_a_better_rated_variant_is_promoted_on_the_rating_metric(bootstrap: str, worker: Worker, gym: AgentGym, unique: str) -> None:
    """Feedback carries no assignment: the processor joins each rating to its trace's experience
    (also when the feedback is produced first), counts human ratings only, and promotes on them."""
    exp = f"exp-rating-{unique}"
    _create(bootstrap, exp, gym.tenant_id, "--metric", "rating")
    follower = gym.follow_experiments(wait_s=20)
    assert wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")
    assert (follower.get(exp) or {})["primary_metric"]["name"] == "rating"

    rng = random.Random(5)
    stars = {"control": 3.0, "treatment": 3.8}
    units = []
    for i in range(600):
        a = gym.assign(exp, f"user-{i}")
        assert isinstance(a, Assignment) and a.active
        units.append((f"user-{i}", a, f"tr-{unique}-{i}", min(5.0, max(1.0, round(rng.gauss(stars[a.variant], 1.0))))))
    # the treatment's ratings arrive before their experiences: the worker holds them until the experiences come
    for _unit, a, trace, rating in units:
        if a.variant == "treatment":
            gym.record_feedback(trace, rating=rating, rating_scale=5.0)
    assert gym.flush(30) == 0
    time.sleep(2.0)
    for unit, a, trace, rating in units:
        gym.record_experience(input="hi", output="hello", model_name="llama", model_version=a.model_version,
                              latency_ms=800.0, assignment=a, user_id=unit, trace_id=trace)
        if a.variant == "control":
            gym.record_feedback(trace, rating=rating, rating_scale=5.0)
            gym.record_feedback(trace, rating=5.0, rating_scale=5.0, source="ai")  # a judge model's: not counted
    assert gym.flush(30) == 0

    decision = _decision(bootstrap, exp, worker, timeout_s=60.0)
    assert decision["action"] == "promote_winner" and decision["winner"] == "treatment", decision
    rating = json.loads(decision["evidence_json"])["metrics"]["rating"]
    arms = rating["arms"]
    assert arms["control"]["n"] >= 100 and arms["treatment"]["n"] >= 100
    assert 0.5 < arms["control"]["mean"] < 0.7 < arms["treatment"]["mean"] < 0.85  # rating / rating_scale, human only
    assert rating["comparisons"][0]["state"]["interval"][0] > 0
