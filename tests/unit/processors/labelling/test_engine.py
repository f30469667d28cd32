"""The engine: quiet period, revisions, learning once, drift observations, records that fit the schemas."""

from __future__ import annotations

import pytest

from agentgym.processors.labelling.engine import AgentLearner, DueQueue, InMemoryLabeller, LabellingEngine, drift_alert_record
from agentgym.processors.labelling.drift import DriftEvent
from agentgym.processors.labelling.rules import RuleBook
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.schemas import AvroCodec
from tests.unit.processors.labelling.helpers import experience, feedback

codec = AvroCodec()
SECOND = 1000


def _engine(**rules: object) -> LabellingEngine:
    s = LabellerSettings(quiet_period_s=60, orphan_wait_s=600, state_ttl_s=3600)
    return LabellingEngine(RuleBook(rules or None), s)


def test_first_outcome_after_the_quiet_period_then_a_revision_on_late_feedback() -> None:
    lab = InMemoryLabeller(_engine())
    lab.experience(experience("t1", assignment={"experiment_id": "x", "variant": "B", "unit_type": "user", "unit_id": "u"}), 0)
    lab.feedback(feedback("t1", kind="implicit", signal="task_completed", source="system"), 30 * SECOND)
    lab.advance(89 * SECOND)
    assert lab.outcomes == []  # quiet period counts from the last event
    lab.advance(90 * SECOND)
    assert [(o["revision"], o["label"], o["labeller"]) for o in lab.outcomes] == [(0, "success", "rule:task_completed")]
    lab.feedback(feedback("t1", kind="correction", correction="the right answer"), 3600 * SECOND)
    lab.advance(3660 * SECOND)
    assert len(lab.outcomes) == 2
    o = lab.outcomes[1]
    assert (o["revision"], o["label"], o["labeller"], o["corrected_output"]) == (1, "failure", "human", "the right answer")
    assert (o["experiment_id"], o["variant"], o["unit_id"], o["model_version"]) == ("x", "B", "u", "v1")
    assert o["event_id"] == "t1:outcome:1" and o["timestamp_ms"] == 3660 * SECOND
    for rec in lab.outcomes:  # fits the Avro schema
        assert codec.decode(codec.encode("Outcome", rec), expected="Outcome").record == rec


def test_feedback_that_changes_nothing_emits_no_revision() -> None:
    lab = InMemoryLabeller(_engine())
    lab.experience(experience("t1"), 0)
    lab.feedback(feedback("t1", thumbs_up=True), 0)
    lab.advance(60 * SECOND)
    lab.feedback(feedback("t1", kind="implicit", signal="copy"), 100 * SECOND)  # the human label still stands
    lab.advance(200 * SECOND)
    assert [o["revision"] for o in lab.outcomes] == [0]


def test_an_experience_after_the_outcome_revises_it_with_the_run_fields() -> None:
    lab = InMemoryLabeller(_engine())
    lab.feedback(feedback("t1", thumbs_up=False), 0)
    lab.advance(600 * SECOND)  # orphan wait: labelled without its experience
    assert [(o["revision"], o["model_version"]) for o in lab.outcomes] == [(0, "")]
    lab.experience(experience("t1", model_version="v7"), 700 * SECOND)
    lab.advance(760 * SECOND)
    assert [(o["revision"], o["label"], o["model_version"]) for o in lab.outcomes] == [(0, "failure", ""), (1, "failure", "v7")]


def test_explicit_labels_train_once_and_drift_sees_each_trace_once() -> None:
    eng = _engine()
    st = eng.ingest_experience(None, experience("t1"), 2, 0)
    st, _ = eng.ingest_feedback(st, feedback("t1", thumbs_up=True), 2, 0)
    learner = eng.new_learner("acme", "bot")
    done = eng.finalise(st, learner, 60 * SECOND)
    assert done.example is not None and done.example.success and done.example.first
    assert done.observation is not None and (done.observation.model_version, done.observation.success) == ("v1", True)
    learner.learn(done.example)
    assert (learner.model.n_learned, learner.base_rate.n) == (1, 1)
    # a comment later: re-finalised, nothing new to learn or observe
    st, _ = eng.ingest_feedback(st, feedback("t1", kind="comment", comment="thanks"), 2, 100 * SECOND)
    again = eng.finalise(st, learner, 200 * SECOND)
    assert again.example is None and again.observation is None
    # a contradicting explicit label is learnt again, but counted once in the base rate
    st, _ = eng.ingest_feedback(st, feedback("t1", kind="correction", correction="x", ts=1_800_000_000_000), 2, 300 * SECOND)
    third = eng.finalise(st, learner, 400 * SECOND)
    assert third.example is not None and not third.example.success and not third.example.first
    assert st.partition == 2 and st.revision == 1


def test_rules_only_traces_do_not_train_and_orphans_do_not_train() -> None:
    eng = _engine()
    st = eng.ingest_experience(None, experience("t1", status="error", error="x", output=None), 0, 0)
    assert eng.finalise(st, None, 60 * SECOND).example is None
    orphan, _ = eng.ingest_feedback(None, feedback("t2", thumbs_up=True), 0, 0)
    assert eng.finalise(orphan, None, 600 * SECOND).example is None  # no run features to learn from


