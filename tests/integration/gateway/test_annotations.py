"""The annotation queue end to end: reviewers take the audit sample's runs from the API and label them; the real
worker (sink and experiments processor) stores the runs, joins the gold labels, and the live stream's snapshots
carry the audit units and the prediction-powered estimate."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from agentgym import AgentGym, Assignment
from agentgym.ops.cli import main as cli
from agentgym.processors.experiments import ExperimentConfig
from agentgym.processors.experiments.engine import in_audit_sample
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests.integration.gateway.conftest import Served, ServedGateway, auth, call, new_key, test_settings
from tests.integration.gateway.test_resources import SSE, experiment_body
from tests.workers import Worker, wait_for, worker_env

pytestmark = pytest.mark.integration

CODEC = AvroCodec()
PER_ARM = 6  # audited units per arm (the corrected estimate needs min(30, min_samples_per_arm) = 5)


@dataclass
class Queue:
    served: Served
    worker: Worker
    tenant: str
    reviewer1: str
    reviewer2: str
    admin: str
    reader: str
    other: str  # another tenant's annotate key
    experiment_id: str
    audited: dict[str, tuple[str, str, bool]]  # first labelled trace -> (unit, variant, truth), units of the audit sample
    labels: dict[str, tuple[str, int]]  # trace -> (variant, the labeller's label 1/0), every unit
    outside: str  # a labelled trace of a unit outside the sample


def _runs(bootstrap: str, tenant: str, exp: str, spool: Path) -> tuple[dict[str, tuple[str, str, bool]], dict[str, tuple[str, int]], str]:
    """Runs of audited units (PER_ARM per arm) and one other, with a labeller's outcome (biased to success).

    Some units have an unlabelled run before their labelled one: the queue must offer each unit's first
    labelled run, the one whose gold label the engine pairs with the unit's label.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    audited: dict[str, tuple[str, str, bool]] = {}
    labels: dict[str, tuple[str, int]] = {}
    outside = ""
    per_arm = {"control": 0, "treatment": 0}
    with AgentGym(bootstrap, tenant, "bot", spool_dir=spool, linger_ms=5) as gym:
        follower = gym.follow_experiments(wait_s=20)
        assert wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")
        config = ExperimentConfig.from_record(follower.get(exp))
        t0 = int(time.time() * 1000) - 60_000
        i = 0
        while min(per_arm.values()) < PER_ARM or not outside:
            unit, i = f"user-{i}", i + 1
            a = gym.assign(exp, unit)
            assert isinstance(a, Assignment) and a.active
            sampled = in_audit_sample(config, unit)
            if (sampled and per_arm[a.variant] >= PER_ARM) or (not sampled and outside):
                continue
            truth = i % 3 != 0 if a.variant == "control" else i % 3 == 0
            label = 1 if (truth or i % 4) else 0  # the labeller calls most runs successes
            runs = [None, label] if i % 3 == 1 else [label]  # None: not labelled
            trace = ""
            for r, run_label in enumerate(runs):
                t = gym.record_experience(input=f"question {i}", output=f"answer {i}.{r}", model_name="llama",
                                          model_version=a.model_version, latency_ms=100.0, assignment=a, user_id=unit,
                                          timestamp_ms=t0 + 10 * i + r)
                if run_label is None:
                    continue
                trace = trace or t  # the unit's first labelled run
                outcome = {"event_id": f"o-{t}", "tenant_id": tenant, "agent_id": "bot", "trace_id": t,
                           "timestamp_ms": int(time.time() * 1000), "label": "success" if run_label else "failure",
                           "confidence": 0.9, "labeller": "judge", "model_version": a.model_version, "experiment_id": exp,
                           "variant": a.variant, "unit_id": unit}
                producer.produce(TOPICS["outcomes"].name, CODEC.encode("Outcome", outcome), t.encode())
            labels[trace] = (a.variant, label)
            if sampled:
                per_arm[a.variant] += 1
                audited[trace] = (unit, a.variant, truth)
            else:
                outside = trace
        assert gym.flush(30) == 0
    assert producer.flush(30) == 0
    return audited, labels, outside


