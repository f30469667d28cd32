"""A real Apache Kafka broker (KRaft: one process is controller and broker) on loopback.

No Docker here: the broker's jars are resolved from Maven Central with ``mvn`` (see
``pom.xml`` beside this file) into a cache outside git, the storage directory is
formatted with Kafka's own ``StorageTool``, and ``kafka.Kafka`` runs under Java 17.
"""

from __future__ import annotations

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgym.ops.exceptions import MissingToolError, StackError
from agentgym.ops.kafka.acls import ADMIN, SERVICE_GRANTS, apply_acls, generate_passwords
from agentgym.producers.settings import readable_file

__all__ = ["KafkaBroker", "BrokerStatus", "BrokerTLS", "free_port", "resolve_jars", "load_or_create_passwords",
           "SCRAM_MECHANISMS"]

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    Cached: a second call returns at once. Raises ``MissingToolError`` without mvn/java.
    """
    libs = cache / version / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    _require("java", "Java 17 or newer")
    mvn = _require("mvn", "Apache Maven (to fetch the broker's jars from Maven Central)")
    libs.mkdir(parents=True, exist_ok=True)
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
    ) -> None:
        self.data_dir = Path(data_dir)
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
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            *self._listener_properties(),
            f"log.dirs={logs}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.cleaner.backoff.ms=1000",
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

    def _java(self, libs: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = _require("java", "Java 17 or newer")
        return [
            java, f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
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
        pid = self._pid()
        if pid is not None:
            return self.status()
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
            cluster_id = self._cluster_id()
            scram = [a for name, pw in (self.sasl or {}).items() for m in SCRAM_MECHANISMS
                     for a in ("--add-scram", f"{m}=[name={name},password={pw}]")]
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                           "--ignore-formatted", *scram),
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
            self._java(libs, "kafka.Kafka", str(props), heap=self.heap),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal does not kill the broker mid-write
        )
        log.close()
        self._pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + wait_s
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
        raise StackError(f"Kafka broker did not serve metadata within {wait_s:.0f}s; last log lines:\n{self._tail()}")

    def _cluster_id(self) -> str:
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
        pid = self._pid()
        if pid is None:
            self._pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
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
            os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._pid_file.unlink(missing_ok=True)
        return True

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
