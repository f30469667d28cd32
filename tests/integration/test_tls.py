"""Encryption in transit with real TLS connections and the fixtures' test CA.

One broker, started as an operator would (``agentgym kafka start --tls --tls-client-auth``):
the SDK produces, the HTTP API (served over https) ingests with its followers on TLS, and a
Faust worker with the ClickHouse sink consumes both events into the embedded engine. A
plain client, a client without the CA and one without a client certificate are refused with
the reason; an https client that does not trust the CA, and a plain-http one, get nothing.
"""

from __future__ import annotations

import logging
import ssl
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from agentgym import AgentGym
from agentgym.ops.cli import main
from agentgym.ops.kafka.broker import BrokerTLS, KafkaBroker, free_port
from agentgym.processors.store import StoreSettings, open_reader
from tests.tls import TestPKI
from tests.workers import Worker, wait_for, worker_env

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def tls_broker(test_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """``agentgym kafka start --tls --tls-client-auth`` with the test CA's server certificate (stopped with ``kafka stop``)."""
    runner = CliRunner(env={"AGENTGYM_KAFKA_CONTROLLER_PORT": str(free_port())})
    data = tmp_path_factory.mktemp("kafka-tls")
    args = ["--port", str(free_port()), "--data-dir", str(data)]
    res = runner.invoke(main, ["kafka", "start", "--tls", "--tls-cert", str(test_pki.server_cert), "--tls-key",
                               str(test_pki.server_key), "--tls-ca", str(test_pki.ca), "--tls-client-auth", *args])
    assert res.exit_code == 0, res.output
    try:
        assert f"AGENTGYM_KAFKA_SECURITY_PROTOCOL=SSL, AGENTGYM_KAFKA_SSL_CA={test_pki.ca}" in res.output
        res = runner.invoke(main, ["kafka", "status", *args])  # finds the broker's TLS files by itself
        assert res.exit_code == 0 and "serving metadata" in res.output, res.output
        yield KafkaBroker(data, port=int(args[1]), tls=BrokerTLS.load(data))
    finally:
        res = runner.invoke(main, ["kafka", "stop", *args])
        assert res.exit_code == 0 and "kafka stopped" in res.output, res.output


def _env(broker: KafkaBroker, pki: TestPKI) -> dict[str, str]:
    """A component's AGENTGYM_KAFKA_*: the CA, and its client certificate (the broker requires one)."""
    return {**broker.client_env("any"), "AGENTGYM_KAFKA_SSL_CERT": str(pki.client_cert),
            "AGENTGYM_KAFKA_SSL_KEY": str(pki.client_key)}


def _metadata(broker: KafkaBroker, timeout_s: float = 1.5, **conf: Any) -> tuple[list[KafkaError], bool]:
    """librdkafka's errors while asking ``broker`` for metadata with ``conf``, and whether it answered in time.

    A refused handshake fails within milliseconds; ``timeout_s`` only bounds the wait for that.
    """
    errors: list[KafkaError] = []
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers, "error_cb": errors.append, "log_level": 0, **conf})
    try:
        admin.list_topics(timeout=timeout_s)
        return errors, True
    except KafkaException:
        admin.poll(0.5)  # serves error_cb
        return errors, False


def test_clients_without_tls_the_ca_or_a_certificate_are_refused(tls_broker: KafkaBroker, test_pki: TestPKI) -> None:
    assert tls_broker.security_protocol == "SSL"
    _, served = _metadata(tls_broker)  # PLAINTEXT against a TLS listener
    assert not served
    errors, served = _metadata(tls_broker, **{"security.protocol": "SSL", "ssl.ca.location": str(test_pki.other_ca)})
    assert not served
    assert any(e.code() == KafkaError._SSL and "certificate verify failed" in e.str() for e in errors), errors
    errors, served = _metadata(tls_broker, **{"security.protocol": "SSL", "ssl.ca.location": str(test_pki.ca)})
    assert not served  # the CA, but no client certificate: the broker requires one
    assert any("alert bad certificate" in e.str() for e in errors), errors  # the broker's alert
    errors, served = _metadata(tls_broker, 20, **{"security.protocol": "SSL", "ssl.ca.location": str(test_pki.ca),
                                                  "ssl.certificate.location": str(test_pki.client_cert),
                                                  "ssl.key.location": str(test_pki.client_key)})
    assert served, errors


