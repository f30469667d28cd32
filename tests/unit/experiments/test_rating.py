"""The ``rating`` metric: feedback joined to its trace's assignment, normalised, units not events."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.config import ExperimentConfigError
from agentgym.processors.experiments.engine import (
    ExperimentState,
    UnitObservation,
    analyse,
    apply_observation,
    feedback_observation,
    merge_partials,
    rating_assignment,
)
from agentgym.processors.experiments.metrics import EXPOSURE, METRICS, normalised_rating
from agentgym.processors.stats import SampleMeanStatistic
from agentgym.producers.assignment import assign


def config(**changes: Any) -> ExperimentConfig:
    c = ExperimentConfig(
        experiment_id="exp1", tenant_id="acme", agent_id="bot",
        variants=(VariantSpec("control", "v3", 1.0, True), VariantSpec("treatment", "v4", 1.0)),
        primary_metric=MetricSpec.of("rating"),
        guardrails=(MetricSpec.of("latency_ms", limit=0.2, cap=5000.0),),
        status="running", min_samples_per_arm=50,
    )
    return replace(c, **changes).validate()


def experience(unit: str, variant: str, trace: str, tenant: str = "acme") -> dict[str, Any]:
    return {"tenant_id": tenant, "trace_id": trace, "status": "ok", "latency_ms": 100.0, "cost_usd": 0.0,
            "assignment": {"experiment_id": "exp1", "variant": variant, "unit_type": "user", "unit_id": unit}}


def feedback(trace: str, rating: float | None, scale: float = 5.0, source: str = "human", event_id: str | None = None,
             tenant: str = "acme") -> dict[str, Any]:
    return {"event_id": event_id or f"f-{trace}-{rating}", "tenant_id": tenant, "agent_id": "bot", "trace_id": trace,
            "timestamp_ms": 0, "kind": "rating", "source": source, "rating": rating, "rating_scale": scale}


def test_the_rating_metric_is_a_normalised_mean_that_should_increase() -> None:
    m = METRICS["rating"]
    assert (m.kind, m.source, m.direction) == ("mean", "feedback", "increase")
    assert normalised_rating(feedback("t", 4.0)) == pytest.approx(0.8)
    assert normalised_rating(feedback("t", 1.0, scale=1.0)) == 1.0
    assert normalised_rating(feedback("t", 7.0)) == 1.0  # clipped to [0, 1]
    assert normalised_rating(feedback("t", None)) is None
    assert normalised_rating(feedback("t", 3.0, scale=0.0)) is None
    spec = MetricSpec.of("rating")
    assert (spec.kind, spec.direction) == ("mean", "increase")
    with pytest.raises(ExperimentConfigError):
        replace(config(), primary_metric=MetricSpec("rating", "proportion", "increase")).validate()


def test_assignments_are_remembered_only_for_running_experiments_with_a_rating_metric() -> None:
    cfg = config()
    assert rating_assignment(experience("u1", "treatment", "t1"), cfg) == {"t": "acme", "e": "exp1", "v": "treatment", "u": "u1"}
    no_rating = config(primary_metric=MetricSpec.of("success_rate"))
    assert rating_assignment(experience("u1", "treatment", "t1"), no_rating) is None
    assert rating_assignment(experience("u1", "treatment", "t1"), replace(cfg, status="paused")) is None
    assert rating_assignment(experience("u1", "nobody", "t1"), cfg) is None
    assert rating_assignment(experience("u1", "control", "t1", tenant="other"), cfg) is None
    assert rating_assignment(experience("u1", "control", "t1"), None) is None


@pytest.mark.parametrize(
    ("record", "observed"),
    [
        (feedback("t1", 4.0), True),
        (feedback("t1", 4.0, source="ai"), False),  # only human ratings by default
        (feedback("t1", 4.0, source="system"), False),
        (feedback("t1", None), False),  # thumbs, comments, ...: no rating
        (feedback("t1", 4.0, tenant="other"), False),
    ],
)
def test_which_feedback_is_observed(record: dict[str, Any], observed: bool) -> None:
    cfg = config()
    a = rating_assignment(experience("u1", "treatment", "t1"), cfg)
    obs = feedback_observation(record, a, cfg)
    assert (obs is not None) is observed
    if obs is not None:
        assert obs == UnitObservation("acme", "exp1", "u1", "treatment", "feedback", "t1", {"rating": 0.8}, record["event_id"])
        assert UnitObservation.from_json(obs.to_json()) == obs


def test_feedback_is_not_observed_without_an_assignment_or_a_running_experiment() -> None:
    cfg = config()
    a = rating_assignment(experience("u1", "treatment", "t1"), cfg)
    assert feedback_observation(feedback("t1", 4.0), None, cfg) is None  # the trace's experience is unknown
    assert feedback_observation(feedback("t1", 4.0), a, None) is None
    assert feedback_observation(feedback("t1", 4.0), a, replace(cfg, status="paused")) is None
    assert feedback_observation(feedback("t1", 4.0), a, config(primary_metric=MetricSpec.of("success_rate"))) is None
    # the sources can be widened
    assert feedback_observation(feedback("t1", 4.0, source="ai"), a, cfg, sources={"human", "ai"}) is not None


def _fold(cfg: ExperimentConfig, events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Experiences remember their trace's assignment; feedback is joined to it (as the processor does)."""
    from agentgym.processors.experiments.engine import unit_observations

    traces: dict[str, dict[str, str]] = {}
    units: dict[str, Any] = {}
    part: dict[str, Any] | None = None
    for source, rec in events:
        if source == "experience":
            a = rating_assignment(rec, cfg)
            if a is not None:
                traces[rec["trace_id"]] = a
            obs = unit_observations("experience", rec, cfg)
        else:
            obs = feedback_observation(rec, traces.get(rec["trace_id"]), cfg)
        if obs is not None:
            units[obs.key], part, _ = apply_observation(units.get(obs.key), part, obs, cfg)
    return merge_partials([part or {}], cfg)