@pytest.fixture(scope="module")
def queue(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queue]:
    base = tmp_path_factory.mktemp("annotations")
    suffix = uuid.uuid4().hex[:8]
    home = base / "home"
    worker = Worker(worker_env(bootstrap, home, f"ann-{suffix}", "sink,experiments", AGENTGYM_EXPERIMENTS_SNAPSHOT_INTERVAL_S="1",
                               AGENTGYM_SINK_GROUP=f"sink-ann-{suffix}", AGENTGYM_SINK_BATCH_MS="100"), base / "worker.log").start()
    tenant, exp = f"ann-{suffix}", f"exp-ann-{suffix}"
    try:
        # the CLI's options configure the audit sample
        result = CliRunner().invoke(cli, ["experiments", "create", exp, "--agent", "bot", "--tenant", tenant, "--variant", "control=v1",
                                          "--variant", "treatment=v2", "--min-samples", "5", "--audit-rate", "0.5",
                                          "--bootstrap-servers", bootstrap], catch_exceptions=False)
        assert result.exit_code == 0 and "audit rate 0.5" in result.output, result.output
        settings = test_settings(bootstrap, base / "spool", clickhouse_url=f"chdb://{home / 'clickhouse'}")
        with ServedGateway(settings) as served:
            reviewer1, reviewer2, admin, reader = (new_key(bootstrap, served, tenant, s) for s in ("annotate", "annotate", "read,admin", "read"))
            other = new_key(bootstrap, served, f"ann-other-{suffix}", "annotate,admin")
            audited, labels, outside = _runs(bootstrap, tenant, exp, base / "sdk-spool")
            yield Queue(served, worker, tenant, reviewer1, reviewer2, admin, reader, other, exp, audited, labels, outside)
    finally:
        worker.stop()


def _next(q: Queue, key: str, **params: Any) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in {"experiment_id": q.experiment_id, **params}.items())
    status, body, _ = call("GET", f"{q.served.url}/v1/annotations/next?{query}", headers=auth(key))
    assert status == 200, body
    return body


@pytest.mark.timeout(150)
def test_reviewers_label_the_audit_sample_and_the_stream_shows_the_corrected_estimate(queue: Queue) -> None:
    q, url = queue, queue.served.url
    # the sink stores the runs; the queue offers the first one once every audited run is there
    first: list[dict[str, Any]] = []

    def stored() -> bool:
        body = _next(q, q.reviewer1)
        if body["run"] is None:
            return False
        first.append(body)
        return True

    wait_for(stored, 60, "the sink to store the audit sample's runs", q.worker, every=0.5)
    run = first[0]["run"]
    assert run["trace_id"] in q.audited and first[0]["lease_expires_in_s"] == 600
    assert run["input"][0]["content"].startswith("question") and run["output"].startswith("answer") and "feedback" in run
    assert "variant" not in run and "model_version" not in run  # the reviewer labels blind
    stream = SSE(f"{url}/v1/experiments/{q.experiment_id}/stream", q.reader)
    try:
        assert stream.next_event()[0] == "ready"
        # two reviewers never hold the same run; another's leased run cannot be labelled
        second = _next(q, q.reviewer2)["run"]
        assert second is not None and second["trace_id"] in q.audited and second["trace_id"] != run["trace_id"]
        status, body, _ = call("POST", f"{url}/v1/annotations/{run['trace_id']}", {"success": True}, auth(q.reviewer2))
        assert status == 409 and body["error"] == "leased" and body["field"] == "trace_id"
        # they work through the queue (the sink may still be storing some runs) until every audited run is labelled
        held: dict[str, dict[str, Any] | None] = {q.reviewer1: run, q.reviewer2: second}
        labelled: list[str] = []

        def work() -> bool:
            for key in (q.reviewer1, q.reviewer2):
                got = held.pop(key, None) or _next(q, key)["run"]
                if got is None:
                    continue
                trace = got["trace_id"]
                status, body, _ = call("POST", f"{url}/v1/annotations/{trace}",
                                       {"success": q.audited[trace][2], "comment": "checked", "experiment_id": q.experiment_id},
                                       auth(key))
                assert status == 202 and body["trace_id"] == trace and body["experiment_id"] == q.experiment_id, body
                labelled.append(trace)
            return len(labelled) >= len(q.audited)

        wait_for(work, 60, "the reviewers to label the audit sample", q.worker, every=0.2)
        assert sorted(labelled) == sorted(q.audited)  # every audited unit's first labelled run, once
        assert _next(q, q.reviewer1)["run"] is None and _next(q, q.reviewer2)["run"] is None
        # the worker joins the gold labels: the snapshot counts every audited unit and corrects the labelled means
        want = len(q.audited)
        seen: list[dict[str, Any]] = []

        def corrected() -> bool:
            event, data = stream.next_event()
            if event == "stats" and data["metric"] == "success_rate" and data["audit_units"] == want:
                seen.append(data)
            return bool(seen)

        wait_for(corrected, 60, "a snapshot with every gold label", q.worker, every=0.0)
    finally:
        stream.close()
    snap = seen[0]
    assert snap["estimator"] == "prediction_powered" and snap["labelled_comparisons"]
    ppi = json.loads(snap["details_json"])["prediction_powered"]
    for variant in ("control", "treatment"):
        arm = [lab for v, lab in q.labels.values() if v == variant]
        audited = [t for t, (_, v, _) in q.audited.items() if v == variant]
        # PPI: the labels' mean over the arm's units plus the audit sample's mean correction (gold - label)
        correction = sum(int(q.audited[t][2]) - q.labels[t][1] for t in audited) / len(audited)
        assert (ppi[variant]["n"], ppi[variant]["m"]) == (len(arm), PER_ARM)
        assert ppi[variant]["label_mean"] == pytest.approx(sum(arm) / len(arm), abs=1e-9)
        assert ppi[variant]["correction"] == pytest.approx(correction, abs=1e-9)
        assert ppi[variant]["estimate"] == pytest.approx(sum(arm) / len(arm) + correction, abs=1e-9)


