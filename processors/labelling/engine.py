"""The labelling engine: joins events into trace state, finalises traces into Outcomes.

Pure (no Kafka, no ClickHouse): the Faust agent in ``processors/labeller.py`` and the
offline evaluation drive the same code. Lifecycle of a trace:

* every experience or feedback updates its :class:`TraceState` and re-arms the quiet
  period (``due_at``);
* once quiet, :meth:`LabellingEngine.finalise` decides the label
  (:func:`agentgym.processors.labelling.decision.decide`) and returns an Outcome record when the
  decision is new or changed — revision 0 first, then 1, 2, ... — plus a training
  example when the label is explicit and a drift observation for the trace's first
  label; the caller applies those to the agent's :class:`AgentLearner`;
* after ``state_ttl_s`` without events the state expires.
"""

from __future__ import annotations

import heapq
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agentgym.processors.experiments.metrics import is_audit_label
from agentgym.processors.labelling.decision import Decision, decide, signal_decision
from agentgym.processors.labelling.drift import DriftEvent, SuccessRateDriftMonitor
from agentgym.processors.labelling.features import model_features
from agentgym.processors.labelling.model import OnlineOutcomeModel, ProportionStatistic
from agentgym.processors.labelling.rules import RuleBook
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.labelling.state import (
    TraceState,
    feedback_item,
    summarise_experience,
    validate_experience,
    validate_feedback,
)

__all__ = [
    "AgentLearner",
    "TrainingExample",
    "Observation",
    "Finalised",
    "LabellingEngine",
    "DueQueue",
    "InMemoryLabeller",
    "drift_alert_record",
    "outcome_event_id",
]


def outcome_event_id(trace_id: str, revision: int) -> str:
    """Deterministic, so a replayed revision is deduplicated downstream."""
    return f"{trace_id}:outcome:{revision}"


