"""``agentgym labeller replay`` against the real broker and the real embedded ClickHouse.

The live labeller's outcomes are made by the labelling engine itself with the rules of the
time (a rule with a bug: a 4-of-5 rating fell in the neutral band, so those runs were
``unknown``) and written to ``gym-outcomes-v1`` where the Faust labeller writes them: a
worker would add ~20 s of start-up and test nothing more of the replay. Then the rule is
fixed and the past replayed; the ClickHouse sink materialises everything, and the views
and a dataset built afterwards show the new labels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from agentgym.processors.datasets.builder import DatasetBuilder
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.deletions import DeletionSet, deletion_request, send_request
from agentgym.processors.labelling.decision import decide
from agentgym.processors.labelling.engine import InMemoryLabeller, LabellingEngine
from agentgym.processors.labelling.replay import is_replay_id
from agentgym.processors.labelling.rules import RuleBook
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.labelling.engine import TrainingExample
from agentgym.processors.labelling.features import model_features
from agentgym.processors.relabel import LogReplay, ReplayProgress, ReplayRequest, learners_topic
from agentgym.producers.admin import create_topics
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.base import Store
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS
from agentgym.processors.store.rows import insert_records
from tests import store_samples, trainer_samples
from tests.kafka_utils import drain_sink

pytestmark = pytest.mark.integration

CODEC = AvroCodec()
REPO = Path(__file__).resolve().parents[2]
AGENT = "shouter"
BUGGY = "default:\n  rating_success_at: 0.9\n"  # 4 of 5 = 0.8: neutral, so no human label
FIXED = "default:\n  rating_success_at: 0.7\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path / 'ch'}")
    migrate(s)
    yield s
    s.close()


def _engine(path: Path, text: str) -> LabellingEngine:
    path.write_text(text)
    return LabellingEngine(RuleBook.from_yaml(path), LabellerSettings(quiet_period_s=1))


def _feedback(tenant: str, trace: str, ts_ms: int, **kw: Any) -> dict[str, Any]:
    rec = {"event_id": f"fb-{trace}-{kw.get('kind', 'x')}-{ts_ms}", "tenant_id": tenant, "agent_id": AGENT, "trace_id": trace,
           "timestamp_ms": ts_ms, "source": "human", "rating_scale": 5.0, "metadata": {}, **kw}
    return CODEC.decode(CODEC.encode("Feedback", rec)).record


def _history(tenant: str, n: int, user: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` runs of the shouting agent and their feedback: a correct answer rated 4 of 5, a wrong one
    thumbed down, every other wrong one corrected. ``user``: the first run is this user's."""
    exps, _ = trainer_samples.runs(tenant, AGENT, n, failure_every=3)
    fbs = []
    for i, e in enumerate(exps):
        if user is not None and i == 0:
            e["user_id"] = user
        ts = e["timestamp_ms"] + 200
        word, number = e["input"][1]["content"].split()[1:3]
        if i % 3 == 2:  # the wrong answers
            fbs.append(_feedback(tenant, e["trace_id"], ts, kind="thumbs", thumbs_up=False, user_id=e.get("user_id")))
            if (i // 3) % 2 == 0:
                fbs.append(_feedback(tenant, e["trace_id"], ts + 1, kind="correction",
                                     correction=trainer_samples.answer(word, int(number.rstrip("."))), user_id=e.get("user_id")))
        else:
            fbs.append(_feedback(tenant, e["trace_id"], ts, kind="rating", rating=4.0, user_id=e.get("user_id")))
    return exps, fbs


def _produce(bootstrap: str, exps: list[dict[str, Any]], fbs: list[dict[str, Any]], outs: list[dict[str, Any]]) -> None:
    """Keyed by trace id with one partitioner, so each trace's events share a partition, as in production."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, name, records in (("gym-experiences-v1", "Experience", exps), ("gym-feedback-v1", "Feedback", fbs),
                                 ("gym-outcomes-v1", "Outcome", outs)):
        for r in records:
            p.produce(topic, CODEC.encode(name, r), r["trace_id"].encode())
    assert p.flush(30) == 0


def _group_from(bootstrap: str, group: str, ts_ms: int) -> str:
    """A consumer group whose committed offsets start at ``ts_ms`` on the trace topics (the sink then skips the
    session's earlier history instead of reading it all)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(TOPICS[b].name, p, ts_ms) for b in ("experiences", "outcomes") for p in range(TOPICS[b].partitions)]
        found = c.offsets_for_times(tps, timeout=10)
        ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        c.commit(offsets=[TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else ends[(tp.topic, tp.partition)])
                          for tp in found], asynchronous=False)
    finally:
        c.close()
    return group


def _live_outcomes(engine: LabellingEngine, exps: list[dict[str, Any]], fbs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the live labeller emitted with ``engine``'s rules (event time as its clock)."""
    lab = InMemoryLabeller(engine)
    for kind, r in sorted([("experience", e) for e in exps] + [("feedback", f) for f in fbs], key=lambda x: x[1]["timestamp_ms"]):
        getattr(lab, kind)(r, r["timestamp_ms"])
    lab.flush(max(f["timestamp_ms"] for f in fbs) + 10_000)
    return [CODEC.decode(CODEC.encode("Outcome", o)).record for o in lab.outcomes]


def _labels(store: Store, tenant: str) -> dict[str, tuple[str, int, str]]:
    rows = store.query("SELECT trace_id, label, revision, event_id FROM v_outcomes_latest WHERE tenant_id = {t:String}",
                       {"t": tenant}).rows
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _replay_outcomes(bootstrap: str, tenant: str, since_ms: int) -> list[dict[str, Any]]:
    """The replay revisions of the tenant's traces (keys start with the tenant) in ``gym-outcomes-v1``: every
    partition read from ``since_ms`` to its end now (so a duplicate would show)."""
    from confluent_kafka import Consumer, TopicPartition

    topic, got = TOPICS["outcomes"].name, []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10})
    try:
        for tp in c.offsets_for_times([TopicPartition(topic, p, since_ms) for p in range(TOPICS["outcomes"].partitions)], timeout=10):
            end = c.get_watermark_offsets(tp, timeout=10)[1]
            if tp.offset < 0 or tp.offset >= end:
                continue
            c.assign([tp])
            deadline = time.monotonic() + 30
            while c.position([TopicPartition(topic, tp.partition)])[0].offset < end:
                assert time.monotonic() < deadline, f"{topic}[{tp.partition}]: not read to {end}"
                m = c.poll(0.5)
                if m is not None and m.error() is None and m.partition() == tp.partition and (m.offset() or 0) < end \
                        and (m.key() or b"").startswith(f"{tenant}-".encode()):
                    got.append(CODEC.decode(m.value()).record)
    finally:
        c.close()
    return [o for o in got if is_replay_id(o["event_id"])]


