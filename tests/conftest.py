"""Shared fixtures: a real Kafka broker (KRaft) for the whole test session (one per pytest-xdist worker).

The broker runs from the same code as ``agentgym kafka start``: jars from Maven
Central (cached), a free port, a temporary data directory. A broker that cannot
start fails the tests that need it; nothing is skipped or mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentgym.ops.kafka.broker import KafkaBroker, free_port
from agentgym.ops.settings import StackSettings
from tests.tls import TestPKI, make_test_pki


def pytest_configure(config: pytest.Config) -> None:
    # A test run stopped with SIGTERM (a CI timeout, `timeout`) unwinds like Ctrl-C, so the
    # session fixtures stop the brokers they started (they run in their own sessions and
    # would otherwise outlive the run).
    import signal

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The modules marked `long` (minutes each) first, the rest in their order: with two workers taking one
    # module at a time, the longest start at once instead of leaving one worker alone at the end.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def start_broker(data_dir: Path) -> KafkaBroker:
    s = StackSettings()
    broker = KafkaBroker(data_dir, port=free_port(), controller_port=free_port(), version=s.kafka_version, jar_cache=s.jar_cache)
    broker.start(wait_s=120, quiet=True)
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: KafkaBroker) -> str:
    """Bootstrap servers of the session's broker, with every Agent Gym topic created."""
    from agentgym.producers.admin import ensure_topics

    ensure_topics(kafka_broker.bootstrap_servers)
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """A test CA with a server certificate for 127.0.0.1/localhost and a client certificate (openssl CLI)."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, groups and tenants of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # keep tests away from the user's ~/.agentgym (spool, stack state)
    monkeypatch.setenv("AGENTGYM_HOME", str(tmp_path / "agentgym-home"))
    monkeypatch.setenv("AGENTGYM_SPOOL_DIR", str(tmp_path / "spool"))
    for var in ("AGENTGYM_BOOTSTRAP_SERVERS", "AGENTGYM_TENANT_ID", "AGENTGYM_AGENT_ID", "AGENTGYM_SCHEMA_REGISTRY_URL"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
