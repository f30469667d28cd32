"""AGENTGYM_KAFKA_SSL_* turned into librdkafka, aiokafka and Faust settings; bad files refused naming the variable."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from agentgym.ops.cli import main
from agentgym.ops.exceptions import StackError
from agentgym.ops.kafka.broker import BrokerTLS, KafkaBroker
from agentgym.processors.app import broker_credentials
from agentgym.processors.settings import ProcessorSettings
from agentgym.producers.kafka_security import SECURITY_KEYS, aiokafka_security, librdkafka_security
from agentgym.producers.settings import SharedSettings
from tests.tls import TestPKI


def test_ssl_settings_become_each_clients_config(test_pki: TestPKI) -> None:
    s = SharedSettings(kafka_security_protocol="SSL", kafka_ssl_ca=test_pki.ca, kafka_ssl_cert=test_pki.client_cert,
                       kafka_ssl_key=test_pki.client_key)
    assert librdkafka_security(s) == {"security.protocol": "SSL", "ssl.ca.location": str(test_pki.ca),
                                      "ssl.certificate.location": str(test_pki.client_cert),
                                      "ssl.key.location": str(test_pki.client_key)}
    assert set(librdkafka_security(s)) <= SECURITY_KEYS  # a pass-through config may not contradict them
    conf = aiokafka_security(s)
    assert conf["security_protocol"] == "SSL" and "sasl_mechanism" not in conf
    ctx = conf["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Agent Gym test ca"),),)]


def test_sasl_ssl_combines_both() -> None:
    s = SharedSettings(kafka_security_protocol="SASL_SSL", kafka_username="sdk", kafka_password="pw-sdk-12")
    conf = librdkafka_security(s)
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.username"] == "sdk" and "ssl.ca.location" not in conf


def test_faust_gets_an_ssl_credential_with_the_same_context(test_pki: TestPKI) -> None:
    s = ProcessorSettings(kafka_security_protocol="SSL", kafka_ssl_ca=test_pki.ca)
    args = credentials_to_aiokafka_auth(broker_credentials(s))
    assert args["security_protocol"] == "SSL"
    assert args["ssl_context"].get_ca_certs() == aiokafka_security(s)["ssl_context"].get_ca_certs() != []


@pytest.mark.parametrize(("values", "message"), [
    ({"kafka_ssl_ca": "ca"}, r"AGENTGYM_KAFKA_SSL_CA set but AGENTGYM_KAFKA_SECURITY_PROTOCOL is 'PLAINTEXT'"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_ca": "missing"}, r"AGENTGYM_KAFKA_SSL_CA \(kafka_ssl_ca\): .*missing.pem: no such file"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cert": "client_cert"}, r"AGENTGYM_KAFKA_SSL_CERT \(kafka_ssl_cert\) and AGENTGYM_KAFKA_SSL_KEY"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cert": "client_cert", "kafka_ssl_key": "directory"},
     r"AGENTGYM_KAFKA_SSL_KEY \(kafka_ssl_key\): .*: not a file"),
])
def test_a_bad_tls_setting_names_its_variable(test_pki: TestPKI, tmp_path: Path, values: dict[str, str], message: str) -> None:
    paths = {"missing": tmp_path / "missing.pem", "directory": tmp_path}
    resolved = {k: (paths.get(v) or getattr(test_pki, v)) if k.startswith("kafka_ssl") else v for k, v in values.items()}
    with pytest.raises(ValidationError, match=message):
        SharedSettings(**resolved)


def test_a_mismatched_client_key_names_the_variables(test_pki: TestPKI) -> None:
    s = SharedSettings(kafka_security_protocol="SSL", kafka_ssl_cert=test_pki.client_cert, kafka_ssl_key=test_pki.server_key)
    with pytest.raises(ValueError, match="AGENTGYM_KAFKA_SSL_CERT/AGENTGYM_KAFKA_SSL_KEY"):
        aiokafka_security(s)


def test_the_broker_listener_follows_tls_and_sasl(test_pki: TestPKI, tmp_path: Path) -> None:
    tls = BrokerTLS(test_pki.server_cert, test_pki.server_key, test_pki.ca)
    ssl_only = KafkaBroker(tmp_path, port=19092, tls=tls)
    props = ssl_only._properties()
    assert ssl_only.security_protocol == "SSL"
    assert "listeners=SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in props
    assert "ssl.keystore.type=PEM" in props and "ssl.client.auth=none" in props
    assert ssl_only.client_env("sdk")["AGENTGYM_KAFKA_SSL_CA"] == str(test_pki.ca)
    both = KafkaBroker(tmp_path, port=19092, tls=tls, sasl={"admin": "admin-password", "sdk": "sdk-password"})
    assert both.security_protocol == "SASL_SSL"
    assert "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=" in both._properties()
    assert both.client_security("sdk")["security.protocol"] == "SASL_SSL"


def test_broker_tls_files_are_checked_naming_the_option(test_pki: TestPKI, tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"--tls-key: .*gone.key: no such file"):
        BrokerTLS(test_pki.server_cert, tmp_path / "gone.key", test_pki.ca).check()
    with pytest.raises(StackError, match=r"--tls-cert/--tls-key: .*not a PEM certificate and its private key"):
        BrokerTLS(test_pki.server_cert, test_pki.client_key, test_pki.ca).check()
    pkcs1 = tmp_path / "ec.key"
    pkcs1.write_text(test_pki.server_key.read_text().replace("BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY"))
    with pytest.raises(StackError, match=r"--tls-key: .*PKCS#8"):
        BrokerTLS(test_pki.server_cert, pkcs1, test_pki.ca).check()


def test_kafka_start_tls_needs_its_files(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["kafka", "start", "--tls", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--tls needs --tls-cert, --tls-key, --tls-ca" in res.output, res.output
    res = CliRunner().invoke(main, ["kafka", "start", "--tls-ca", str(tmp_path), "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "need --tls" in res.output, res.output