@pytest.mark.timeout(240)
def test_a_rule_fixed_after_the_fact_relabels_the_past_views_and_datasets_follow(
        bootstrap: str, store: Store, unique: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    tenant, bob = f"t-{unique}", f"bob-{unique}"
    since_ms = int(time.time() * 1000) - 1000
    exps, fbs = _history(tenant, 24, user=bob)
    live = _live_outcomes(_engine(tmp_path / "buggy.yaml", BUGGY), exps, fbs)
    rated = {e["trace_id"] for i, e in enumerate(exps) if i % 3 != 2}  # 16 rated 4 of 5
    deleted_trace = exps[0]["trace_id"]  # bob's, deleted after the fact
    assert {o["trace_id"]: o["label"] for o in live if o["trace_id"] in rated} == dict.fromkeys(rated, "unknown")
    _produce(bootstrap, exps, fbs, live)
    send_request(bootstrap, deletion_request(tenant, bob, "test"))  # bob's run: the replay must skip it
    # (this sink leaves deletions alone, so the store keeps bob's old label: what the replay does is what shows)
    sink = ClickHouseSink(bootstrap, store, group=_group_from(bootstrap, f"replay-{unique}", since_ms), batch_size=5000, batch_ms=100,
                          specs=[TOPICS["experiences"], TOPICS["outcomes"]], deletions=False)
    ds_settings = DatasetSettings(home=tmp_path, dataset_min_examples=1, dataset_eval_fraction=0.0,
                                  dataset_window_days=36500)
    try:
        drain_sink(sink, lambda: len(_labels(store, tenant)) == 24)
        before = _labels(store, tenant)
        assert {before[t][0] for t in rated} == {"unknown"}
        sft_before = next(m for m in DatasetBuilder(store, ds_settings).build(tenant, AGENT) if m.kind == "sft")
        assert set(sft_before.trace_ids).isdisjoint(rated)  # only the corrected wrong answers
        t_setup = time.monotonic()

        # 1. the replay, end to end: the command in a subprocess, with the fixed rules
        rules = tmp_path / "fixed.yaml"
        rules.write_text(FIXED)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")},
               "AGENTGYM_BOOTSTRAP_SERVERS": bootstrap, "AGENTGYM_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "agentgym.ops.cli", "labeller", "replay", "--since", str(since_ms), "--rules", str(rules),
               "--tenant", tenant, "--agent", AGENT, "--show", "2"]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        t_cli = time.monotonic()
        assert done.returncode == 0, done.stdout + done.stderr
        progress = [ln for ln in done.stderr.splitlines() if ln.startswith("partition ")]
        assert len(progress) >= TOPICS["experiences"].partitions and all("records/s" in ln for ln in progress), done.stderr
        assert "(6/6 done, done)" in progress[-1], done.stderr
        shown = [ln for ln in done.stderr.splitlines() if ln.startswith(f"  {tenant}/{AGENT} ")]
        assert len(shown) == 2 and all(": unknown (fallback:unknown, revision 0) -> success (human, revision 1)" in ln
                                       for ln in shown), done.stderr
        assert "15 relabelled (new revisions emitted), 8 unchanged" in done.stdout, done.stdout + done.stderr  # 16 rated, less bob's
        assert "skipped: 2 deleted" in done.stdout, done.stdout + done.stderr  # bob's experience and feedback
        assert not list((tmp_path / "home" / "replay").glob("*.json")), "a completed replay leaves no checkpoint"

        # the views show the new labels: revision 1, the replay's event id
        drain_sink(sink, lambda: sum(_labels(store, tenant)[t][0] == "success" for t in rated - {deleted_trace}) == 15)
        after = _labels(store, tenant)
        for t in rated - {deleted_trace}:
            label, revision, event_id = after[t]
            assert (label, revision) == ("success", 1) and is_replay_id(event_id), after[t]
        unchanged = [t for t in after if t not in rated] + [deleted_trace]
        assert {t: after[t] for t in unchanged} == {t: before[t] for t in unchanged}
        runs = dict(store.query("SELECT trace_id, outcome_label FROM v_runs WHERE tenant_id = {t:String}", {"t": tenant}).rows)
        assert all(runs[t] == "success" for t in rated - {deleted_trace})
        # a dataset built afterwards holds the relabelled runs
        sft_after = next(m for m in DatasetBuilder(store, ds_settings).build(tenant, AGENT) if m.kind == "sft")
        assert set(sft_after.trace_ids) == set(sft_before.trace_ids) | (rated - {deleted_trace})
        assert sft_after.num_examples == sft_before.num_examples + 15 and sft_after.dataset_id != sft_before.dataset_id

        # 2. a second replay with the same rules emits nothing
        request = ReplayRequest(since_ms, int(time.time() * 1000), str(since_ms), "now", tenant, AGENT, str(rules), None)
        t_second = time.monotonic()
        second = LogReplay(bootstrap, _engine(rules, FIXED), request, tmp_path / "home").run()
        assert (second.counts.relabelled, second.counts.unchanged, second.counts.traces) == (0, 23, 23)

        # 3. later, new feedback: the live labeller (fixed rules now) revises one trace with its own counter (1);
        #    the replay's revision 1 does not shadow it, and a replay after it agrees (emits nothing)
        target = sorted(rated - {deleted_trace})[0]
        late = _feedback(tenant, target, int(time.time() * 1000), kind="thumbs", thumbs_up=False)
        engine = _engine(rules, FIXED)
        st = engine.ingest_experience(None, next(e for e in exps if e["trace_id"] == target), 0, 0)
        for f in [f for f in fbs if f["trace_id"] == target] + [late]:
            st, _ = engine.ingest_feedback(st, f, 0, 0)
        st.revision = 1
        decision = decide(st, engine.rulebook.rules_for(tenant, AGENT), engine.rulebook.version)
        live_rev = engine.outcome_record(st, decision, int(time.time() * 1000))
        assert (live_rev["event_id"], live_rev["label"]) == (f"{target}:outcome:1", "failure")
        _produce(bootstrap, [], [late], [live_rev])
        drain_sink(sink, lambda: _labels(store, tenant)[target] == ("failure", 1, f"{target}:outcome:1"))
        third = LogReplay(bootstrap, engine, request, tmp_path / "home", deletions=DeletionSet()).run()
        assert third.counts.relabelled == 1, "bob's trace, with no deletion set given"
        # in the topic: one revision per relabelled trace (the second replay added none), bob's last
        assert sorted(o["trace_id"] for o in _replay_outcomes(bootstrap, tenant, since_ms)) == sorted(rated)
    finally:
        sink.close()
    print(f"\nreplay test: setup {t_setup - t0:.1f}s, CLI replay {t_cli - t_setup:.1f}s, in-process replays and checks "
          f"{time.monotonic() - t_second:.1f}s, total {time.monotonic() - t0:.1f}s")