@pytest.mark.timeout(60)
def test_the_queue_refuses_other_tenants_scopes_and_runs_outside_the_sample(queue: Queue) -> None:
    q, url = queue, queue.served.url
    some = next(iter(q.audited))
    # another tenant: the experiment and the run do not exist for it (404), even with admin
    status, body, _ = call("GET", f"{url}/v1/annotations/next?experiment_id={q.experiment_id}", headers=auth(q.other))
    assert status == 404 and body["field"] == "experiment_id"
    status, body, _ = call("POST", f"{url}/v1/annotations/{some}", {"success": True}, auth(q.other))
    assert status == 404 and body["field"] == "trace_id" and q.tenant not in str(body)
    # a read key may not review; a reviewer's key may not read the experiment's admin routes
    assert call("GET", f"{url}/v1/annotations/next?experiment_id={q.experiment_id}", headers=auth(q.reader))[0] == 403
    assert call("POST", f"{url}/v1/annotations/{some}", {"success": True}, auth(q.reader))[0] == 403
    # a run of a unit outside the audit sample takes no gold label
    answers: list[tuple[int, Any, Any]] = []

    def refused() -> bool:  # "not_found" until the sink stored the run, then refused for being outside the sample
        answers.append(call("POST", f"{url}/v1/annotations/{q.outside}", {"success": True}, auth(q.reviewer1)))
        return answers[-1][1].get("error") != "not_found"

    wait_for(refused, 60, "the run outside the sample to be stored", q.worker)
    status, body, _ = answers[-1]
    assert status == 404 and body["error"] == "not_in_audit_sample" and body["field"] == "trace_id"
    # bad bodies name the field
    for bad, field in (({}, "success"), ({"success": "yes"}, "success"), ({"success": True, "grade": 1}, "grade"),
                       ({"success": True, "comment": 3}, "comment")):
        status, body, _ = call("POST", f"{url}/v1/annotations/{some}", bad, auth(q.reviewer1))
        assert status == 400 and body["field"] == field, (bad, body)
    status, body, _ = call("GET", f"{url}/v1/annotations/next?experiment_id={q.experiment_id}&lease_s=1", headers=auth(q.reviewer1))
    assert status == 400 and body["field"] == "lease_s"
    # an experiment without an audit sample has no queue (and the API's create takes the audit and CUPED options)
    status, exp, _ = call("POST", f"{url}/v1/experiments", experiment_body(f"plain-{q.tenant}"), auth(q.admin))
    assert status == 201 and exp["audit_rate"] == 0.0
    status, body, _ = call("GET", f"{url}/v1/annotations/next?experiment_id={exp['experiment_id']}", headers=auth(q.reviewer1))
    assert status == 409 and body["error"] == "no_audit_sample"
    status, exp, _ = call("POST", f"{url}/v1/experiments", experiment_body(
        "audited", audit_rate=0.2, cuped_metrics=["latency_ms"], cuped_lookback_days=14), auth(q.admin))
    assert status == 201 and (exp["audit_rate"], exp["cuped_metrics"], exp["cuped_lookback_days"]) == (0.2, ["latency_ms"], 14)
    bad_creates: list[tuple[dict[str, Any], str]] = [({"audit_rate": 1.0}, "audit_rate"), ({"cuped_metrics": ["cost_usd"]}, "cuped_metrics"),
                                                 ({"cuped_lookback_days": 0}, "cuped_lookback_days")]
    for bad, field in bad_creates:
        status, body, _ = call("POST", f"{url}/v1/experiments", experiment_body("bad", **bad), auth(q.admin))
        assert status == 400 and body["field"] == field, (bad, body)
