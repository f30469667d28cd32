"""``agentgym kafka start|stop|status|acls`` and ``agentgym topics create``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from agentgym.ops.exceptions import StackError
from agentgym.ops.kafka.acls import SERVICE_GRANTS, apply_acls
from agentgym.ops.kafka.broker import BrokerStatus, BrokerTLS, KafkaBroker, KafkaCluster, load_or_create_passwords
from agentgym.ops.settings import StackSettings
from agentgym.producers.admin import ensure_topics
from agentgym.producers.kafka_security import client_security


def _broker(port: int | None, data_dir: Path | None, sasl: bool = False, tls: BrokerTLS | None = None) -> KafkaBroker:
    """The broker of the settings; with SASL when asked to or when its data directory was formatted with it;
    with TLS when given or when it last started with it (``tls.json``)."""
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["kafka_port"] = port
    if data_dir is not None:
        overrides["kafka_data_dir"] = data_dir
    broker = KafkaBroker.from_settings(StackSettings(**overrides))
    if sasl or (broker.data_dir / "sasl-principals").exists():
        broker.sasl = load_or_create_passwords(broker.data_dir)
    broker.tls = tls or BrokerTLS.load(broker.data_dir)
    return broker


def _cluster(port: int | None, data_dir: Path | None, brokers: int | None) -> KafkaCluster | None:
    """The local cluster of the settings' data directory: the one its ``cluster.json`` describes, or a new one of
    ``brokers`` (> 1) members; None for a single broker."""
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["kafka_port"] = port
    if data_dir is not None:
        overrides["kafka_data_dir"] = data_dir
    s = StackSettings(**overrides)
    layout = KafkaCluster.read_layout(s.data_dir)
    if layout is None and (brokers or 1) == 1:
        return None
    if layout is not None and brokers is not None and brokers != len(layout["members"]):
        raise click.UsageError(f"{s.data_dir} holds a cluster of {len(layout['members'])} broker(s), not {brokers}: "
                               "omit --brokers, or use another --data-dir")
    return KafkaCluster(s.data_dir, brokers or 1, port=s.kafka_port, version=s.kafka_version, jar_cache=s.jar_cache,
                        heap=s.kafka_heap if "kafka_heap" in s.model_fields_set else "384m")


def _print_status(st: BrokerStatus, node: str = "") -> None:
    click.echo(f"kafka{node}: {st.detail}; pid {st.pid}; bootstrap {st.bootstrap_servers}; data {st.data_dir}")


_brokers = click.option("--brokers", type=click.IntRange(1, 9), default=None,
                        help="run a local cluster of this many brokers (each also a KRaft controller; 3: one may fail), "
                             "client ports --port, --port+2, ... [1; a cluster's data directory remembers its size]")
_port = click.option("--port", type=int, default=None, help="client port on 127.0.0.1 [env AGENTGYM_KAFKA_PORT; 9092]")
_data = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                     help="data directory [env AGENTGYM_KAFKA_DATA_DIR; ~/.agentgym/kafka-data]")


@click.group()
def kafka() -> None:
    """Run the local Apache Kafka broker (KRaft mode, jars from Maven Central)."""


@kafka.command()
@_port
@_data
@_brokers
@click.option("--wait", "wait_s", type=float, default=90.0, show_default=True, help="seconds to wait for metadata")
@click.option("--sasl", is_flag=True,
              help="SASL/SCRAM with one principal per service and ACLs (a new data directory; see docs/security.md)")
@click.option("--tls", is_flag=True,
              help="TLS on the client listener (SSL, or SASL_SSL with --sasl); needs --tls-cert, --tls-key and --tls-ca "
                   "(see docs/privacy.md)")
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None,
              help="the broker's PEM certificate, valid for 127.0.0.1 (with --tls)")
@click.option("--tls-key", type=click.Path(path_type=Path), default=None,
              help="its unencrypted PKCS#8 PEM private key (with --tls)")
@click.option("--tls-ca", type=click.Path(path_type=Path), default=None,
              help="the PEM CA that signed it; clients set AGENTGYM_KAFKA_SSL_CA to it (with --tls)")
@click.option("--tls-client-auth", is_flag=True, help="require client certificates signed by --tls-ca (mutual TLS)")
def start(port: int | None, data_dir: Path | None, brokers: int | None, wait_s: float, sasl: bool, tls: bool,
          tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None, tls_client_auth: bool) -> None:
    """Start the broker, or a cluster with --brokers (provisioning and formatting on first use), and create the topics.

    Topics get replication from the cluster's size: 3 replicas and min.insync.replicas=2 on three brokers or more.
    """
    cluster = _cluster(port, data_dir, brokers)
    if cluster is not None:
        if sasl or tls:
            raise click.UsageError("--sasl and --tls are for a single broker; a local cluster is PLAINTEXT on loopback "
                                   "(compose.yaml runs a SASL cluster)")
        _start_cluster(cluster, wait_s)
        return
    files = {"--tls-cert": tls_cert, "--tls-key": tls_key, "--tls-ca": tls_ca}
    if not tls and (any(files.values()) or tls_client_auth):
        raise click.UsageError("--tls-cert, --tls-key, --tls-ca and --tls-client-auth need --tls")
    missing = [opt for opt, v in files.items() if v is None]
    if tls and missing:
        raise click.UsageError(f"--tls needs {', '.join(missing)} (PEM files; docs/privacy.md shows how to make a CA "
                               "and a certificate for 127.0.0.1 with openssl)")
    broker_tls = BrokerTLS(tls_cert, tls_key, tls_ca, tls_client_auth) if tls else None  # type: ignore[arg-type]
    broker = _broker(port, data_dir, sasl, broker_tls)
    try:
        st = broker.start(wait_s=wait_s)
        created = ensure_topics(st.bootstrap_servers, security=broker.client_security())
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"kafka running: pid {st.pid}, bootstrap {st.bootstrap_servers}, data {st.data_dir}")
    if broker.sasl is not None:
        click.echo(f"SASL/SCRAM: principals {', '.join(broker.sasl)}, passwords in {broker.data_dir / 'sasl-users.json'}; "
                   f"connect a component with AGENTGYM_KAFKA_SECURITY_PROTOCOL={broker.security_protocol}, "
                   "AGENTGYM_KAFKA_USERNAME=<principal>, AGENTGYM_KAFKA_PASSWORD=<its password>")
    if broker.tls is not None:
        click.echo(f"TLS ({broker.security_protocol}): connect a component with AGENTGYM_KAFKA_SECURITY_PROTOCOL="
                   f"{broker.security_protocol}, AGENTGYM_KAFKA_SSL_CA={broker.tls.ca}"
                   + (", AGENTGYM_KAFKA_SSL_CERT=<its certificate>, AGENTGYM_KAFKA_SSL_KEY=<its key>"
                      if broker.tls.client_auth else ""))
    if created:
        click.echo(f"created topics: {', '.join(created)}")


def _start_cluster(cluster: KafkaCluster, wait_s: float) -> None:
    try:
        statuses = cluster.start(wait_s=wait_s)
        created = ensure_topics(cluster.bootstrap_servers)
    except StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for st, m in zip(statuses, cluster.members):
        _print_status(st, f" node {m.node_id}")
    click.echo(f"kafka cluster running: {cluster.brokers} brokers (each a KRaft controller), cluster id "
               f"{cluster.cluster_id}, bootstrap {cluster.bootstrap_servers}, data {cluster.data_dir}")
    if created:
        click.echo(f"created topics: {', '.join(created)}")


@kafka.command()
@_port
@_data
def stop(port: int | None, data_dir: Path | None) -> None:
    """Stop the broker, or every member of the data directory's cluster, cleanly."""
    cluster = _cluster(port, data_dir, None)
    if cluster is not None:
        click.echo(f"kafka cluster stopped ({cluster.brokers} brokers)" if cluster.stop() else "kafka was not running")
        return
    broker = _broker(port, data_dir)
    click.echo("kafka stopped" if broker.stop() else "kafka was not running")