@dataclass
class AgentLearner:
    """What the labeller learns about one agent: the online model, the base rate of
    its explicit labels, and a drift detector per model version. Checkpointed as bytes."""

    model: OnlineOutcomeModel
    drift: SuccessRateDriftMonitor
    base_rate: ProportionStatistic = field(default_factory=ProportionStatistic)

    def learn(self, example: TrainingExample) -> None:
        """Trains the model on one explicitly labelled trace."""
        self.model.learn(example.features, example.success)
        if example.first:
            self.base_rate = self.base_rate.add(example.success)

    def observe(self, observation: Observation) -> DriftEvent | None:
        """Feeds one trace's first label to its model version's drift detector."""
        return self.drift.update(observation.model_version, observation.success)

    def to_bytes(self) -> bytes:
        """A checkpoint (pickle; read back only from this app's own changelog topic)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(data: bytes) -> AgentLearner:
        """Inverse of :meth:`to_bytes`."""
        learner = pickle.loads(data)  # noqa: S301 - our own checkpoint
        if not isinstance(learner, AgentLearner):
            raise TypeError(f"not an AgentLearner checkpoint: {type(learner).__name__}")
        return learner


@dataclass(frozen=True)
class TrainingExample:
    """An explicitly labelled trace for the agent's online model.

    Attributes:
        first: the trace's first explicit label (counts towards the base rate); a later
            contradicting label is learnt again but not counted twice.
    """

    features: dict[str, float]
    success: bool
    first: bool


@dataclass(frozen=True)
class Observation:
    """A trace's first success/failure label, for its model version's drift detector
    (only labels from human, AI-judge or rules unless ``drift_sources`` is ``all``)."""

    model_version: str
    success: bool


@dataclass(frozen=True)
class Finalised:
    """What finalising one trace produced.

    Attributes:
        outcome: the Outcome record to emit, or None when the decision equals the one
            emitted before (nothing to revise).
        example: a training example for the agent's learner (explicit label).
        observation: an outcome for the drift detector (the trace's first label).
    """

    decision: Decision
    outcome: dict[str, Any] | None
    example: TrainingExample | None
    observation: Observation | None


class LabellingEngine:
    """Joins, decides and learns; holds no state of its own besides configuration.

    Args:
        rulebook: per tenant/agent rules (default: built-in defaults for everyone).
        settings: timing and drift settings.
    """

    def __init__(self, rulebook: RuleBook | None = None, settings: LabellerSettings | None = None) -> None:
        self.settings = settings or LabellerSettings()
        self.rulebook = rulebook or (
            RuleBook.from_yaml(self.settings.rules_path) if self.settings.rules_path else RuleBook()
        )
        self.quiet_ms = int(self.settings.quiet_period_s * 1000)
        self.orphan_ms = int(self.settings.orphan_wait_s * 1000)
        self.ttl_ms = int(self.settings.state_ttl_s * 1000)

    # -- learners --------------------------------------------------------------------
    def new_learner(self, tenant_id: str, agent_id: str) -> AgentLearner:
        """A fresh learner for an agent, of the model kind its rules name."""
        return AgentLearner(
            self._new_model(tenant_id, agent_id),
            SuccessRateDriftMonitor(self.settings.drift_delta, self.settings.drift_grace_period),
        )

    def _new_model(self, tenant_id: str, agent_id: str) -> OnlineOutcomeModel:
        rules = self.rulebook.rules_for(tenant_id, agent_id)
        return OnlineOutcomeModel(rules.model_kind, calibrate=rules.model_calibration, label_noise=rules.label_noise)

    def fit_learner(self, learner: AgentLearner | None, tenant_id: str, agent_id: str) -> AgentLearner:
        """The learner to use: ``learner``, unless missing or of another model kind than the rules now name."""
        if learner is None:
            return self.new_learner(tenant_id, agent_id)
        rules = self.rulebook.rules_for(tenant_id, agent_id)
        m = learner.model
        if (m.kind, m.calibrate, m.label_noise) != (rules.model_kind, rules.model_calibration, rules.label_noise):
            learner.model = self._new_model(tenant_id, agent_id)  # the rules changed: start over
        return learner

    # -- joining ---------------------------------------------------------------------
    def ingest_experience(
        self, state: TraceState | None, record: dict[str, Any], partition: int, now_ms: int, key: bytes | None = None
    ) -> TraceState:
        """Joins a decoded Experience into its trace's state (created when missing).

        Raises:
            InvalidEventError: naming the field of an experience the labeller cannot use.
        """
        validate_experience(record, key)
        run = summarise_experience(record)
        if state is None:
            state = TraceState(record["trace_id"], record["tenant_id"], record["agent_id"], partition, now_ms, now_ms)
        elif state.run is not None and state.run == run:
            return state  # a redelivered experience: nothing new (a revision, same event id, replaces the run)
        state.add_run(run, now_ms)
        return state

    def ingest_feedback(
        self, state: TraceState | None, record: dict[str, Any], partition: int, now_ms: int, key: bytes | None = None
    ) -> tuple[TraceState, bool]:
        """Joins a decoded Feedback record. Returns the state and whether it changed
        (False for a redelivered feedback event, and for a reviewer's audit label).

        A reviewer's audit label (``metrics.is_audit_label``: source human, metadata
        audit=true) is the gold label that corrects this labeller's label in the
        experiment's prediction-powered estimate; it must not become that label (the
        correction ``gold - label`` would vanish) nor teach the labeller's model (the
        labels would then depend on the audit sample), so it is left out here.

        Raises:
            InvalidEventError: naming the field of invalid feedback (dead-letter it).
        """
        validate_feedback(record, key)
        if state is None:
            state = TraceState(record["trace_id"], record["tenant_id"], record["agent_id"], partition, now_ms, now_ms)
        if is_audit_label(record):
            return state, False
        changed = state.add_feedback(feedback_item(record), now_ms, self.settings.max_feedback_per_trace)
        return state, changed

    # -- timing ----------------------------------------------------------------------
    def due_at(self, state: TraceState) -> int:
        """When a dirty trace is next labelled (wall-clock ms)."""
        return state.due_at(self.quiet_ms, self.orphan_ms)

    def is_due(self, state: TraceState, now_ms: int) -> bool:
        return state.dirty and now_ms >= self.due_at(state)

    def is_expired(self, state: TraceState, now_ms: int) -> bool:
        return now_ms - state.last_event_ms >= self.ttl_ms

    # -- finalising ------------------------------------------------------------------
    def finalise(self, state: TraceState, learner: AgentLearner | None, now_ms: int) -> Finalised:
        """Decides the trace's label and builds the Outcome to emit.

        Mutates ``state`` (revision, emitted decision, flags), never ``learner``: the
        returned example and observation are applied by the caller
        (:meth:`AgentLearner.learn`, :meth:`AgentLearner.observe`), possibly elsewhere.

        Args:
            learner: the agent's learner for the model and base rate (None: none yet).
        """
        rules = self.rulebook.rules_for(state.tenant_id, state.agent_id)
        decision = decide(
            state, rules, self.rulebook.version,
            learner.model if learner else None, learner.base_rate if learner else None,
        )
        example = None
        teach = decision.source == "human" or (decision.source == "ai_judge" and rules.model_learn_from_ai_judge)
        if teach and rules.model_train_on == "undecided":
            teach = signal_decision(state, rules, "")[0] is None
        if teach and state.run is not None and decision.label != "unknown" and state.learned != decision.label:
            # a trace is learnt once; again only if a later explicit label contradicts the first
            example = TrainingExample(model_features(state, rules), decision.label == "success", state.learned is None)
            state.learned = decision.label
        observation = None
        independent = decision.source in ("human", "ai_judge", "signals")
        if (not state.drift_counted and state.run is not None and decision.label != "unknown"
                and (independent or self.settings.drift_sources == "all")):
            observation = Observation(state.run.model_version, decision.label == "success")
            state.drift_counted = True
        outcome = None
        # a new revision when the decision changed, or when the experience arrived after
        # an outcome was emitted without it (model version, experiment, variant)
        has_run = state.run is not None
        if state.revision < 0 or not decision.same_as(state.emitted) or (state.emitted or {}).get("has_run") != has_run:
            state.revision += 1
            outcome = self.outcome_record(state, decision, now_ms)
            state.emitted = {
                "label": decision.label, "confidence": decision.confidence, "labeller": decision.labeller,
                "corrected_output": decision.corrected_output, "has_run": has_run,
            }
        state.dirty = False
        return Finalised(decision, outcome, example, observation)

    @staticmethod
    def outcome_record(state: TraceState, decision: Decision, now_ms: int) -> dict[str, Any]:
        """The Outcome record (``schemas/avro/Outcome``) of a decision at the state's revision."""
        run = state.run
        return {
            "event_id": outcome_event_id(state.trace_id, state.revision),
            "tenant_id": state.tenant_id,
            "agent_id": state.agent_id,
            "trace_id": state.trace_id,
            "timestamp_ms": now_ms,
            "label": decision.label,
            "confidence": float(decision.confidence),
            "labeller": decision.labeller,
            "labeller_version": decision.labeller_version,
            "reasons": list(decision.reasons),
            "revision": state.revision,
            "model_version": run.model_version if run else "",
            "experiment_id": run.experiment_id if run else None,
            "variant": run.variant if run else None,
            "unit_id": run.unit_id if run else None,
            "config_version": run.config_version if run else 0,
            "experiment_status": run.experiment_status if run else "",
            "corrected_output": decision.corrected_output,
        }


