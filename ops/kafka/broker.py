"""A real Apache Kafka broker (KRaft: one process is controller and broker) on loopback,
or a cluster of them (:class:`KafkaCluster`: each process is broker and controller, one
controller quorum of all of them).

No Docker here: the broker's jars are resolved from Maven Central with ``mvn`` (see
``pom.xml`` beside this file) into a cache outside git, the storage directory is
formatted with Kafka's own ``StorageTool``, and ``kafka.Kafka`` runs under Java 17.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgym.ops.exceptions import MissingToolError, StackError
from agentgym.ops.kafka.acls import ADMIN, SERVICE_GRANTS, apply_acls, generate_passwords
from agentgym.producers.settings import readable_file
from agentgym.schemas.topics import replication_for

CLUSTER_FILE = "cluster.json"
"""In a cluster's data directory: its members' node ids and ports, and its cluster id."""

__all__ = ["KafkaBroker", "KafkaCluster", "BrokerStatus", "BrokerTLS", "free_port", "free_ports", "resolve_jars",
           "load_or_create_passwords", "SCRAM_MECHANISMS", "CLUSTER_FILE"]

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
"""The SASL mechanisms the broker's client listener accepts when it runs with ``sasl``."""

# what fits the storage tool's `SCRAM-SHA-256=[name=..,password=..]` syntax and a JAAS string
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_SECRET = re.compile(r"[A-Za-z0-9_.~-]{8,}")