@pytest.mark.timeout(120)
def test_an_interrupted_replay_continues_where_it_stopped(bootstrap: str, unique: str, tmp_path: Path) -> None:
    tenant = f"t-{unique}"
    since_ms = int(time.time() * 1000) - 1000
    exps, fbs = _history(tenant, 30)
    _produce(bootstrap, exps, fbs, [])  # never labelled: every trace gets a revision 0
    rules = tmp_path / "fixed.yaml"
    request = ReplayRequest(since_ms, int(time.time() * 1000) + 5000, str(since_ms), "+5s", tenant, AGENT, str(rules), None)
    home = tmp_path / "home"
    seen: list[ReplayProgress] = []

    def stop_after_first_relabel(p: ReplayProgress) -> None:
        seen.append(p)
        if p.phase == "done" and p.counts.relabelled:
            raise KeyboardInterrupt  # Ctrl-C between two partitions

    first = LogReplay(bootstrap, _engine(rules, FIXED), request, home, progress=stop_after_first_relabel)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    checkpoint = json.loads(first.checkpoint_path.read_text())
    done_first = checkpoint["done"]
    assert 1 <= len(done_first) < TOPICS["experiences"].partitions
    emitted_first = seen[-1].counts.relabelled
    second = LogReplay(bootstrap, _engine(rules, FIXED), request, home).run()
    assert second.resumed == done_first and sorted(second.partitions + done_first) == list(range(6))
    assert second.counts.relabelled == 30 - emitted_first and second.counts.unchanged == 0
    assert not first.checkpoint_path.exists()
    # read back: every trace has its revision (a dry run finds nothing left to relabel)
    check = LogReplay(bootstrap, _engine(rules, FIXED), request, home, dry_run=True).run()
    assert (check.counts.relabelled, check.counts.unchanged) == (0, 30)


