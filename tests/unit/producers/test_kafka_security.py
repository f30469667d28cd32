"""AGENTGYM_KAFKA_* settings turned into librdkafka and aiokafka client config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentgym import AgentGym
from agentgym.producers.exceptions import ConfigError
from agentgym.producers.kafka_security import aiokafka_security, client_security, librdkafka_security
from agentgym.producers.settings import SharedSettings

SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_username": "sdk", "kafka_password": "s3cret-pw"}


def test_plaintext_default_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AGENTGYM_KAFKA_SECURITY_PROTOCOL", "AGENTGYM_KAFKA_USERNAME", "AGENTGYM_KAFKA_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    s = SharedSettings()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert librdkafka_security(s) == {} and aiokafka_security(s) == {} and client_security(None) == {}


def test_sasl_settings_become_each_clients_config() -> None:
    s = SharedSettings(**SASL)
    assert librdkafka_security(s) == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                      "sasl.username": "sdk", "sasl.password": "s3cret-pw"}
    assert aiokafka_security(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                    "sasl_plain_username": "sdk", "sasl_plain_password": "s3cret-pw"}
    assert "s3cret-pw" not in repr(s)  # a SecretStr
    ssl = aiokafka_security(SharedSettings(**{**SASL, "kafka_security_protocol": "SASL_SSL"}))
    assert ssl["security_protocol"] == "SASL_SSL" and ssl["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_environment_is_read_when_no_security_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGYM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("AGENTGYM_KAFKA_USERNAME", "gateway")
    monkeypatch.setenv("AGENTGYM_KAFKA_PASSWORD", "pw-from-env")
    assert client_security(None)["sasl.username"] == "gateway"
    assert client_security({}) == {}  # an explicit argument wins


def test_sasl_without_username_names_the_variable() -> None:
    with pytest.raises(ValidationError, match="AGENTGYM_KAFKA_USERNAME"):
        SharedSettings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="AGENTGYM_KAFKA_SASL_MECHANISM"):
        SharedSettings(**{**SASL, "kafka_sasl_mechanism": "PLAIN"})


def test_sdk_rejects_a_kafka_config_that_contradicts_the_security_settings(tmp_path) -> None:
    with pytest.raises(ConfigError, match="sasl.username"):
        AgentGym("127.0.0.1:1", "t", "a", spool_dir=tmp_path, kafka_config={"sasl.username": "other"}, **SASL)
