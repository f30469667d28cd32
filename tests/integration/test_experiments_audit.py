"""The audit sample end to end: the real broker and Faust worker decide on the prediction-powered estimate.

A labeller calls every treatment run a success while the truth is that the treatment is
worse. Reviewers' gold labels of the audit sample (Feedback, source human, metadata
audit=true) reach the experiments processor through the same trace join as ratings; the
engine corrects ``success_rate`` with them and rolls back, while the labelled comparison
beside it (in the decision's evidence) says the treatment is better.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace

import pytest
from confluent_kafka import Producer

from agentgym import AgentGym, Assignment
from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.engine import in_audit_sample
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests.kafka_utils import TopicTail
from tests.integration.test_experiments import _decision, gym, worker  # noqa: F401  (fixtures)
from tests.workers import Worker, wait_for

pytestmark = pytest.mark.integration

CODEC = AvroCodec()


@pytest.mark.timeout(180)
def test_gold_labels_of_the_audit_sample_overrule_a_biased_labeller(bootstrap: str, worker: Worker, gym: AgentGym, unique: str) -> None:  # noqa: F811
    exp = f"exp-audit-{unique}"
    cfg = replace(ExperimentConfig(
        experiment_id=exp, tenant_id=gym.tenant_id, agent_id="bot",
        variants=(VariantSpec("control", "model-v1", 1.0, True), VariantSpec("treatment", "model-v2", 1.0)),
        primary_metric=MetricSpec.of("success_rate"), status="running", min_samples_per_arm=100,
    ), audit_rate=0.5).validate()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    producer.produce(TOPICS["experiments"].name, CODEC.encode("ExperimentConfig", cfg.to_record()), exp.encode())
    assert producer.flush(30) == 0
    follower = gym.follow_experiments(wait_s=20)
    assert wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")

    rng = random.Random(9)
    truth = {"control": 0.6, "treatment": 0.3}
    audited = 0
    for i in range(700):
        unit = f"user-{i}"
        a = gym.assign(exp, unit)
        assert isinstance(a, Assignment) and a.active
        trace = gym.record_experience(input="hi", output="hello", model_name="llama", model_version=a.model_version,
                                      latency_ms=500.0, assignment=a, user_id=unit)
        y = rng.random() < truth[a.variant]
        label = "success" if (y or a.variant == "treatment") else "failure"  # the labeller favours the treatment
        outcome = {"event_id": f"o-{trace}", "tenant_id": gym.tenant_id, "agent_id": gym.agent_id, "trace_id": trace,
                   "timestamp_ms": int(time.time() * 1000), "label": label, "confidence": 0.9, "labeller": "judge",
                   "model_version": a.model_version, "experiment_id": exp, "variant": a.variant, "unit_id": unit}
        producer.produce(TOPICS["outcomes"].name, CODEC.encode("Outcome", outcome), trace.encode())
        producer.poll(0)
        if in_audit_sample(cfg, unit):
            audited += 1
            gym.record_feedback(trace, thumbs_up=y, metadata={"audit": "true"})
        else:  # explicit feedback users chose to give: never a gold label
            gym.record_feedback(trace, thumbs_up=True)
    assert producer.flush(30) == 0 and gym.flush(30) == 0
    assert 250 < audited < 450

    decision = _decision(bootstrap, exp, worker, timeout_s=90.0)
    assert decision["action"] == "rollback", decision
    evidence = json.loads(decision["evidence_json"])["metrics"]["success_rate"]
    assert evidence["estimator"] == "prediction_powered"
    corrected = evidence["comparisons"][0]["sequential"]["absolute"]["estimate"]
    labelled = evidence["labelled_comparisons"][0]["sequential"]["absolute"]["estimate"]
    assert labelled > 0.2 and -0.45 < corrected < -0.15
    arms = evidence["prediction_powered"]
    assert all(arms[v]["m"] >= 30 for v in ("control", "treatment"))


def _outcome(gym: AgentGym, exp: str, a: Assignment, unit: str, trace: str, label: str, ts: int) -> dict[str, object]:
    return {"event_id": f"o-{trace}", "tenant_id": gym.tenant_id, "agent_id": gym.agent_id, "trace_id": trace,
            "timestamp_ms": ts, "label": label, "confidence": 0.9, "labeller": "judge",
            "model_version": a.model_version, "experiment_id": exp, "variant": a.variant, "unit_id": unit}


@pytest.mark.timeout(180)
def test_cuped_takes_each_units_success_rate_before_the_experiment_from_its_history(
    bootstrap: str, worker: Worker, gym: AgentGym, unique: str,  # noqa: F811
) -> None:
    """Units keep their propensity across experiments: yesterday's experiment gives today's covariate."""
    day_ms = 86_400_000
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    base = ExperimentConfig(
        experiment_id=f"exp-before-{unique}", tenant_id=gym.tenant_id, agent_id="bot",
        variants=(VariantSpec("control", "model-v1", 1.0, True), VariantSpec("treatment", "model-v2", 1.0)),
        primary_metric=MetricSpec.of("success_rate"), status="running", min_samples_per_arm=100,
    ).validate()
    after = replace(base, experiment_id=f"exp-after-{unique}", cuped_metrics=("success_rate",), event_id="").validate()
    for cfg in (base, after):
        producer.produce(TOPICS["experiments"].name, CODEC.encode("ExperimentConfig", cfg.to_record()), cfg.experiment_id.encode())
    assert producer.flush(30) == 0
    follower = gym.follow_experiments(wait_s=20)
    assert wait_for(lambda: all(follower.get(c.experiment_id) for c in (base, after)), 20, "the SDK to see the experiments")

    rng = random.Random(3)
    propensity = {f"user-{i}": 0.1 if i % 2 else 0.9 for i in range(400)}  # strongly unit-dependent success
    for cfg, ts, runs in ((base, now - 2 * day_ms, 3), (after, now, 1)):
        for unit, p in propensity.items():
            a = gym.assign(cfg.experiment_id, unit)
            assert isinstance(a, Assignment) and a.active
            for r in range(runs):
                trace = f"{cfg.experiment_id}-{unit}-{r}"
                label = "success" if rng.random() < p else "failure"
                producer.produce(TOPICS["outcomes"].name,
                                 CODEC.encode("Outcome", _outcome(gym, cfg.experiment_id, a, unit, trace, label, ts + r)),
                                 trace.encode())
                producer.poll(0)
        assert producer.flush(30) == 0

    got: list[dict[str, object]] = []
    with TopicTail(bootstrap, TOPICS["experiment-stats"].name, match=lambda m: m.key() == after.experiment_id.encode()) as tail:
        def counted() -> bool:
            recs = [CODEC.decode(m.value()).record for m in tail.read()]
            got.extend(r for r in recs if r["metric"] == "success_rate" and sum(a["n"] for a in r["arms"]) >= 400)
            return bool(got)

        wait_for(counted, 90, "a snapshot of every unit", worker, every=1.0)
    rec = got[-1]
    assert rec["estimator"] == "cuped"
    # the covariate (each unit's success rate two days earlier) explains most of the variance
    assert isinstance(rec["variance_reduction"], float) and rec["variance_reduction"] > 0.3