def test_train_on_undecided_only() -> None:
    eng = _engine(model_train_on="undecided")
    st = eng.ingest_experience(None, experience("t1", status="error", error="x", output=None), 0, 0)
    st, _ = eng.ingest_feedback(st, feedback("t1", thumbs_up=True), 0, 0)
    assert eng.finalise(st, None, 60 * SECOND).example is None  # the signals had decided this one
    st2 = eng.ingest_experience(None, experience("t2"), 0, 0)
    st2, _ = eng.ingest_feedback(st2, feedback("t2", thumbs_up=True), 0, 0)
    assert eng.finalise(st2, None, 60 * SECOND).example is not None


def test_expiry() -> None:
    eng = _engine()
    st = eng.ingest_experience(None, experience("t1"), 0, 0)
    assert not eng.is_expired(st, 3599 * SECOND) and eng.is_expired(st, 3600 * SECOND)


def test_learner_checkpoint_round_trip_and_rule_changes_reset_the_model() -> None:
    eng = _engine()
    learner = eng.new_learner("acme", "bot")
    lab = InMemoryLabeller(eng)
    for i in range(40):
        lab.experience(experience(f"t{i}", latency_ms=500.0 if i % 2 else 9000.0), i * SECOND)
        lab.feedback(feedback(f"t{i}", thumbs_up=bool(i % 2)), i * SECOND)
    lab.flush(10_000 * SECOND)
    learner = lab.learners[("acme", "bot")]
    restored = AgentLearner.from_bytes(learner.to_bytes())
    x = {"log_latency_s": 0.5, "cat:model_version=v1": 1.0}
    assert restored.model.predict_proba(x) == learner.model.predict_proba(x)
    assert restored.model.n_learned == 40 and restored.base_rate == learner.base_rate
    tree = LabellingEngine(RuleBook({"model_kind": "hoeffding_tree"}), eng.settings)
    assert tree.fit_learner(restored, "acme", "bot").model.kind == "hoeffding_tree"
    with pytest.raises(TypeError):
        AgentLearner.from_bytes(b"\x80\x04K\x01.")  # a pickled int


def test_drift_alert_record_fits_the_schema() -> None:
    ev = DriftEvent("v3", "success_rate", "ADWIN(delta=0.002)", 0.8, 0.4, 123)
    rec = drift_alert_record(ev, "acme", "bot", 1_700_000_000_000)
    assert rec["event_id"] == "drift:acme:bot:v3::123"
    assert codec.decode(codec.encode("DriftAlert", rec), expected="DriftAlert").record == rec


def test_due_queue() -> None:
    q = DueQueue()
    q.push("a", 10)
    q.push("b", 5)
    q.push("a", 20)  # re-armed: the first entry is stale
    assert list(q.pop_due(10)) == ["b"]
    assert "a" in q and len(q) == 1
    assert list(q.pop_due(30)) == ["a"]
    q.push("c", 1)
    q.discard("c")
    assert list(q.pop_due(100)) == [] and len(q) == 0


@pytest.mark.parametrize(("sources", "observed"), [("independent", False), ("all", True)])
def test_drift_sees_model_labels_only_when_asked(sources: str, observed: bool) -> None:
    s = LabellerSettings(quiet_period_s=60, drift_sources=sources)  # type: ignore[arg-type,call-arg]
    eng = LabellingEngine(RuleBook({"model_min_examples": 1}), s)
    learner = eng.new_learner("acme", "bot")
    trained = eng.ingest_experience(None, experience("t0"), 0, 0)
    trained, _ = eng.ingest_feedback(trained, feedback("t0", thumbs_up=True), 0, 0)
    learner.learn(eng.finalise(trained, learner, 60 * SECOND).example)  # type: ignore[arg-type]
    st = eng.ingest_experience(None, experience("t1"), 0, 0)
    done = eng.finalise(st, learner, 60 * SECOND)
    assert done.decision.source == "model"
    assert (done.observation is not None) is observed


def test_a_reviewers_audit_label_neither_relabels_the_run_nor_teaches_the_labeller() -> None:
    """The audit label corrects the labeller's label (prediction-powered estimate): it must not become it."""
    lab = InMemoryLabeller(_engine())
    lab.experience(experience("t1", assignment={"experiment_id": "x", "variant": "B", "unit_type": "user", "unit_id": "u"}), 0)
    lab.feedback(feedback("t1", thumbs_up=True), 0)
    lab.advance(60 * SECOND)
    assert [(o["revision"], o["label"]) for o in lab.outcomes] == [(0, "success")]
    gold = feedback("t1", thumbs_up=False, metadata={"audit": "true", "experiment_id": "x", "reviewer": "k1"})
    lab.feedback(gold, 100 * SECOND)
    lab.advance(3600 * SECOND)
    assert [(o["revision"], o["label"]) for o in lab.outcomes] == [(0, "success")]  # no revision to the gold label
    eng = _engine()
    st = eng.ingest_experience(None, experience("t2"), 0, 0)
    st, changed = eng.ingest_feedback(st, dict(gold, trace_id="t2"), 0, 0)
    assert not changed and st.feedback == []
    assert eng.finalise(st, eng.new_learner("acme", "bot"), 60 * SECOND).example is None  # nothing to learn from
    # the same thumbs without the marker (or from a judge model) is ordinary feedback
    st3 = eng.ingest_experience(None, experience("t3"), 0, 0)
    st3, changed = eng.ingest_feedback(st3, feedback("t3", thumbs_up=False, metadata={"audit": "false"}), 0, 0)
    assert changed and len(st3.feedback) == 1