def load_or_create_passwords(data_dir: Path | str) -> dict[str, str]:
    """The SCRAM passwords of the broker in ``data_dir`` (``sasl-users.json``, mode 0600), made once.

    SCRAM credentials are written into the metadata when the storage is formatted, so a
    data directory keeps its passwords for good: the first call generates one per
    principal (:data:`agentgym.ops.kafka.acls.PRINCIPALS`), later calls read them back.
    """
    path = Path(data_dir) / "sasl-users.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    users = generate_passwords()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(users, f, indent=1)
    return users

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BrokerTLS:
    """The broker's TLS files (PEM): its certificate and key, and the CA its clients trust.

    Attributes:
        cert: the broker's certificate (its chain after it), valid for 127.0.0.1 (an IP
            subject alternative name): clients verify the host name.
        key: its private key, unencrypted PKCS#8 (``-----BEGIN PRIVATE KEY-----``), what
            Kafka's PEM key store reads.
        ca: the CA certificate(s) that signed ``cert``: the broker's trust store (it checks
            client certificates against it) and what clients get as ``AGENTGYM_KAFKA_SSL_CA``.
        client_auth: require a client certificate signed by ``ca`` (mutual TLS).
    """

    cert: Path
    key: Path
    ca: Path
    client_auth: bool = False

    def check(self) -> "BrokerTLS":
        """The files exist, are readable, PEM, and the key is the certificate's; else ``StackError`` naming the option."""
        try:
            files = {opt: readable_file(p, opt) for opt, p in (("--tls-cert", self.cert), ("--tls-key", self.key),
                                                                 ("--tls-ca", self.ca))}
        except ValueError as exc:
            raise StackError(str(exc)) from None
        if b"-----BEGIN PRIVATE KEY-----" not in files["--tls-key"].read_bytes():
            raise StackError(f"--tls-key: {self.key}: Kafka reads unencrypted PKCS#8 PEM keys (-----BEGIN PRIVATE KEY-----); "
                             f"convert it: openssl pkcs8 -topk8 -nocrypt -in {self.key} -out key-pkcs8.pem")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(files["--tls-cert"]), str(files["--tls-key"]))
        except ssl.SSLError as exc:
            raise StackError(f"--tls-cert/--tls-key: {self.cert}, {self.key}: not a PEM certificate and its private key "
                             f"({exc.reason or exc.args[-1]})") from None
        try:
            ctx.load_verify_locations(cafile=str(files["--tls-ca"]))
        except ssl.SSLError as exc:
            raise StackError(f"--tls-ca: {self.ca}: not a PEM CA certificate ({exc.reason or exc.args[-1]})") from None
        return BrokerTLS(files["--tls-cert"].resolve(), files["--tls-key"].resolve(), files["--tls-ca"].resolve(),
                         self.client_auth)

    def save(self, data_dir: Path) -> None:
        """Remembered in ``<data_dir>/tls.json``: ``kafka status``/``stop`` find the broker's TLS there."""
        (data_dir / "tls.json").write_text(json.dumps({"cert": str(self.cert), "key": str(self.key), "ca": str(self.ca),
                                                       "client_auth": self.client_auth}, indent=1))

    @classmethod
    def load(cls, data_dir: Path) -> "BrokerTLS | None":
        """What :meth:`save` remembered for ``data_dir``, or None (a broker without TLS)."""
        try:
            raw = json.loads((data_dir / "tls.json").read_text())
        except FileNotFoundError:
            return None
        return cls(Path(raw["cert"]), Path(raw["key"]), Path(raw["ca"]), bool(raw.get("client_auth", False)))


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (outgoing connections take theirs from it)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_handed_out: list[int] = []  # this process's recent answers: not given twice while their takers start


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral range.

    A port the kernel picks (bind to port 0) is an ephemeral one: until its taker binds it, an
    outgoing connection of any process on the machine can take it (a Kafka controller whose JVM
    took seconds to start found its port in use that way, with two test workers running). Below
    the range no outgoing connection takes it. Falls back to the kernel's pick where the range
    leaves no room below it.
    """
    return free_ports(1)[0]


def free_ports(n: int, low: int = 20000, high: int = 32000) -> list[int]:
    """``n`` distinct ports on 127.0.0.1 that nothing listens on now, below the kernel's ephemeral range.

    For a cluster: its members connect to each other while they start, and an outgoing
    connection takes an ephemeral port, possibly one the kernel just handed out to a member
    that has not bound it yet. Ports below the range are never taken that way. A port this
    process handed out recently is not handed out again.
    """
    import random

    high = min(high, _ephemeral_low())
    out: list[int] = []
    rng = random.SystemRandom()
    while len(out) < n:
        if high - low < 1000:  # no room below the range: the kernel's pick
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                p = int(s.getsockname()[1])
        else:
            p = rng.randrange(low, high)
            if p in out or p in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    continue
        out.append(p)
    _handed_out.extend(out)
    del _handed_out[:-256]
    return out


def _require(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingToolError(
            f"`{tool}` not found on PATH: the local Kafka broker needs {what}. "
            "On Debian/Ubuntu: `apt-get install -y openjdk-17-jre-headless maven`."
        )
    return path


def resolve_jars(version: str, cache: Path, quiet: bool = False) -> Path:
    """Resolves Kafka ``version`` and its runtime dependencies into ``cache/<version>/libs``.

    Cached: a second call returns at once. Processes resolving at the same time (the test suite's
    workers, ``agentgym up`` beside a demo) take turns on a lock file: one runs mvn, the others wait
    and find the cache complete. Raises ``MissingToolError`` without mvn/java.
    """
    libs = cache / version / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    _require("java", "Java 17 or newer")
    mvn = _require("mvn", "Apache Maven (to fetch the broker's jars from Maven Central)")
    libs.mkdir(parents=True, exist_ok=True)
    with open(cache / version / ".resolving.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if marker.exists():
            return libs
        if not quiet:
            print(f"resolving Apache Kafka {version} from Maven Central into {libs} (once) ...", file=sys.stderr)
        cmd = [
            mvn, "-q", "-B", "-f", str(_HERE / "pom.xml"),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"mvn could not resolve Kafka {version}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise StackError(f"mvn finished but no kafka_2.13 jar is in {libs}")
        marker.write_text(version)
    return libs


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    data_dir: Path
    detail: str = ""


class KafkaBroker:
    """One local KRaft broker.

    Args:
        data_dir: log and metadata directory; also holds ``broker.pid``, ``broker.log``
            and ``server.properties``.
        port: client port on 127.0.0.1.
        controller_port: KRaft controller port (default ``port + 1``).
        version: Apache Kafka version from Maven Central.
        jar_cache: where jars are cached (outside git).
        heap: the JVM's ``-Xmx``.
        sasl: principal name -> SCRAM password (``admin`` required: the super user). Given,
            the client listener speaks SASL_PLAINTEXT with SCRAM-SHA-256/512 only, the
            StandardAuthorizer denies what no ACL allows, and each service principal gets
            the ACLs of :data:`agentgym.ops.kafka.acls.SERVICE_GRANTS`. The controller
            listener (loopback) takes SASL/PLAIN as ``admin`` only. Credentials are written
            at format time: a data directory formatted without SASL cannot start with it.
        tls: given, the client listener speaks TLS (``SSL``, or ``SASL_SSL`` with ``sasl``)
            with these files; the controller listener stays on loopback without it.
        node_id: this node's id in the KRaft quorum.
        voters: node id -> controller port of every controller of the quorum (default: this
            node alone). A member of a :class:`KafkaCluster` is given all of them, and the
            internal topics' replication follows their number (:func:`replication_for`).
        cluster_id: the id the storage is formatted with (default: a new one); the members
            of a cluster share one.
        properties: more broker properties, written last (they win), e.g.
            ``{"broker.session.timeout.ms": "3000"}``.
        jvm_options: more JVM options for the broker, e.g. ``-XX:TieredStopAtLevel=1`` (a
            faster start on a busy machine, a slower broker).
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 9092,
        controller_port: int | None = None,
        version: str = "4.1.1",
        jar_cache: Path | str | None = None,
        heap: str = "512m",
        sasl: Mapping[str, str] | None = None,
        tls: BrokerTLS | None = None,
        node_id: int = 1,
        voters: Mapping[int, int] | None = None,
        cluster_id: str | None = None,
        properties: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.jvm_options = list(jvm_options)
        self.node_id = node_id
        self.voters = dict(voters) if voters else None
        self.cluster_id = cluster_id
        self.properties = dict(properties or {})
        self.port = port
        self.controller_port = controller_port or port + 1
        self.version = version
        self.jar_cache = Path(jar_cache) if jar_cache else Path.home() / ".cache" / "agentgym" / "kafka"
        self.heap = heap
        self.sasl = dict(sasl) if sasl is not None else None
        self.tls = tls
        if self.sasl is not None:
            if ADMIN not in self.sasl:
                raise StackError(f"sasl: the super user {ADMIN!r} needs a password")
            bad = [n for n, p in self.sasl.items() if not (_SAFE_NAME.fullmatch(n) and _SAFE_SECRET.fullmatch(p))]
            if bad:
                raise StackError(f"sasl: principals {bad}: names must be [A-Za-z0-9_-]+ and passwords at least 8 "
                                 "characters of [A-Za-z0-9_.~-]")

    @classmethod
    def from_settings(cls, settings: "StackSettings") -> "KafkaBroker":  # noqa: F821
        return cls(
            settings.data_dir, settings.kafka_port, settings.controller_port,
            settings.kafka_version, settings.jar_cache, settings.kafka_heap,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def security_protocol(self) -> str:
        """The client listener's protocol: ``PLAINTEXT``, ``SSL`` (``tls``), ``SASL_PLAINTEXT`` (``sasl``) or ``SASL_SSL`` (both)."""
        if self.sasl is not None:
            return "SASL_SSL" if self.tls is not None else "SASL_PLAINTEXT"
        return "SSL" if self.tls is not None else "PLAINTEXT"

    def client_security(self, principal: str = ADMIN, mechanism: str = "SCRAM-SHA-256") -> dict[str, Any]:
        """The librdkafka settings that connect to this broker as ``principal`` (``{}`` for PLAINTEXT).

        With ``tls`` the CA is trusted, and with ``client_auth`` the broker's own certificate is
        presented (an operator's tool on the broker's machine; services get their own).
        """
        out: dict[str, Any] = {}
        if self.sasl is not None:
            out |= {"sasl.mechanism": mechanism, "sasl.username": principal, "sasl.password": self.sasl[principal]}
        if self.tls is not None:
            out["ssl.ca.location"] = str(self.tls.ca)
            if self.tls.client_auth:
                out |= {"ssl.certificate.location": str(self.tls.cert), "ssl.key.location": str(self.tls.key)}
        if out:
            out["security.protocol"] = self.security_protocol
        return out

    def client_env(self, principal: str) -> dict[str, str]:
        """The ``AGENTGYM_KAFKA_*`` variables (and bootstrap servers) that connect a component as ``principal``."""
        env = {"AGENTGYM_BOOTSTRAP_SERVERS": self.bootstrap_servers, "AGENTGYM_KAFKA_SECURITY_PROTOCOL": self.security_protocol}
        if self.sasl is not None:
            env |= {"AGENTGYM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "AGENTGYM_KAFKA_USERNAME": principal,
                    "AGENTGYM_KAFKA_PASSWORD": self.sasl[principal]}
        if self.tls is not None:
            env["AGENTGYM_KAFKA_SSL_CA"] = str(self.tls.ca)
        return env

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def _listener_properties(self) -> list[str]:
        client = self.security_protocol  # the listener is named after its protocol
        controller = "SASL_PLAINTEXT" if self.sasl is not None else "PLAINTEXT"
        props = [
            f"listeners={client}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners={client}://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client}",
            f"listener.security.protocol.map={client}:{client},CONTROLLER:{controller}",
        ]
        if self.tls is not None:
            # KIP-651: PEM key and trust stores; the key store file holds the key, then the chain
            props += [
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self._keystore}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.tls.ca}",
                f"ssl.client.auth={'required' if self.tls.client_auth else 'none'}",
                "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
            ]
        if self.sasl is None:
            return props
        pw = self.sasl[ADMIN]
        scram = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" password="{pw}";'
        return props + [
            f"sasl.enabled.mechanisms={','.join(SCRAM_MECHANISMS)}",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256",
            *(f"listener.name.{client.lower()}.{m.lower()}.sasl.jaas.config={scram}" for m in SCRAM_MECHANISMS),
            # the controller cannot check SCRAM (its credentials live in the metadata it
            # serves): its listener takes PLAIN, as the super user only
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required username="{ADMIN}" password="{pw}" user_{ADMIN}="{pw}";',
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{ADMIN}",
            "allow.everyone.if.no.acl.found=false",
        ]

    @property
    def _keystore(self) -> Path:
        return self.data_dir / "tls-keystore.pem"

    def _write_keystore(self) -> None:
        """The PEM key store Kafka reads: the private key, then the certificate chain (mode 0600)."""
        assert self.tls is not None
        fd = os.open(self._keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.tls.key.read_text().strip() + "\n" + self.tls.cert.read_text().strip() + "\n")

    def _properties(self) -> str:
        logs = self.data_dir / "logs"
        voters = self.voters or {self.node_id: self.controller_port}
        # internal topics (consumer offsets, transactions) and topics created without a
        # replication factor follow the cluster's size, like Agent Gym's own topics
        rf, min_isr = replication_for(len(voters))
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            "controller.quorum.voters=" + ",".join(f"{n}@127.0.0.1:{p}" for n, p in sorted(voters.items())),
            *self._listener_properties(),
            f"log.dirs={logs}",
            "num.partitions=1",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=6",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.cleaner.backoff.ms=1000",
            *(f"{k}={v}" for k, v in self.properties.items()),
            "",
        ])

    def _pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # a recycled pid belonging to something else is not our broker
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"kafka.Kafka" not in cmdline:
                return None
        except OSError:
            pass
        return pid

    def _java(self, libs: Path, main: str, *args: str, heap: str = "256m", options: Sequence[str] = ()) -> list[str]:
        java = _require("java", "Java 17 or newer")
        return [
            java, f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true", *options,
            f"-Dlog4j2.configurationFile={_HERE / 'log4j2.properties'}",
            "-cp", f"{libs}/*", main, *args,
        ]

    def _serves_metadata(self, timeout: float = 2.0) -> bool:
        from confluent_kafka.admin import AdminClient  # local: keep ops importable without it

        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0,
                              **self.client_security()}).list_topics(timeout=timeout)
            return bool(md.brokers)
        except Exception:
            return False

    def start(self, wait_s: float = 90.0, quiet: bool = False) -> BrokerStatus:
        """Starts the broker (formatting storage on first use) and waits until it serves metadata.

        Idempotent: returns the running broker's status if it is already up.
        """
        if self._pid() is not None:
            return self.status()
        proc = self.launch(quiet=quiet)
        return self.wait_serving(proc, time.monotonic() + wait_s)

    def launch(self, quiet: bool = False) -> subprocess.Popen[bytes]:
        """Formats the storage on first use and starts the broker's process; does not wait for it."""
        libs = resolve_jars(self.version, self.jar_cache, quiet=quiet)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tls is not None:
            self.tls = self.tls.check()
            self._write_keystore()
            self.tls.save(self.data_dir)
        else:
            (self.data_dir / "tls.json").unlink(missing_ok=True)
            self._keystore.unlink(missing_ok=True)
        props = self.data_dir / "server.properties"
        fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the admin password with sasl
        with os.fdopen(fd, "w") as f:
            f.write(self._properties())
        marker = self.data_dir / "sasl-principals"
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = self.cluster_id or self._cluster_id()
            scram = [a for name, pw in (self.sasl or {}).items() for m in SCRAM_MECHANISMS
                     for a in ("--add-scram", f"{m}=[name={name},password={pw}]")]
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                           "--ignore-formatted", *scram, options=self.jvm_options),
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage in {self.data_dir} failed:\n{fmt.stdout}{fmt.stderr}")
            marker.unlink(missing_ok=True)
            if self.sasl is not None:
                marker.write_text("\n".join(sorted(self.sasl)) + "\n")
        elif self.sasl is not None and not marker.exists():
            raise StackError(f"{self.data_dir} was formatted without SASL: its SCRAM credentials are made at format "
                             "time; use a new data directory for a SASL broker")
        for p in (self.port, self.controller_port):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", p)) == 0:
                    raise StackError(f"port {p} on 127.0.0.1 is taken by another process; choose another (AGENTGYM_KAFKA_PORT)")
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(props), heap=self.heap, options=self.jvm_options),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal does not kill the broker mid-write
        )
        log.close()
        self._pid_file.write_text(str(proc.pid))
        return proc

    def wait_serving(self, proc: subprocess.Popen[bytes], deadline: float) -> BrokerStatus:
        """Waits until the broker ``proc`` (from :meth:`launch`) serves metadata, until ``deadline``
        (``time.monotonic()``); stops it and raises ``StackError`` if it exits or does not."""
        wait_s = max(0.0, deadline - time.monotonic())
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"Kafka broker exited with code {proc.returncode}; last log lines:\n{self._tail()}")
            if self._serves_metadata():
                if self.sasl is not None:
                    apply_acls(self.bootstrap_servers, self.client_security(),
                               {p: g for p, g in SERVICE_GRANTS.items() if p in self.sasl})
                return self.status()
            time.sleep(0.3)
        self.stop()
        raise StackError(f"Kafka broker {self.bootstrap_servers} did not serve metadata within {wait_s:.0f}s; "
                         f"last log lines:\n{self._tail()}")

    @staticmethod
    def _cluster_id() -> str:
        # Kafka cluster ids are base64url UUIDs without padding (what `random-uuid` prints);
        # like Kafka's own Uuid.randomUuid(), never one starting with "-", which the
        # storage tool would read as an option.
        import base64

        while True:
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not cid.startswith("-"):
                return cid

    def _tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no broker log)"

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stops the broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``). True if it was running."""
        pid = self.terminate()
        if pid is None:
            return False
        self.wait_stopped(pid, time.monotonic() + timeout_s)
        return True

    def terminate(self) -> int | None:
        """Sends SIGTERM (a clean shutdown begins) and returns the pid, or None if the broker was not running."""
        pid = self._pid()
        if pid is None:
            self._pid_file.unlink(missing_ok=True)
            return None
        os.kill(pid, signal.SIGTERM)
        return pid

    def wait_stopped(self, pid: int, deadline: float) -> None:
        """Waits for ``pid`` (from :meth:`terminate`) to exit until ``deadline`` (``time.monotonic()``), then SIGKILL."""
        while time.monotonic() < deadline:
            try:
                # reap if it is our child; otherwise just probe
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        self._pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kills the broker at once (SIGKILL), as a crash would."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                time.sleep(0.5)
            self._pid_file.unlink(missing_ok=True)

    def status(self) -> BrokerStatus:
        pid = self._pid()
        if pid is None:
            return BrokerStatus(False, None, self.bootstrap_servers, self.data_dir, "not running")
        ok = self._serves_metadata()
        return BrokerStatus(ok, pid, self.bootstrap_servers, self.data_dir, "serving metadata" if ok else "process up, not serving yet")


class KafkaCluster:
    """A local KRaft cluster of ``brokers`` processes on loopback: each is a broker and a
    controller, and the controllers form one quorum of all of them (3 voters: one may fail).

    Each member has its own data directory (``<data_dir>/node-<id>``) and client and
    controller ports; ``<data_dir>/cluster.json`` keeps the layout and the cluster id, so a
    cluster started again (``agentgym kafka start``/``stop``/``status``) finds its members.
    Internal topics, and Agent Gym's topics (:func:`agentgym.producers.admin.create_topics`),
    get :func:`replication_for` the cluster's size: 3 replicas with ``min.insync.replicas=2``.

    Args:
        data_dir: the cluster's directory.
        brokers: how many members (>= 1); ignored when ``cluster.json`` exists (its layout wins).
        ports: (client port, controller port) of each member; default: ``port``, ``port + 2``, ...
            for clients, each with the next port for its controller.
        port: the first member's client port when ``ports`` is not given.
        heap: each member's ``-Xmx`` (small by default: three JVMs share the machine).
        properties: more broker properties for every member (e.g. a shorter
            ``broker.session.timeout.ms`` for tests of failures).
        jvm_options: more JVM options for every member.
    """

    def __init__(
        self,
        data_dir: Path | str,
        brokers: int = 3,
        ports: list[tuple[int, int]] | None = None,
        port: int = 9092,
        version: str = "4.1.1",
        jar_cache: Path | str | None = None,
        heap: str = "384m",
        properties: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        layout = self.read_layout(self.data_dir)
        if layout is not None:
            cluster_id = str(layout["cluster_id"])
            members = [(int(m["node_id"]), int(m["port"]), int(m["controller_port"])) for m in layout["members"]]
        else:
            if brokers < 1:
                raise StackError(f"brokers must be >= 1, got {brokers}")
            if ports is not None and len(ports) != brokers:
                raise StackError(f"ports: {len(ports)} pairs given for {brokers} brokers")
            pairs = ports or [(port + 2 * i, port + 2 * i + 1) for i in range(brokers)]
            if len({p for pair in pairs for p in pair}) != 2 * brokers:
                raise StackError(f"ports: every member needs its own client and controller port, got {pairs}")
            cluster_id = KafkaBroker._cluster_id()
            members = [(i + 1, c, k) for i, (c, k) in enumerate(pairs)]
        self.cluster_id = cluster_id
        voters = {n: k for n, _, k in members}
        self.members = [
            KafkaBroker(self.data_dir / f"node-{n}", port=c, controller_port=k, version=version, jar_cache=jar_cache,
                        heap=heap, node_id=n, voters=voters, cluster_id=cluster_id, properties=properties,
                        jvm_options=jvm_options)
            for n, c, k in members
        ]

    @staticmethod
    def read_layout(data_dir: Path | str) -> dict[str, Any] | None:
        """The layout in ``<data_dir>/cluster.json``, or None (not a cluster's directory)."""
        try:
            return dict(json.loads((Path(data_dir) / CLUSTER_FILE).read_text()))
        except FileNotFoundError:
            return None

    def _write_layout(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / CLUSTER_FILE).write_text(json.dumps({
            "cluster_id": self.cluster_id,
            "members": [{"node_id": m.node_id, "port": m.port, "controller_port": m.controller_port} for m in self.members],
        }, indent=1))

    @property
    def brokers(self) -> int:
        return len(self.members)

    @property
    def bootstrap_servers(self) -> str:
        """Every member's client address, comma-separated: clients find the cluster through any one alive."""
        return ",".join(m.bootstrap_servers for m in self.members)

    def member(self, node_id: int) -> KafkaBroker:
        for m in self.members:
            if m.node_id == node_id:
                return m
        raise StackError(f"no member with node id {node_id}; members: {[m.node_id for m in self.members]}")

    def start(self, wait_s: float = 120.0, quiet: bool = False) -> list[BrokerStatus]:
        """Starts the members that are not running, all at once (a quorum needs a majority of
        them up before any serves metadata), and waits until every member serves metadata
        and the metadata lists every broker. Idempotent."""
        if (self.data_dir / "logs" / "meta.properties").exists():
            raise StackError(f"{self.data_dir} holds a single broker's storage: use another data directory for a cluster")
        if self.read_layout(self.data_dir) is None:
            self._write_layout()
        resolve_jars(self.members[0].version, self.members[0].jar_cache, quiet=quiet)
        deadline = time.monotonic() + wait_s
        from concurrent.futures import ThreadPoolExecutor

        down = [m for m in self.members if m._pid() is None]
        # formatting runs a JVM per member: in parallel, like the members themselves
        with ThreadPoolExecutor(max(1, len(down))) as pool:
            procs = list(pool.map(lambda m: m.launch(quiet=True), down))
        launched = list(zip(down, procs))
        try:
            for m, proc in launched:
                m.wait_serving(proc, deadline)
            self.wait_for_brokers(self.brokers, deadline)
        except StackError:
            self.stop()
            raise
        return self.status()

    def start_member(self, node_id: int, wait_s: float = 90.0) -> BrokerStatus:
        """Starts one member again (after :meth:`kill_member`) and waits until the cluster lists it."""
        m = self.member(node_id)
        st = m.start(wait_s=wait_s, quiet=True)
        self.wait_for_brokers(self.brokers, time.monotonic() + wait_s)
        return st

    def kill_member(self, node_id: int) -> None:
        """SIGKILLs one member, as a crash would."""
        self.member(node_id).kill()

    def kill(self) -> None:
        """SIGKILLs every member (a test's throw-away cluster: no clean shutdown to wait for)."""
        for m in self.members:
            m.kill()

    def wait_for_brokers(self, n: int, deadline: float) -> None:
        """Waits until the metadata lists ``n`` brokers (fenced ones are not listed), until ``deadline``."""
        from confluent_kafka.admin import AdminClient  # local: keep ops importable without it

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = len(admin.list_topics(timeout=2.0).brokers)
            except Exception:
                seen = 0
            if seen >= n:
                return
            time.sleep(0.3)
        raise StackError(f"the cluster's metadata lists {seen} of {n} brokers; last log lines of each member:\n"
                         + "\n".join(f"-- node {m.node_id}:\n{m._tail(10)}" for m in self.members))

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stops every member cleanly, all at once (SIGTERM; SIGKILL after ``timeout_s``). True if any was running."""
        pids = [(m, m.terminate()) for m in self.members]
        deadline = time.monotonic() + timeout_s
        for m, pid in pids:
            if pid is not None:
                m.wait_stopped(pid, deadline)
        return any(pid is not None for _, pid in pids)

    def status(self) -> list[BrokerStatus]:
        """Each member's status, in node id order."""
        return [m.status() for m in self.members]
