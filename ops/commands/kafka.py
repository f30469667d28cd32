"""``agentgym kafka start|stop|status|acls`` and ``agentgym topics create``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agentgym.ops.exceptions import StackError
from agentgym.ops.kafka.acls import SERVICE_GRANTS, apply_acls
from agentgym.ops.kafka.broker import KafkaBroker, load_or_create_passwords
from agentgym.ops.settings import StackSettings
from agentgym.producers.admin import ensure_topics
from agentgym.producers.kafka_security import client_security


def _broker(port: int | None, data_dir: Path | None, sasl: bool = False) -> KafkaBroker:
    """The broker of the settings; with SASL when asked to or when its data directory was formatted with it."""
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["kafka_port"] = port
    if data_dir is not None:
        overrides["kafka_data_dir"] = data_dir
    broker = KafkaBroker.from_settings(StackSettings(**overrides))
    if sasl or (broker.data_dir / "sasl-principals").exists():
        broker.sasl = load_or_create_passwords(broker.data_dir)
    return broker


_port = click.option("--port", type=int, default=None, help="client port on 127.0.0.1 [env AGENTGYM_KAFKA_PORT; 9092]")
_data = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                     help="data directory [env AGENTGYM_KAFKA_DATA_DIR; ~/.agentgym/kafka-data]")


@click.group()
def kafka() -> None:
    """Run the local Apache Kafka broker (KRaft mode, jars from Maven Central)."""


@kafka.command()
@_port
@_data
@click.option("--wait", "wait_s", type=float, default=90.0, show_default=True, help="seconds to wait for metadata")
@click.option("--sasl", is_flag=True,
              help="SASL/SCRAM with one principal per service and ACLs (a new data directory; see docs/security.md)")
def start(port: int | None, data_dir: Path | None, wait_s: float, sasl: bool) -> None:
    """Start the broker (provisioning and formatting on first use) and create the topics."""
    broker = _broker(port, data_dir, sasl)
    try:
        st = broker.start(wait_s=wait_s)
        created = ensure_topics(st.bootstrap_servers, security=broker.client_security())
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"kafka running: pid {st.pid}, bootstrap {st.bootstrap_servers}, data {st.data_dir}")
    if broker.sasl is not None:
        click.echo(f"SASL/SCRAM: principals {', '.join(broker.sasl)}, passwords in {broker.data_dir / 'sasl-users.json'}; "
                   "connect a component with AGENTGYM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, "
                   "AGENTGYM_KAFKA_USERNAME=<principal>, AGENTGYM_KAFKA_PASSWORD=<its password>")
    if created:
        click.echo(f"created topics: {', '.join(created)}")


@kafka.command()
@_port
@_data
def stop(port: int | None, data_dir: Path | None) -> None:
    """Stop the broker cleanly."""
    broker = _broker(port, data_dir)
    click.echo("kafka stopped" if broker.stop() else "kafka was not running")


@kafka.command()
@_port
@_data
def status(port: int | None, data_dir: Path | None) -> None:
    """Say whether the broker runs and serves metadata (exit code 1 if not)."""
    st = _broker(port, data_dir).status()
    click.echo(f"kafka: {st.detail}; pid {st.pid}; bootstrap {st.bootstrap_servers}; data {st.data_dir}")
    sys.exit(0 if st.running else 1)


@kafka.command()
@click.option("--bootstrap-servers", envvar="AGENTGYM_BOOTSTRAP_SERVERS", default="127.0.0.1:9092", show_default=True)
def acls(bootstrap_servers: str) -> None:
    """Grant each service principal its ACLs (docs/security.md), as the super user of AGENTGYM_KAFKA_*.

    Idempotent. ``kafka start --sasl`` does this itself; compose's ``topics`` job runs it.
    """
    security = client_security(None)
    if not security:
        click.echo("error: AGENTGYM_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: ACLs need an authenticated super user", err=True)
        sys.exit(2)
    try:
        n = apply_acls(bootstrap_servers, security)
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"ACL bindings in place: {n} for {', '.join(SERVICE_GRANTS)}")


@click.group()
def topics() -> None:
    """Agent Gym's Kafka topics."""


@topics.command("create")
@click.option("--bootstrap-servers", envvar="AGENTGYM_BOOTSTRAP_SERVERS", default="127.0.0.1:9092", show_default=True)
def create(bootstrap_servers: str) -> None:
    """Create the topics that do not exist yet."""
    created = ensure_topics(bootstrap_servers)
    click.echo(f"created: {', '.join(created) or 'nothing (all exist)'}")
