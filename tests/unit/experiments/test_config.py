"""The experiment configuration model: validation naming the field, status transitions, records."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agentgym.processors.experiments import ExperimentConfig, ExperimentConfigError, MetricSpec, TransitionError, VariantSpec
from agentgym.schemas.codec import AvroCodec


def make(**changes: object) -> ExperimentConfig:
    base = ExperimentConfig(
        experiment_id="exp1", tenant_id="acme", agent_id="bot",
        variants=(VariantSpec("control", "v3", 1.0, True), VariantSpec("treatment", "v4", 1.0)),
        primary_metric=MetricSpec.of("success_rate"),
        guardrails=(MetricSpec.of("latency_ms", limit=0.1, cap=30000.0),),
        status="running", min_samples_per_arm=50,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"experiment_id": "bad id!"}, "experiment_id"),
        ({"agent_id": ""}, "agent_id"),
        ({"variants": (VariantSpec("control", "v3", 1.0, True),)}, "variants"),
        ({"variants": (VariantSpec("a", "v3", 1.0, True), VariantSpec("a", "v4", 1.0))}, "variants"),
        ({"variants": (VariantSpec("a", "v3", 1.0), VariantSpec("b", "v4", 1.0))}, "variants"),
        ({"variants": (VariantSpec("a", "v3", 1.0, True), VariantSpec("b", "", 1.0))}, "variants[b].model_version"),
        ({"variants": (VariantSpec("a", "v3", -1.0, True), VariantSpec("b", "v4", 1.0))}, "variants[a].weight"),
        ({"variants": (VariantSpec("a", "v3", 1.0, True), VariantSpec("b", "v4", 0.0))}, "variants"),
        ({"primary_metric": MetricSpec("nope")}, "primary_metric.name"),
        ({"primary_metric": MetricSpec("success_rate", "mean")}, "primary_metric.kind"),
        ({"guardrails": (MetricSpec.of("latency_ms"),)}, "guardrails[latency_ms].limit"),
        ({"guardrails": (MetricSpec.of("success_rate", limit=0.1),)}, "guardrails[success_rate]"),
        ({"alpha": 0.0}, "alpha"),
        ({"min_samples_per_arm": 0}, "min_samples_per_arm"),
    ],
)
def test_invalid_configs_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ExperimentConfigError) as exc:
        make(**changes).validate()
    assert exc.value.field == field


def test_record_round_trip_through_avro() -> None:
    c = make().validate()
    codec = AvroCodec()
    decoded = codec.decode(codec.encode("ExperimentConfig", c.to_record())).record
    assert ExperimentConfig.from_record(decoded) == c
    assert c.salt == "exp1"


def test_transitions() -> None:
    c = make(status="draft").validate()
    running = c.start("ops")
    assert running.status == "running" and running.config_version == c.config_version + 1 and running.updated_by == "ops"
    paused = running.pause("ops")
    assert paused.resume("ops").status == "running"
    rolled = running.rollback("auto")
    assert rolled.status == "rolled_back" and [v.weight for v in rolled.variants] == [1.0, 0.0]
    promoted = running.promote("treatment", "auto")
    assert promoted.status == "concluded" and [v.weight for v in promoted.variants] == [0.0, 1.0]
    for final in (rolled, promoted, running.stop("ops")):
        with pytest.raises(TransitionError):
            final.pause("ops")
        with pytest.raises(TransitionError):
            final.rollback("ops")
    with pytest.raises(TransitionError):
        running.resume("ops")
    with pytest.raises(ExperimentConfigError):
        running.promote("nobody", "ops")
    ramp = running.with_weights({"treatment": 3.0}, "ops")
    assert [v.weight for v in ramp.variants] == [1.0, 3.0]
    assert len({c.event_id, running.event_id, paused.event_id}) == 3