def drift_alert_record(event: DriftEvent, tenant_id: str, agent_id: str, now_ms: int, shard: str = "") -> dict[str, Any]:
    """The DriftAlert record (``schemas/avro/DriftAlert``) of a drift event.

    ``shard`` names the learner (e.g. its partition) so that alerts of different
    shards of one agent get different, deterministic event ids.
    """
    return {
        "event_id": f"drift:{tenant_id}:{agent_id}:{event.model_version}:{shard}:{event.n}",
        "tenant_id": tenant_id,
        "agent_id": agent_id,
        "model_version": event.model_version,
        "timestamp_ms": now_ms,
        "metric": event.metric,
        "detector": event.detector,
        "estimate_before": event.estimate_before,
        "estimate_after": event.estimate_after,
        "n": event.n,
    }


class DueQueue:
    """Keys with a due time; ``pop_due`` returns those whose time has come.

    A heap with lazy deletion: re-arming a key pushes a new entry and the stale one is
    skipped when popped, so both operations are O(log n).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def push(self, key: str, due_ms: int) -> None:
        """Arms (or re-arms) ``key`` for ``due_ms``."""
        if self._due.get(key) == due_ms:
            return
        self._due[key] = due_ms
        heapq.heappush(self._heap, (due_ms, key))

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()

    def pop_due(self, now_ms: int) -> Iterator[str]:
        """Yields (and removes) the keys due at ``now_ms``, earliest first."""
        while self._heap and self._heap[0][0] <= now_ms:
            due, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                yield key


class InMemoryLabeller:
    """The engine over an in-memory stream, on a caller-driven clock (simulation, evaluation).

    Feed events in time order with :meth:`experience` / :meth:`feedback`; call
    :meth:`advance` to finalise what is due by then, :meth:`flush` at the end.
    """

    def __init__(self, engine: LabellingEngine) -> None:
        self.engine = engine
        self.states: dict[str, TraceState] = {}
        self.learners: dict[tuple[str, str], AgentLearner] = {}
        self.queue = DueQueue()
        self.outcomes: list[dict[str, Any]] = []
        self.decisions: dict[str, Decision] = {}
        self.drift_alerts: list[dict[str, Any]] = []

    def experience(self, record: dict[str, Any], now_ms: int) -> None:
        self.advance(now_ms)
        st = self.engine.ingest_experience(self.states.get(record["trace_id"]), record, 0, now_ms)
        self._put(st)

    def feedback(self, record: dict[str, Any], now_ms: int) -> None:
        self.advance(now_ms)
        st, changed = self.engine.ingest_feedback(self.states.get(record["trace_id"]), record, 0, now_ms)
        if changed:
            self._put(st)

    def _put(self, st: TraceState) -> None:
        self.states[st.trace_id] = st
        self.queue.push(st.trace_id, self.engine.due_at(st))

    def _finalise(self, st: TraceState, now_ms: int) -> None:
        key = (st.tenant_id, st.agent_id)
        learner = self.learners[key] = self.engine.fit_learner(self.learners.get(key), *key)
        done = self.engine.finalise(st, learner, now_ms)
        self.decisions[st.trace_id] = done.decision
        if done.outcome is not None:
            self.outcomes.append(done.outcome)
        if done.example is not None:
            learner.learn(done.example)
        if done.observation is not None:
            drift = learner.observe(done.observation)
            if drift is not None:
                self.drift_alerts.append(drift_alert_record(drift, st.tenant_id, st.agent_id, now_ms))

    def advance(self, now_ms: int) -> None:
        """Finalises every trace due at ``now_ms``."""
        for key in self.queue.pop_due(now_ms):
            st = self.states.get(key)
            if st is not None and self.engine.is_due(st, now_ms):
                self._finalise(st, now_ms)

    def flush(self, now_ms: int) -> None:
        """Finalises every dirty trace now, quiet or not (end of stream)."""
        self.advance(now_ms)
        for st in self.states.values():
            if st.dirty:
                self._finalise(st, now_ms)
        self.queue.clear()