def test_a_units_rating_is_the_mean_of_its_ratings_counted_once() -> None:
    cfg = config()
    events = [
        ("experience", experience("u1", "control", "t1")),
        ("experience", experience("u1", "control", "t2")),
        ("feedback", feedback("t1", 5.0, event_id="f1")),
        ("feedback", feedback("t2", 2.0, event_id="f2")),
        ("feedback", feedback("t2", 2.0, event_id="f2")),  # redelivered: not counted twice
        ("feedback", feedback("t1", 1.0, event_id="f3", source="ai")),  # not human: ignored
        ("experience", experience("u2", "control", "t3")),
        ("feedback", feedback("t3", 3.0, scale=10.0, event_id="f4")),
        ("feedback", feedback("t9", 5.0, event_id="f5")),  # no experience for t9: ignored
    ]
    totals = _fold(cfg, events)
    c = totals["control"]
    assert c[EXPOSURE].n == 2
    assert c["rating"] == SampleMeanStatistic.from_values([(1.0 + 0.4) / 2, 0.3])
    assert totals["treatment"]["rating"].n == 0


def test_a_better_rated_treatment_is_promoted_on_the_rating_metric() -> None:
    cfg = config(guardrails=())
    rng = random.Random(7)
    events: list[tuple[str, dict[str, Any]]] = []
    mean = {"control": 3.0, "treatment": 3.8}
    for i in range(1200):
        u = f"user-{i}"
        a = assign(cfg.to_record(), u)
        assert a is not None
        events.append(("experience", experience(u, a.variant, f"t{i}")))
        stars = min(5.0, max(1.0, round(rng.gauss(mean[a.variant], 1.0))))
        events.append(("feedback", feedback(f"t{i}", stars, event_id=f"f{i}")))
    totals = _fold(cfg, events)
    analysis, _ = analyse(cfg, totals, ExperimentState())
    assert analysis.primary.metric == "rating"
    assert analysis.decision.action == "promote_winner" and analysis.decision.winner == "treatment", analysis.decision