@kafka.command()
@_port
@_data
def status(port: int | None, data_dir: Path | None) -> None:
    """Say whether the broker (or each member of a cluster) runs and serves metadata (exit code 1 if not all)."""
    cluster = _cluster(port, data_dir, None)
    if cluster is not None:
        statuses = cluster.status()
        for st, m in zip(statuses, cluster.members):
            _print_status(st, f" node {m.node_id}")
        up = sum(st.running for st in statuses)
        click.echo(f"kafka cluster: {up} of {cluster.brokers} brokers serving; bootstrap {cluster.bootstrap_servers}")
        sys.exit(0 if up == cluster.brokers else 1)
    st = _broker(port, data_dir).status()
    _print_status(st)
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
@click.option("--brokers", type=click.IntRange(1), default=None,
              help="first wait until the cluster lists this many brokers: replication follows the brokers listed "
                   "(3 replicas and min.insync.replicas=2 on three or more)")
@click.option("--wait", "wait_s", type=float, default=120.0, show_default=True, help="seconds to wait for --brokers")
def create(bootstrap_servers: str, brokers: int | None, wait_s: float) -> None:
    """Create the topics that do not exist yet, with replication from the cluster's size."""
    if brokers is not None:
        try:
            listed = wait_for_brokers(bootstrap_servers, brokers, wait_s)
        except StackError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        click.echo(f"the cluster lists {listed} brokers")
    created = ensure_topics(bootstrap_servers)
    click.echo(f"created: {', '.join(created) or 'nothing (all exist)'}")


def wait_for_brokers(bootstrap_servers: str, n: int, timeout_s: float) -> int:
    """Waits until the metadata at ``bootstrap_servers`` lists ``n`` brokers; returns how many it lists.

    Raises:
        StackError: fewer after ``timeout_s``.
    """
    from confluent_kafka.admin import AdminClient  # local: keep the CLI's start-up light

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0, **client_security(None)})  # quiet while nodes start
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        try:
            seen = len(admin.list_topics(timeout=min(5.0, max(0.1, deadline - time.monotonic()))).brokers)
        except Exception:  # not reachable yet
            seen = 0
        if seen >= n:
            return seen
        if time.monotonic() >= deadline:
            raise StackError(f"the cluster at {bootstrap_servers} lists {seen} of {n} brokers after {timeout_s:.0f}s")
        time.sleep(0.5)
