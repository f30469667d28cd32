"""The data plane with SASL/SCRAM and ACLs: a real broker started with ``sasl`` (one per module).

The SDK writes as ``sdk``, the processors' principal reads through librdkafka and through
aiokafka (Faust's driver); an unauthenticated client, a wrong password and a principal
without an ACL for a topic are refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from agentgym import AgentGym
from agentgym.ops.cli import main
from agentgym.ops.kafka.acls import generate_passwords
from agentgym.ops.kafka.broker import KafkaBroker, free_port, load_or_create_passwords
from agentgym.producers.kafka_security import aiokafka_security, librdkafka_security
from agentgym.producers.records import read_topic
from agentgym.processors.store import StoreSettings, open_reader
from agentgym.producers.settings import SharedSettings
from agentgym.schemas.topics import TOPICS
from tests.workers import Worker, wait_for, worker_env

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """Started as an operator would: ``agentgym kafka start --sasl`` (stopped with ``kafka stop``)."""
    runner = CliRunner(env={"AGENTGYM_KAFKA_CONTROLLER_PORT": str(free_port())})  # not port + 1: that may be taken
    data = tmp_path_factory.mktemp("kafka-sasl")
    args = ["--port", str(free_port()), "--data-dir", str(data)]
    res = runner.invoke(main, ["kafka", "start", "--sasl", *args])
    assert res.exit_code == 0, res.output
    try:
        assert "SASL/SCRAM: principals admin, sdk, gateway, trainer, processors" in res.output
        res = runner.invoke(main, ["kafka", "status", *args])  # finds the SASL data directory by itself
        assert res.exit_code == 0 and "serving metadata" in res.output, res.output
        yield KafkaBroker(data, port=int(args[1]), sasl=load_or_create_passwords(data))
    finally:
        res = runner.invoke(main, ["kafka", "stop", *args])
        assert res.exit_code == 0 and "kafka stopped" in res.output, res.output


def _settings(broker: KafkaBroker, principal: str, password: str | None = None) -> SharedSettings:
    assert broker.sasl is not None
    return SharedSettings(bootstrap_servers=broker.bootstrap_servers, kafka_security_protocol="SASL_PLAINTEXT",
                          kafka_username=principal, kafka_password=password or broker.sasl[principal])


def _metadata_errors(conf: dict[str, Any]) -> tuple[list[int], bool]:
    """librdkafka's error codes while asking for metadata with ``conf``, and whether metadata came back."""
    errors: list[int] = []
    admin = AdminClient({**conf, "error_cb": lambda e: errors.append(e.code()), "log_level": 0})
    try:
        admin.list_topics(timeout=4)
        return errors, True
    except KafkaException as exc:
        errors.append(exc.args[0].code())
        admin.poll(0.5)  # serves error_cb
        return errors, False


def test_unauthenticated_client_is_refused(sasl_broker: KafkaBroker) -> None:
    assert sasl_broker.security_protocol == "SASL_PLAINTEXT"
    _, served = _metadata_errors({"bootstrap.servers": sasl_broker.bootstrap_servers})
    assert not served
    # and the same broker answers a client that authenticates
    _, served = _metadata_errors({"bootstrap.servers": sasl_broker.bootstrap_servers, **sasl_broker.client_security("sdk")})
    assert served


def test_wrong_password_is_refused(sasl_broker: KafkaBroker) -> None:
    conf = {"bootstrap.servers": sasl_broker.bootstrap_servers,
            **librdkafka_security(_settings(sasl_broker, "sdk", password="not-the-password"))}
    errors, served = _metadata_errors(conf)
    assert not served
    assert KafkaError._AUTHENTICATION in errors