def test_the_sdk_without_the_ca_logs_why_and_keeps_the_event(tls_broker: KafkaBroker, test_pki: TestPKI, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="agentgym")
    with AgentGym(tls_broker.bootstrap_servers, "t-no-ca", "bot", spool_dir=tmp_path / "spool", delivery_timeout_s=2,
                  kafka_security_protocol="SSL", kafka_ssl_ca=test_pki.other_ca, kafka_ssl_cert=test_pki.client_cert,
                  kafka_ssl_key=test_pki.client_key) as gym:
        gym.record_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=1.0)
        wait_for(lambda: any("TLS with Kafka at" in r.getMessage() for r in caplog.records), 20, "the SDK's TLS error")
        gym.flush(10)
        assert gym.stats["spooled"] == 1  # kept on disk for a later replay, not lost
    message = next(r.getMessage() for r in caplog.records if "TLS with Kafka at" in r.getMessage())
    assert "certificate verify failed" in message and "AGENTGYM_KAFKA_SSL_CA" in message


@pytest.mark.timeout(240)
def test_sdk_and_https_api_events_reach_clickhouse_over_tls(tls_broker: KafkaBroker, test_pki: TestPKI, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """SDK (librdkafka) and API (https; its key ring and followers on TLS) → Faust worker (aiokafka) + sink → chdb."""
    from agentgym.gateway.keys import create_key
    from tests.integration.gateway.conftest import ServedGateway, auth, call, experience, test_settings

    home = tmp_path / "home"
    env = _env(tls_broker, test_pki)
    worker = Worker(worker_env(tls_broker.bootstrap_servers, home, f"tls-{uuid.uuid4().hex[:8]}", "sink", **env),
                    tmp_path / "worker.log").start()
    try:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        with AgentGym(tls_broker.bootstrap_servers, tenant, "bot", spool_dir=tmp_path / "spool",
                      kafka_security_protocol="SSL", kafka_ssl_ca=test_pki.ca, kafka_ssl_cert=test_pki.client_cert,
                      kafka_ssl_key=test_pki.client_key) as gym:
            sdk_trace = gym.record_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=1.0)
            assert gym.flush(20) == 0 and gym.stats["spooled"] == 0

        for name, value in env.items():
            monkeypatch.setenv(name, value)
        key, _ = create_key(tls_broker.bootstrap_servers, tenant, ["ingest"])
        trusting = ssl.create_default_context(cafile=str(test_pki.ca))
        settings = test_settings(tls_broker.bootstrap_servers, tmp_path / "gw-spool", tls_cert=test_pki.server_cert,
                                 tls_key=test_pki.server_key)
        with ServedGateway(settings, client_context=trusting) as served:
            assert served.url.startswith("https://127.0.0.1:")
            wait_for(lambda: served.gateway.keys.verify(key) is not None, 30, "the gateway to learn the key over TLS")
            status, body, _ = call("POST", f"{served.url}/v1/experiences", experience(agent_id="https-agent"), auth(key),
                                   context=trusting)
            assert status == 202, body
            api_trace = body["trace_ids"][0]
            # a client that does not trust the CA, and one speaking plain http to the port, get no answer
            untrusting = ssl.create_default_context(cafile=str(test_pki.other_ca))
            with pytest.raises(urllib.error.URLError) as refused:
                call("GET", f"{served.url}/readyz", context=untrusting)
            assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                call("GET", served.url.replace("https://", "http://") + "/readyz", timeout_s=5)

        def stored() -> list[tuple[str, str]]:
            reader = open_reader(settings=StoreSettings(clickhouse_url=f"chdb://{home / 'clickhouse'}"))  # type: ignore[call-arg]
            try:
                rows = reader.query("SELECT trace_id, agent_id FROM experiences WHERE tenant_id = {t:String} ORDER BY agent_id",
                                    {"t": tenant}).rows
                return [(str(r[0]), str(r[1])) for r in rows]
            finally:
                reader.close()

        wait_for(lambda: len(stored()) == 2, 150, "the sink to store both experiences", worker)
        assert stored() == [(sdk_trace, "bot"), (api_trace, "https-agent")]
        wait_for(lambda: "Worker]: Ready" in worker.log.read_text(errors="replace"), 120, "Faust's consumer on TLS", worker)
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()