def test_storage_shows_the_latest_revision_a_live_one_after_a_replay_one_wins(store: Store, unique: str) -> None:
    """The scheme relies on ReplacingMergeTree(revision): the highest revision, the last inserted among equals,
    in one insert or several, before and after a merge."""
    tenant = f"t-{unique}"

    def outcome(trace: str, revision: int, label: str, replay: bool = False) -> dict[str, Any]:
        return store_samples.outcome(tenant, trace, label=label, revision=revision,
                                     event_id=f"{trace}:outcome:{revision}" + (":replay:0123456789ab" if replay else ""))

    insert_records(store, "Outcome", [outcome("a", 0, "unknown"), outcome("a", 1, "success", replay=True),
                                      outcome("a", 1, "failure")])  # one batch: live 1 after replay 1
    insert_records(store, "Outcome", [outcome("b", 0, "unknown")])
    insert_records(store, "Outcome", [outcome("b", 1, "success", replay=True)])
    insert_records(store, "Outcome", [outcome("c", 2, "failure"), outcome("c", 3, "success", replay=True)])
    assert {t: v[0] for t, v in _labels(store, tenant).items()} == {"a": "failure", "b": "success", "c": "success"}
    insert_records(store, "Outcome", [outcome("b", 1, "failure"), outcome("c", 3, "failure")])  # the live labeller's next
    insert_records(store, "Outcome", [outcome("c", 2, "unknown")])  # an old live revision redelivered: no effect
    store.command(f"OPTIMIZE TABLE {store.database}.outcomes FINAL")
    assert _labels(store, tenant) == {t: ("failure", r, f"{t}:outcome:{r}") for t, r in (("a", 1), ("b", 1), ("c", 3))}