def test_sdk_writes_and_the_processors_principal_reads(sasl_broker: KafkaBroker, tmp_path: Path) -> None:
    sdk = _settings(sasl_broker, "sdk")
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with AgentGym(sasl_broker.bootstrap_servers, tenant, "bot", spool_dir=tmp_path / "spool",
                  kafka_security_protocol="SASL_PLAINTEXT", kafka_username="sdk",
                  kafka_password=sdk.kafka_password.get_secret_value()) as gym:
        trace = gym.record_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=1.0)
        assert gym.flush(20) == 0
        assert gym.stats["spooled"] == 0  # delivered, not kept for later

    processors = _settings(sasl_broker, "processors")
    got = read_topic(sasl_broker.bootstrap_servers, "experiences", match=lambda r: r["tenant_id"] == tenant,
                     security=librdkafka_security(processors))
    assert [r["trace_id"] for r in got] == [trace]

    async def aiokafka_read() -> list[bytes]:  # Faust's driver, with the keyword arguments Faust is given
        from aiokafka import AIOKafkaConsumer
        from aiokafka import TopicPartition as TopicPartition_

        consumer = AIOKafkaConsumer(bootstrap_servers=sasl_broker.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, **aiokafka_security(processors))
        await consumer.start()
        try:
            topic = TOPICS["experiences"].name
            assert topic in await consumer.topics()  # fetches the metadata
            parts = [TopicPartition_(topic, p) for p in range(TOPICS["experiences"].partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            keys: list[bytes] = []
            for tp in parts:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=5000)
                    keys += [m.key for msgs in batch.values() for m in msgs]
            return keys
        finally:
            await consumer.stop()

    assert trace.encode() in asyncio.run(aiokafka_read())


def test_principal_without_acl_is_refused(sasl_broker: KafkaBroker) -> None:
    # the sdk principal may write gym-* topics but not read what agents wrote
    from confluent_kafka import Consumer

    sdk = librdkafka_security(_settings(sasl_broker, "sdk"))
    consumer = Consumer({"bootstrap.servers": sasl_broker.bootstrap_servers, "group.id": "agentgym-follower-x",
                         "enable.auto.commit": False, "log_level": 0, **sdk})
    try:
        consumer.assign([TopicPartition(TOPICS["experiences"].name, 0, 0)])
        codes: set[int] = set()
        for _ in range(20):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is not None:
                codes.add(msg.error().code())
                break
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    finally:
        consumer.close()

    # nor write a topic outside gym-*, which the super user made
    admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap_servers, **sasl_broker.client_security("admin")})
    other = f"other-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(other, 1, 1)])[other].result(30)
    delivered: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": sasl_broker.bootstrap_servers, "message.timeout.ms": 10000,
                         "log_level": 0, **sdk})
    producer.produce(other, b"v", on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(15)
    assert len(delivered) == 1 and delivered[0] is not None
    assert delivered[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_acls_command_grants_as_the_super_user_only(sasl_broker: KafkaBroker) -> None:
    runner = CliRunner()
    admin_env = sasl_broker.client_env("admin")
    res = runner.invoke(main, ["kafka", "acls"], env=admin_env)
    assert res.exit_code == 0 and "ACL bindings in place" in res.output, res.output
    # a service principal may not grant itself more
    res = runner.invoke(main, ["kafka", "acls"], env=sasl_broker.client_env("sdk"))
    assert res.exit_code == 1 and "refused the ACL" in res.output, res.output


@pytest.mark.timeout(240)
def test_a_faust_worker_and_its_sink_run_as_the_processors_principal(sasl_broker: KafkaBroker, tmp_path: Path) -> None:
    """`faust worker` (aiokafka, broker_credentials) with the sink (librdkafka) configured only by AGENTGYM_KAFKA_*."""
    home = tmp_path / "home"
    env = worker_env(sasl_broker.bootstrap_servers, home, f"sasl-{uuid.uuid4().hex[:8]}", "sink",
                     **sasl_broker.client_env("processors"))
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        assert sasl_broker.sasl is not None
        with AgentGym(sasl_broker.bootstrap_servers, tenant, "bot", spool_dir=tmp_path / "spool",
                      kafka_security_protocol="SASL_PLAINTEXT", kafka_username="sdk",
                      kafka_password=sasl_broker.sasl["sdk"]) as gym:
            trace = gym.record_experience(input="q", output="a", model_name="m", model_version="v1", latency_ms=1.0)
            assert gym.flush(20) == 0

        def stored() -> bool:
            reader = open_reader(settings=StoreSettings(clickhouse_url=f"chdb://{home / 'clickhouse'}"))  # type: ignore[call-arg]
            try:
                rows = list(reader.query("SELECT count() FROM experiences WHERE tenant_id = {t:String} AND trace_id = {r:String}",
                                         {"t": tenant, "r": trace}).rows)
            finally:
                reader.close()
            return rows[0][0] == 1

        wait_for(stored, 150, "the sink to store the experience", worker)
        # Faust's own consumer (aiokafka) joined its group as well
        wait_for(lambda: "Worker]: Ready" in worker.log.read_text(errors="replace"), 120, "the worker to be ready", worker)
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()


@pytest.mark.timeout(180)
def test_the_gateway_runs_and_ingests_as_the_gateway_principal(sasl_broker: KafkaBroker, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Its key ring, plans, usage meter, experiment and model followers and producer, configured by AGENTGYM_KAFKA_*."""
    from agentgym.gateway.keys import create_key
    from tests.integration.gateway.conftest import ServedGateway, auth, call, experience, test_settings

    for name, value in sasl_broker.client_env("gateway").items():
        monkeypatch.setenv(name, value)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key, _ = create_key(sasl_broker.bootstrap_servers, tenant, ["ingest"])
    with ServedGateway(test_settings(sasl_broker.bootstrap_servers, tmp_path / "spool")) as served:
        wait_for(lambda: served.gateway.keys.verify(key) is not None, 30, "the gateway to learn the new key")
        status, body, _ = call("POST", f"{served.url}/v1/experiences", experience(agent_id="http-agent"), auth(key))
        assert status == 202, body
        trace = body["trace_ids"][0]
    processors = librdkafka_security(_settings(sasl_broker, "processors"))
    got = read_topic(sasl_broker.bootstrap_servers, "experiences", match=lambda r: r["trace_id"] == trace, security=processors)
    assert [(r["tenant_id"], r["agent_id"]) for r in got] == [(tenant, "http-agent")]


def test_the_model_registry_works_as_the_trainer_principal(sasl_broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentgym.trainers.registry import ModelRegistry, ModelVersion

    for name, value in sasl_broker.client_env("trainer").items():
        monkeypatch.setenv(name, value)
    tenant, version = f"t-{uuid.uuid4().hex[:8]}", f"v-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(sasl_broker.bootstrap_servers)
    try:
        registry.register(ModelVersion(tenant_id=tenant, model_version=version, agent_id="bot", base_model="tiny:llama",
                                       status="candidate", adapter_uri=f"/models/{version}"))
        assert registry.get(version).tenant_id == tenant  # read back from the compacted topic
    finally:
        registry.close()


def test_passwords_are_made_once_per_data_directory(tmp_path: Path) -> None:
    first = load_or_create_passwords(tmp_path)
    assert set(first) == set(generate_passwords()) and len(set(first.values())) == len(first)
    assert load_or_create_passwords(tmp_path) == first
    assert (tmp_path / "sasl-users.json").stat().st_mode & 0o777 == 0o600