def test_the_api_can_require_client_certificates(tls_broker: KafkaBroker, test_pki: TestPKI, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.gateway.conftest import ServedGateway, call, test_settings

    for name, value in _env(tls_broker, test_pki).items():
        monkeypatch.setenv(name, value)
    with_cert = ssl.create_default_context(cafile=str(test_pki.ca))
    with_cert.load_cert_chain(str(test_pki.client_cert), str(test_pki.client_key))
    settings = test_settings(tls_broker.bootstrap_servers, tmp_path / "gw-spool", tls_cert=test_pki.server_cert,
                             tls_key=test_pki.server_key, tls_client_ca=test_pki.ca)
    with ServedGateway(settings, client_context=with_cert) as served:
        assert call("GET", f"{served.url}/readyz", context=with_cert)[0] == 200
        without_cert = ssl.create_default_context(cafile=str(test_pki.ca))
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            call("GET", f"{served.url}/readyz", context=without_cert)


def test_sasl_and_tls_together_serve_sasl_ssl(test_pki: TestPKI, tmp_path: Path) -> None:
    """``kafka start --sasl --tls``: SCRAM inside TLS; the SDK writes as ``sdk``, librdkafka and aiokafka read as ``processors``."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    from agentgym.ops.kafka.broker import load_or_create_passwords
    from agentgym.producers.kafka_security import aiokafka_security, librdkafka_security
    from agentgym.producers.records import read_topic
    from agentgym.producers.settings import SharedSettings

    runner = CliRunner(env={"AGENTGYM_KAFKA_CONTROLLER_PORT": str(free_port())})
    args = ["--port", str(free_port()), "--data-dir", str(tmp_path / "kafka")]
    res = runner.invoke(main, ["kafka", "start", "--sasl", "--tls", "--tls-cert", str(test_pki.server_cert), "--tls-key",
                               str(test_pki.server_key), "--tls-ca", str(test_pki.ca), *args])
    assert res.exit_code == 0, res.output
    try:
        assert "AGENTGYM_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in res.output
        bootstrap, users = f"127.0.0.1:{args[1]}", load_or_create_passwords(tmp_path / "kafka")
        with AgentGym(bootstrap, "t-sasl-ssl", "bot", spool_dir=tmp_path / "spool", kafka_security_protocol="SASL_SSL",
                      kafka_username="sdk", kafka_password=users["sdk"], kafka_ssl_ca=test_pki.ca) as gym:
            trace = gym.record_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=1.0)
            assert gym.flush(20) == 0 and gym.stats["spooled"] == 0
        processors = SharedSettings(kafka_security_protocol="SASL_SSL", kafka_username="processors",
                                    kafka_password=users["processors"], kafka_ssl_ca=test_pki.ca)
        got = read_topic(bootstrap, "experiences", match=lambda r: r["trace_id"] == trace,
                         security=librdkafka_security(processors))
        assert [r["trace_id"] for r in got] == [trace]

        async def aiokafka_topics(conf: dict[str, Any]) -> set[str]:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **conf)
            await consumer.start()
            try:
                return set(await consumer.topics())
            finally:
                await consumer.stop()

        assert "gym-experiences-v1" in asyncio.run(aiokafka_topics(aiokafka_security(processors)))
        # SASL without TLS against the SASL_SSL listener gets nothing
        plain = {**librdkafka_security(processors), "security.protocol": "SASL_PLAINTEXT"}
        plain = {k: v for k, v in plain.items() if not k.startswith("ssl.")}
        assert not _metadata(KafkaBroker(tmp_path / "kafka", port=int(args[1])), **plain)[1]
    finally:
        res = runner.invoke(main, ["kafka", "stop", *args])
        assert res.exit_code == 0 and "kafka stopped" in res.output, res.output