@pytest.mark.timeout(120)
def test_the_replay_labels_with_the_live_labellers_checkpointed_model(bootstrap: str, unique: str, tmp_path: Path) -> None:
    """The model is the learner the live labeller checkpointed to its changelog (the copy that learnt the most)."""
    tenant, app_id = f"t-{unique}", f"lab-{unique}"
    since_ms = int(time.time() * 1000) - 1000
    rules = tmp_path / "rules.yaml"
    engine = _engine(rules, "default:\n  model_min_examples: 5\n")
    exps, _ = trainer_samples.runs(tenant, AGENT, 11)
    learner, older = engine.new_learner(tenant, AGENT), engine.new_learner(tenant, AGENT)
    for i, e in enumerate(exps[:8]):  # what the live labeller learnt from explicit labels
        example = TrainingExample(model_features(engine.ingest_experience(None, e, 0, 0), engine.rulebook.rules_for(tenant, AGENT)),
                                  i % 3 != 2, True)
        learner.learn(example)
        if i < 6:
            older.learn(example)
    topic = learners_topic(app_id)
    create_topics(bootstrap, {topic: (TOPICS["experiences"].partitions, {"cleanup.policy": "compact"})})
    p = Producer({"bootstrap.servers": bootstrap})
    # as Faust writes the table (raw key and value): the master on one partition, an older replica on another
    p.produce(topic, learner.to_bytes(), json.dumps([tenant, AGENT, 2]).encode(), partition=2)
    p.produce(topic, older.to_bytes(), json.dumps([tenant, AGENT, 4]).encode(), partition=4)
    assert p.flush(10) == 0
    _produce(bootstrap, exps[8:], [], [])  # three runs nobody rated, and no signal: only the model decides
    request = ReplayRequest(since_ms, int(time.time() * 1000), str(since_ms), "now", tenant, AGENT, str(rules), app_id)
    got: list[dict[str, Any]] = []
    result = LogReplay(bootstrap, engine, request, tmp_path / "home", deletions=DeletionSet(), dry_run=True,
                       on_relabel=lambda r: got.append(r.outcome)).run()
    assert result.models == {f"{tenant}/{AGENT}": "river-logistic-regression@8"}
    assert (result.counts.traces, result.counts.relabelled) == (3, 3)
    assert sorted(o["trace_id"] for o in got) == sorted(e["trace_id"] for e in exps[8:])
    for o in got:
        assert (o["labeller"], o["labeller_version"]) == ("model:river-logistic-regression", "river-logistic-regression@8"), o
        assert o["label"] in ("success", "failure") and o["confidence"] >= 0.5
    # without the model the same runs have no label: the model is what decided
    no_model = ReplayRequest(since_ms, request.until_ms, str(since_ms), "now", tenant, AGENT, str(rules), None)
    unlabelled: list[dict[str, Any]] = []
    dry = LogReplay(bootstrap, engine, no_model, tmp_path / "home", deletions=DeletionSet(), dry_run=True,
                    on_relabel=lambda r: unlabelled.append(r.outcome)).run()
    assert dry.models == {} and {(o["label"], o["labeller"]) for o in unlabelled} == {("unknown", "fallback:unknown")}
