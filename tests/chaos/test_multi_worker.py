"""Several Faust workers sharing the processors' partitions, with real processes.

Three workers run every processor on one embedded ClickHouse directory (the same
``AGENTGYM_HOME``, each with its own web and read-interface port, as ``agentgym processors
run`` started three times on one host). Two start; the first owns the store and sinks,
the second's sink stands by. Under load a third joins, mid-experiment, and then the
first (the store's owner) is killed with ``kill -9`` mid-labelling. Afterwards:

* the sink was taken over by a survivor and every event is in ClickHouse once;
* every trace has exactly its expected label, and no outcome event id was emitted with
  two different contents (a lost trace state would restart at revision 0 and re-use it);
* traces whose experience was joined and labelled before the kill, and whose feedback
  arrives after it, are relabelled from their restored join state (revision 1, with the
  run's model version): the changelog-backed tables moved with their partitions;
* the experiment counts every unit exactly once per arm;
* the dataset the leader builds holds exactly the examples the expected labels give
  (:func:`build_examples` on the test's own record of what it sent).
"""

from __future__ import annotations

import json
import random
import string
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentgym import AgentGym
from agentgym.ops.cli import main as cli
from agentgym.processors.datasets.examples import LabelledRun, QualityConfig, build_examples
from agentgym.processors.datasets.processor import open_shared_reader
from agentgym.processors.datasets.quality import LengthLimits, Scrubber
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store.chdb_store import ChdbStore, directory_owner
from agentgym.producers.admin import create_topics
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS, TopicSpec
from tests.kafka_utils import consume_all
from tests.workers import Worker, wait_for, worker_env

pytestmark = pytest.mark.timeout(300)

CODEC = AvroCodec()
UNITS, TRACES_PER_UNIT, LATE = 40, 3, 30  # experiment units x their traces; traces whose feedback comes after the kill


def _rows(url: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    # through whichever worker owns the store now; never takes the directory itself
    store = open_shared_reader(url)
    try:
        return list(store.query(sql, params).rows)
    finally:
        store.close()


def _words(rng: random.Random, vocabulary: list[str], n: int) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(n))


def _outcome_contents(bootstrap: str, traces: set[str], at_least: int) -> dict[str, set[tuple[Any, ...]]]:
    """Every Outcome emitted for ``traces`` on the topic (``at_least`` of them, then a second's more):
    event id -> the distinct contents."""
    msgs = consume_all(bootstrap, TOPICS["outcomes"].name, at_least, timeout_s=30.0,
                       match=lambda m: m.key() is not None and m.key().decode() in traces)
    out: dict[str, set[tuple[Any, ...]]] = {}
    for m in msgs:
        r = CODEC.decode(m.value(), expected="Outcome").record
        out.setdefault(r["event_id"], set()).add((r["trace_id"], r["revision"], r["label"], r["model_version"], r["labeller"]))
    return out


def _diagnose(bootstrap: str, app_id: str, missing: set[str]) -> dict[str, Any]:
    """What the topics hold about traces left unlabelled: their outcomes, and their join state's changelog."""
    outcomes = _outcome_contents(bootstrap, missing, 10**9)
    changelog = consume_all(bootstrap, f"{app_id}-labeller-traces-changelog", 10**9, timeout_s=6.0,
                            match=lambda m: m.key() is not None and m.key().decode().strip('"') in missing)
    states: dict[str, Any] = {}
    for m in changelog:
        raw = json.loads(m.value()) if m.value() else None
        states.setdefault(m.key().decode(), []).append(
            None if raw is None else {k: raw.get(k) for k in ("dirty", "revision", "partition", "last_event_ms")})
    return {"outcomes": sorted(c for cs in outcomes.values() for c in cs), "changelog": states,
            "missing": sorted(missing)[:10]}


