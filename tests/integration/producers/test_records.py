"""The one acknowledged producer (:mod:`agentgym.producers.records`) and its typed errors.

On the session's broker an experiment configuration written by the admin travels through
the record producer and reads back unchanged. Where no broker listens (a free port: no
Kafka mock, librdkafka itself finds nobody), a send raises ``DeliveryError`` and the
experiment admin turns it into its own ``PublishError``.
"""

from __future__ import annotations

import logging

import pytest

from agentgym.ops.kafka.broker import free_port
from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.admin import ExperimentAdmin
from agentgym.processors.experiments.exceptions import PublishError
from agentgym.producers.exceptions import BrokerError, DeliveryError
from agentgym.producers.records import RecordProducer, read_topic
from tests.unit.schemas.records import EXAMPLES

pytestmark = pytest.mark.integration


def _config(unique: str) -> ExperimentConfig:
    return ExperimentConfig(
        experiment_id=f"exp-{unique}", tenant_id=f"t-{unique}", agent_id="bot",
        variants=(VariantSpec("control", "v1", 1.0, True), VariantSpec("treatment", "v2", 1.0)),
        primary_metric=MetricSpec.of("success_rate"), status="running",
    )


def test_the_admin_publishes_through_the_record_producer(bootstrap: str, unique: str) -> None:
    config = _config(unique)
    with ExperimentAdmin(bootstrap) as admin:
        assert admin.publish(config) is config
        assert admin.get(config.experiment_id).to_record() == config.to_record()
    on_topic = read_topic(bootstrap, "experiments", match=lambda r: r["experiment_id"] == config.experiment_id)
    assert on_topic == [config.to_record()]


def test_an_unacknowledged_record_raises_the_typed_errors(unique: str) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    config = _config(unique)
    with RecordProducer(nowhere, timeout_s=1.0) as producer:
        with pytest.raises(DeliveryError, match="did not acknowledge the ExperimentConfig record within 1.0s") as sent:
            producer.send("experiments", config.to_record())
        assert isinstance(sent.value, BrokerError)
        with pytest.raises(DeliveryError, match="did not acknowledge 2 ExperimentConfig records"):
            producer.send_many("experiments", [config.to_record(), config.to_record()])
    with ExperimentAdmin(nowhere, timeout_s=1.0) as admin:
        with pytest.raises(PublishError, match=f"configuration v1 of {config.experiment_id} not acknowledged") as published:
            admin.publish(config)
    assert isinstance(published.value.__cause__, DeliveryError)


def test_an_unreachable_broker_is_said_once_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """A CLI command with the broker away says so in one line, not a flood of librdkafka errors."""
    caplog.set_level(logging.INFO)
    producer = RecordProducer(f"127.0.0.1:{free_port()}", timeout_s=3.0)
    with pytest.raises(DeliveryError):
        producer.send("models", EXAMPLES["ModelVersion"])
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1, said
    assert "nothing is written" in said[0]
    assert len([r for r in caplog.records if r.name == "agentgym.kafka"]) <= 2  # rate-limited relay of librdkafka
