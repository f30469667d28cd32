"""The labeller and the experiments processor skip deleted users' and traces' events.

The real Faust worker runs ``labeller,experiments`` (no sink: the deletions are written to
``gym-deletions-v1`` as the sink records them once applied, with the user's traces). One
deletion is recorded before the worker starts (read before any event), one while it runs
(the worker follows the topic). Then replayed events of both deleted users, all recorded
before their deletion, produce no outcome and no unit, while the other user's do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from agentgym.ops.cli import main as cli
from agentgym.processors.deletions import deletion_request, send_request
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from tests import store_samples
from tests.kafka_utils import TopicTail
from tests.workers import Worker, wait_for, worker_env

pytestmark = pytest.mark.integration

CODEC = AvroCodec()


def _applied(tenant: str, user: str, traces: list[str], requested_ms: int) -> dict[str, Any]:
    """The record the sink writes once it applied a deletion of ``user`` (whose stored traces were ``traces``)."""
    return {**deletion_request(tenant, user, "test", now_ms=requested_ms), "status": "applied", "trace_ids": traces,
            "applied_ms": requested_ms + 1, "deleted_rows": {"experiences": len(traces)}}


def _experience(tenant: str, exp: str, trace: str, user: str, unit: str, variant: str, ts_ms: int) -> dict[str, Any]:
    e = store_samples.experience(tenant, agent="bot", trace=trace, ts_ms=ts_ms, experiment_id=exp)
    return {**e, "user_id": user, "assignment": {**e["assignment"], "variant": variant, "unit_id": unit}}


def _outcome(tenant: str, exp: str, trace: str, unit: str, variant: str, label: str) -> dict[str, Any]:
    return {"event_id": f"o-{trace}", "tenant_id": tenant, "agent_id": "bot", "trace_id": trace,
            "timestamp_ms": store_samples.now_ms(), "label": label, "confidence": 1.0, "labeller": "test",
            "experiment_id": exp, "variant": variant, "unit_id": unit}


@pytest.mark.timeout(150)
def test_the_labeller_and_the_experiments_skip_deleted_users(bootstrap: str, unique: str, tmp_path: Path) -> None:
    tenant, exp = f"t-{unique}", f"exp-del-{unique}"
    alice, dave, bob = f"alice-{unique}", f"dave-{unique}", f"bob-{unique}"
    t_alice_old, t_alice, t_dave, t_bob, t_new = (f"{n}-{unique}" for n in ("a0", "a1", "d1", "b1", "n1"))
    before = store_samples.now_ms() - 60_000  # the replayed events were recorded before the deletions
    result = CliRunner().invoke(cli, ["experiments", "create", exp, "--agent", "bot", "--tenant", tenant,
                                      "--bootstrap-servers", bootstrap, "--variant", "control=v1", "--variant", "treatment=v2",
                                      "--metric", "success_rate", "--min-samples", "100000"], catch_exceptions=False)
    assert result.exit_code == 0 and f"created {exp}" in result.output, result.output
    # alice's deletion is applied before the worker starts: her stored trace a0 is deleted with her
    send_request(bootstrap, _applied(tenant, alice, [t_alice_old], store_samples.now_ms()))

    env = worker_env(bootstrap, tmp_path / "home", f"app-{unique}", "labeller,experiments",
                     AGENTGYM_LABELLER_QUIET_PERIOD_S="1", AGENTGYM_LABELLER_TICK_S="0.2",
                     AGENTGYM_EXPERIMENTS_SNAPSHOT_INTERVAL_S="1")
    worker = Worker(env, tmp_path / "worker.log").start()
    tails: list[TopicTail] = []
    try:
        loaded = re.compile(r"deletions: \d+ user\(s\), \d+ trace\(s\) deleted")
        wait_for(lambda: loaded.search(worker.log.read_text(errors="replace")), 90, "the worker to load the deletions", worker)
        # dave's deletion while the worker runs
        dave_deletion = _applied(tenant, dave, [], store_samples.now_ms())
        send_request(bootstrap, dave_deletion)
        wait_for(lambda: f"deletions: {dave_deletion['event_id']}" in worker.log.read_text(errors="replace"),
                 30, "the worker to read dave's deletion", worker)

        # one partition, in this order: the deleted users' replayed runs and the old outcome of alice's deleted trace
        # (unit ua, a failure), then bob's run (unit ub, a thumbs up) and a new outcome of unit ua (a success)
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        key = t_bob.encode()  # the outcomes': experiences and feedback are keyed by their own trace (the labeller checks)
        for r in (_experience(tenant, exp, t_alice, alice, f"ua2-{unique}", "treatment", before),
                  _experience(tenant, exp, t_dave, dave, f"ud-{unique}", "treatment", before),
                  _experience(tenant, exp, t_bob, bob, f"ub-{unique}", "control", before)):
            p.produce(TOPICS["experiences"].name, CODEC.encode("Experience", r), r["trace_id"].encode(), partition=0)
        bob_thumbs_up = {**store_samples.feedback(tenant, t_bob, agent="bot", ts_ms=before), "user_id": bob}
        p.produce(TOPICS["feedback"].name, CODEC.encode("Feedback", bob_thumbs_up), t_bob.encode(), partition=0)
        for r in (_outcome(tenant, exp, t_alice_old, f"ua-{unique}", "treatment", "failure"),
                  _outcome(tenant, exp, t_new, f"ua-{unique}", "treatment", "success")):
            p.produce(TOPICS["outcomes"].name, CODEC.encode("Outcome", r), key, partition=0)
        assert p.flush(30) == 0

        # the labeller labels bob's run, and not the deleted users' (their outcomes would come first: same partition, earlier)
        mine = {t_alice.encode(), t_dave.encode(), t_bob.encode()}
        found: list[dict[str, Any]] = []
        outcomes = TopicTail(bootstrap, TOPICS["outcomes"].name, match=lambda m: m.key() in mine)
        stats = TopicTail(bootstrap, TOPICS["experiment-stats"].name, match=lambda m: m.key() == exp.encode())
        tails.extend((outcomes, stats))

        def labelled() -> bool:
            found.extend(r for r in (CODEC.decode(m.value()).record for m in outcomes.read()) if r["labeller"] != "test")  # not ours
            return any(r["trace_id"] == t_bob for r in found)

        wait_for(labelled, 60, "the labeller's outcome of bob's run", worker, every=0.5)
        assert {r["trace_id"] for r in found} == {t_bob}, found
        assert found[0]["unit_id"] == f"ub-{unique}"

        # the experiment counts ub (the labeller's outcome) and ua once, with its new outcome's value: the old outcome
        # of the deleted trace came first on the same partition, and a unit keeps its first outcome's value
        snapshots: list[dict[str, Any]] = []

        def arms() -> dict[str, tuple[int, float]]:
            snapshots.extend(r for r in (CODEC.decode(m.value()).record for m in stats.read()) if r["metric"] == "success_rate")
            if not snapshots:
                return {}
            latest = max(snapshots, key=lambda r: r["timestamp_ms"])
            return {a["variant"]: (a["n"], a["sum"]) for a in latest["arms"]}

        last: list[dict[str, tuple[int, float]]] = [{}]

        def both_counted() -> dict[str, tuple[int, float]] | None:
            last[0] = a = arms()
            return a if a.get("control", (0, 0))[0] == 1 and a.get("treatment", (0, 0))[0] >= 1 else None

        try:
            got = wait_for(both_counted, 60, "both units in the experiment's statistics", worker, every=0.5)
        except AssertionError as exc:
            raise AssertionError(f"arms (units, sum): {last[0]}") from exc
        assert got["treatment"] == (1, 1.0), got
    finally:
        for tail in tails:
            tail.close()
        code = worker.stop()
    assert code == 0, worker.tail()