def test_workers_join_and_one_is_killed_mid_experiment_and_mid_labelling(bootstrap: str, unique: str, tmp_path: Path) -> None:
    tenant, exp = f"mw-{unique}", f"exp-{unique}"
    home = tmp_path / "home"
    home.mkdir()
    rules = tmp_path / "rules.yaml"  # no online-model labels for this tenant: a trace without feedback is `unknown`
    rules.write_text(json.dumps({"tenants": {tenant: {"rules": {"model_enabled": False}}}}))
    n_bot = UNITS * TRACES_PER_UNIT
    common = dict(
        AGENTGYM_SINK_GROUP=f"sink-{unique}", AGENTGYM_SINK_BATCH_MS="100",
        AGENTGYM_LABELLER_QUIET_PERIOD_S="2", AGENTGYM_LABELLER_TICK_S="0.2", AGENTGYM_LABELLER_RULES_PATH=str(rules),
        AGENTGYM_EXPERIMENTS_SNAPSHOT_INTERVAL_S="1",
        AGENTGYM_DATASET_INTERVAL_S="1", AGENTGYM_DATASET_MIN_NEW_EXAMPLES=str(n_bot), AGENTGYM_DATASET_MIN_EXAMPLES="5",
    )
    app_id = f"mw-{unique}"

    def start(name: str) -> Worker:
        env = worker_env(bootstrap, home, app_id, "sink,labeller,experiments,datasets", **common)
        return Worker(env, tmp_path / f"worker-{name}.log").start()

    url = f"chdb://{home / 'clickhouse'}"
    workers: list[Worker] = []
    t_start = time.monotonic()
    try:
        workers += [start("a"), start("b")]  # together: the first to open the store owns it
        wait_for(lambda: _rows(url, "SELECT 1", {}) == [(1,)], 120, "a worker to own the store", workers[0])
        owner_pid = directory_owner(home / "clickhouse")
        owner = next(w for w in workers if w.proc is not None and w.proc.pid == owner_pid)
        other = next(w for w in workers if w is not owner)
        wait_for(lambda: "standing by" in other.log.read_text(errors="replace"), 60, "the other sink to stand by", other)
        for w in workers:
            wait_for(lambda w=w: "Ready" in w.log.read_text(errors="replace"), 120, "the workers to be ready", w)

        out = CliRunner().invoke(cli, ["experiments", "create", exp, "--agent", "bot", "--tenant", tenant,
                                       "--bootstrap-servers", bootstrap, "--variant", "control=m-1",
                                       "--variant", "treatment=m-2", "--metric", "success_rate",
                                       "--min-samples", "100000"], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        rng = random.Random(20)
        vocabulary = ["".join(rng.choice(string.ascii_lowercase) for _ in range(7)) for _ in range(3000)]
        sent: list[dict[str, Any]] = []  # every bot trace: prompt, output, expected label
        units: dict[str, set[str]] = {"control": set(), "treatment": set()}
        late: dict[str, bool] = {}
        gym = AgentGym(bootstrap, tenant, "bot", spool_dir=tmp_path / "spool-bot", linger_ms=5)
        gym_late = AgentGym(bootstrap, tenant, "late", spool_dir=tmp_path / "spool-late", linger_ms=5)
        follower = gym.follow_experiments(wait_s=20)
        wait_for(lambda: follower.get(exp) is not None, 20, "the SDK to see the experiment")

        def bot_traffic(first: int, last: int) -> None:
            for i in range(first, last):
                unit = f"user-{i}"
                assignment = gym.assign(exp, unit)
                assert assignment is not None and assignment.active
                units[assignment.variant].add(unit)
                good = i % 3 != 0  # a unit's traces share their label
                for _ in range(TRACES_PER_UNIT):
                    prompt, output = _words(rng, vocabulary, 12), _words(rng, vocabulary, 8)
                    trace = gym.record_experience(input=prompt, output=output, model_name="llama",
                                                  model_version=assignment.model_version, latency_ms=10.0,
                                                  assignment=assignment, user_id=unit)
                    gym.record_feedback(trace, thumbs_up=good)
                    sent.append({"trace": trace, "prompt": prompt, "output": output, "good": good})
            assert gym.flush(30) == 0

        # traces joined and labelled (`unknown`) before the kill; their feedback comes after it
        for i in range(LATE):
            trace = gym_late.record_experience(input=_words(rng, vocabulary, 6), output="ok", model_name="llama",
                                               model_version="m-late", latency_ms=5.0)
            late[trace] = i % 2 == 0
        assert gym_late.flush(30) == 0
        bot_traffic(0, UNITS // 2)
        c = start("c")  # joins mid-experiment
        workers.append(c)
        late_sql = ("SELECT count() FROM agentgym.v_outcomes_latest WHERE tenant_id = {t:String} AND agent_id = 'late' "
                    "AND label = 'unknown'")
        wait_for(lambda: _rows(url, late_sql, {"t": tenant}) == [(LATE,)], 120, "the late traces' first outcomes", owner)
        wait_for(lambda: "Ready" in c.log.read_text(errors="replace"), 120, "worker c to be ready", c)
        bot_traffic(UNITS // 2, UNITS)
        owner.kill()  # the store's owner, mid-labelling and mid-experiment
        t_kill = time.monotonic()
        for trace, good in late.items():
            gym_late.record_feedback(trace, thumbs_up=good)
        assert gym_late.flush(30) == 0

        # every trace labelled as expected; the late ones relabelled from their restored state
        expected = {s["trace"]: ("success" if s["good"] else "failure", 0) for s in sent}
        expected.update({t: ("success" if good else "failure", 1) for t, good in late.items()})
        labels_sql = ("SELECT trace_id, label, revision, model_version FROM agentgym.v_outcomes_latest "
                      "WHERE tenant_id = {t:String}")
        got: dict[str, tuple[Any, ...]] = {}

        def labelled() -> bool:
            got.clear()
            got.update({r[0]: r[1:] for r in _rows(url, labels_sql, {"t": tenant})})
            return len(got) == len(expected) and all(got[t][0] == lab for t, (lab, _) in expected.items())

        survivors = [other, c]
        try:
            wait_for(labelled, 150, "every trace's expected label", survivors[0])
        except AssertionError:
            missing = {t for t in expected if t not in got or got[t][0] != expected[t][0]}
            raise AssertionError(f"{len(missing)} traces without their expected label: "
                                 f"{_diagnose(bootstrap, app_id, missing)}") from None
        t_labelled = time.monotonic() - t_kill
        assert all(got[t][1] == rev for t, (_, rev) in expected.items() if t in late), \
            {t: got[t] for t in late if got[t][1] != 1}
        assert all(got[t][2] == "m-late" for t in late), "the late traces kept their run (restored join state)"

        # the experiment counted every unit once per arm
        snap_sql = ("SELECT arms.variant, arms.n FROM agentgym.v_stats_snapshots WHERE tenant_id = {t:String} "
                    "AND experiment_id = {e:String} AND metric = 'success_rate' ORDER BY ts DESC LIMIT 1")
        want = {v: len(u) for v, u in units.items()}
        arms: dict[str, int] = {}

        def counted() -> bool:
            rows = _rows(url, snap_sql, {"t": tenant, "e": exp})
            arms.clear()
            if rows:
                arms.update(zip(rows[0][0], rows[0][1]))
            return sum(arms.values()) >= UNITS

        wait_for(counted, 150, "every unit in the experiment's statistics", survivors[0])
        first_full = _rows(url, "SELECT max(ts) FROM agentgym.v_stats_snapshots WHERE experiment_id = {e:String}", {"e": exp})
        # two more looks after the first complete one: a unit counted twice would show by then
        wait_for(lambda: _rows(url, "SELECT count() FROM agentgym.v_stats_snapshots WHERE experiment_id = {e:String} "
                                    "AND metric = 'success_rate' AND ts > {ts:DateTime64(3, 'UTC')}",
                               {"e": exp, "ts": first_full[0][0]})[0][0] >= 2, 30, "two more looks", survivors[0])
        counted()
        assert arms == want, (arms, want)

        # the leader's dataset: exactly the examples of the expected labels
        settings = DatasetSettings(dataset_store=str(home / "datasets"))
        store = DatasetStore(settings.dataset_store)

        def built() -> list[Any]:
            return [m for m in store.list() if m.tenant_id == tenant and m.agent_id == "bot" and m.kind == "sft"]

        manifests = wait_for(built, 60, "the bot's SFT dataset", survivors[0])
        runs = [LabelledRun(tenant, "bot", s["trace"], ({"role": "user", "content": s["prompt"]},), s["output"],
                            "success" if s["good"] else "failure", 0.95) for s in sent]
        quality = QualityConfig(min_confidence=settings.dataset_min_confidence, eval_fraction=settings.dataset_eval_fraction,
                                near_duplicate_threshold=settings.dataset_near_duplicate_threshold,
                                limits=LengthLimits(settings.dataset_max_prompt_chars, settings.dataset_max_completion_chars,
                                                    settings.dataset_min_completion_chars))
        ref = build_examples(runs, quality, Scrubber(settings.scrubbers, settings.dataset_scrub_patterns))
        want_rows = {(e.trace_id, e.split, e.prompt[0]["content"], e.completion) for e in ref.sft}
        assert len(manifests) == 1, [m.dataset_id for m in manifests]
        have_rows = {(r["trace_id"], split, r["prompt"][0]["content"], r["completion"][0]["content"])
                     for split in ("train", "eval") for r in store.read(manifests[0], split)}
        assert have_rows == want_rows

        # nothing visible twice, and no outcome event id with two contents
        dup = _rows(url, "SELECT count(), uniqExact(event_id) FROM agentgym.v_experiences WHERE tenant_id = {t:String}",
                    {"t": tenant})
        assert dup == [(n_bot + LATE, n_bot + LATE)], dup
        contents = _outcome_contents(bootstrap, set(expected), n_bot + 2 * LATE)
        assert {e: c for e, c in contents.items() if len(c) > 1} == {}
        revisions: dict[str, set[int]] = {}
        for cs in contents.values():
            for trace, rev, *_ in cs:
                revisions.setdefault(trace, set()).add(rev)
        assert all(revs == set(range(max(revs) + 1)) for revs in revisions.values()), "revisions without gaps"

        logs = {w.log.name: w.log.read_text(errors="replace") for w in workers}
        takeover = [name for name, text in logs.items() if "owns it now" in text]
        assert len(takeover) == 1, "one survivor took the store over"
        print(f"\nthree workers, kill -9 of the store's owner: every label in ClickHouse {t_labelled:.1f}s after the kill; "
              f"sink taken over by {takeover[0]}; units per arm {arms}; {len(contents)} outcome event ids; "
              f"whole test {time.monotonic() - t_start:.1f}s")
        gym.close()
        gym_late.close()
        for w in survivors:  # SIGTERM to both at once
            assert w.proc is not None
            w.proc.terminate()
        codes = [w.proc.wait(60) for w in survivors if w.proc is not None]
        assert codes == [0, 0], "\n".join(w.tail() for w in survivors)
    finally:
        for w in workers:
            w.kill()


@pytest.mark.timeout(120)
def test_one_sink_of_a_group_does_the_store_wide_chores_and_another_takes_them_over(bootstrap: str, unique: str,
                                                                                   tmp_path: Path) -> None:
    """Several workers sinking into a ClickHouse server share the sink's group: only the sink assigned
    partition 0 of the runs' topic applies deletions and runs the retention pass (before, every worker
    did, so a deletion rewrote the same datasets concurrently); when it leaves, another one has them."""
    spec = TopicSpec(f"chores-{unique}", "Experience", "trace_id", 6, "experiences")
    create_topics(bootstrap, {spec.name: (6, {})})
    store = ChdbStore(tmp_path / "clickhouse")
    fast = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 300}  # rebalances in well under a second
    sinks = [ClickHouseSink(bootstrap, store, group=f"chores-{unique}", batch_ms=100, specs=[spec], deletions=False,
                            consumer_config=fast) for _ in range(2)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in sinks]
    for t in threads:
        t.start()
    holder = -1
    try:
        def settled(members: list[ClickHouseSink]) -> bool:  # every partition assigned, each to one of them
            parts = [p for s in members for _, p in s.assignment]
            return sorted(parts) == list(range(6)) and all(s.assignment for s in members)

        wait_for(lambda: settled(sinks) and sum(s.chores for s in sinks) == 1, 60, "one sink with the chores")
        holder = next(i for i, s in enumerate(sinks) if s.chores)
        sinks[holder].stop()
        threads[holder].join(30)
        sinks[holder].close()  # leaves the group
        rest = [s for i, s in enumerate(sinks) if i != holder]
        wait_for(lambda: settled(rest) and sum(s.chores for s in rest) == 1, 60, "another sink with the chores")
    finally:
        for s in sinks:
            s.stop()
        for t in threads:
            t.join(30)
        for i, s in enumerate(sinks):
            if i != holder:
                s.close()
        store.close()
