"""Units are counted under the experiment status that served them (issue 12).

Traffic served while an experiment is paused all goes to the control; when those
events reach the engine after a resume they must not be counted as experiment
traffic. The assignment the SDK records (Experience v3) carries the configuration
version and the status; the labeller copies them into the Outcome (v2).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.engine import feedback_observation, rating_assignment, unit_observations
from agentgym.processors.labelling.engine import LabellingEngine
from agentgym.producers.assignment import assign
from agentgym.schemas import AvroCodec, default_schema_set
from tests.unit.schemas.records import EXAMPLES

codec = AvroCodec()


def _config(status: str, version: int) -> ExperimentConfig:
    c = ExperimentConfig(
        experiment_id="exp1", tenant_id="acme", agent_id="bot",
        variants=(VariantSpec("control", "v3", 1.0, True), VariantSpec("treatment", "v4", 1.0)),
        primary_metric=MetricSpec.of("rating"), status="running", min_samples_per_arm=50,
    )
    return replace(c, status=status, config_version=version).validate()


def _served_experience(cfg: ExperimentConfig, unit: str) -> dict[str, Any]:
    """What the SDK records for ``unit`` under ``cfg``, after a trip through Avro."""
    a = assign(cfg.to_record(), unit)
    assert a is not None
    record = dict(EXAMPLES["Experience"], tenant_id="acme", trace_id=f"t-{unit}-{cfg.config_version}", assignment=a.as_record())
    return codec.decode(codec.encode("Experience", record), "Experience").record


def test_traffic_served_while_paused_is_not_counted_after_a_resume() -> None:
    running, paused, resumed = _config("running", 1), _config("paused", 2), _config("running", 3)
    before = [_served_experience(running, f"u{i}") for i in range(40)]
    during_pause = [_served_experience(paused, f"p{i}") for i in range(40)]
    assert {e["assignment"]["variant"] for e in during_pause} == {"control"}
    assert {(e["assignment"]["config_version"], e["assignment"]["experiment_status"]) for e in during_pause} == {(2, "paused")}
    # everything reaches the engine after the resume (late delivery, a lagging consumer)
    counted = [unit_observations("experience", e, resumed) for e in before + during_pause]
    assert sum(o is not None for o in counted[:40]) == 40
    assert all(o is None for o in counted[40:])
    # traffic served while running still counts if it arrives during a pause
    assert all(unit_observations("experience", e, paused) is not None for e in before)


def test_events_without_a_served_status_fall_back_to_the_live_status() -> None:
    old = dict(EXAMPLES["Experience"], tenant_id="acme",
               assignment={"experiment_id": "exp1", "variant": "treatment", "unit_type": "user", "unit_id": "u1"})
    v2 = default_schema_set().get("Experience", 2)
    decoded = codec.decode(codec.encode_version(v2, old)).record  # an older SDK's event
    assert decoded["assignment"]["config_version"] == 0 and decoded["assignment"]["experiment_status"] == ""
    assert unit_observations("experience", decoded, _config("running", 3)) is not None
    assert unit_observations("experience", decoded, _config("paused", 3)) is None


def test_outcomes_carry_the_served_status_from_the_labeller_to_the_engine() -> None:
    paused, resumed = _config("paused", 2), _config("running", 3)
    experience = _served_experience(paused, "p1")
    engine = LabellingEngine()
    state = engine.ingest_experience(None, experience, partition=0, now_ms=1, key=experience["trace_id"].encode())
    done = engine.finalise(state, None, now_ms=10_000_000)
    assert done.outcome is not None
    outcome = codec.decode(codec.encode("Outcome", done.outcome), "Outcome").record
    assert (outcome["variant"], outcome["config_version"], outcome["experiment_status"]) == ("control", 2, "paused")
    assert unit_observations("outcome", outcome, resumed) is None
    running_outcome = dict(outcome, experiment_status="running", config_version=1)
    assert unit_observations("outcome", running_outcome, resumed) is not None
    v1 = default_schema_set().get("Outcome", 1)
    old = codec.decode(codec.encode_version(v1, {k: v for k, v in outcome.items() if k in {f["name"] for f in v1.raw["fields"]}})).record
    assert (old["config_version"], old["experiment_status"]) == (0, "")


def test_feedback_on_a_trace_served_while_paused_is_not_counted() -> None:
    paused, resumed = _config("paused", 2), _config("running", 3)
    assert rating_assignment(_served_experience(paused, "p1"), resumed) is None
    joined = rating_assignment(_served_experience(resumed, "u1"), resumed)
    assert joined is not None and joined["s"] == "running"
    fb = {"event_id": "f1", "tenant_id": "acme", "agent_id": "bot", "trace_id": "t", "timestamp_ms": 0,
          "kind": "rating", "source": "human", "rating": 4.0, "rating_scale": 5.0}
    assert feedback_observation(fb, joined, _config("paused", 4)) is not None  # served running: still counts
