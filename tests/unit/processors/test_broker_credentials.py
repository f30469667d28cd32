"""Faust's broker credentials from AGENTGYM_KAFKA_*: what Faust hands aiokafka equals aiokafka_security."""

from __future__ import annotations

from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from agentgym.processors.app import broker_credentials
from agentgym.processors.settings import ProcessorSettings
from agentgym.producers.kafka_security import aiokafka_security


def test_plaintext_gives_faust_no_credentials() -> None:
    assert broker_credentials(ProcessorSettings(kafka_security_protocol="PLAINTEXT")) is None


def test_faust_passes_aiokafka_the_same_sasl_arguments() -> None:
    for protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        s = ProcessorSettings(kafka_security_protocol=protocol, kafka_sasl_mechanism="SCRAM-SHA-256",
                              kafka_username="processors", kafka_password="pw-processors")
        faust_args = credentials_to_aiokafka_auth(broker_credentials(s))
        ours = aiokafka_security(s)
        assert {k: v for k, v in faust_args.items() if k != "ssl_context"} == {k: v for k, v in ours.items() if k != "ssl_context"}
        assert ("ssl_context" in faust_args and faust_args["ssl_context"] is not None) == (protocol == "SASL_SSL")
