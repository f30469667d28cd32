"""``compose.tls.yaml`` (TLS in transit over compose.yaml) and ``ops/tls/make-dev-certs.sh``, without Docker.

The override may only set variables the settings classes read, must move every Kafka client
of compose.yaml to SASL_SSL with the CA, and the certificates the script makes must pass a
real TLS handshake (in memory) for the host names the stack uses.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentgym.gateway.settings import GatewaySettings
from tests.unit.test_compose import ROOT, environment, kafka_env, kafka_listeners, known_env, services

OVERRIDE = ROOT / "compose.tls.yaml"
SCRIPT = ROOT / "ops" / "tls" / "make-dev-certs.sh"
ENTRYPOINT = ROOT / "ops" / "kafka" / "compose-entrypoint.sh"
MOUNT = "/etc/agentgym/tls"


def override() -> dict[str, Any]:
    data = yaml.safe_load(OVERRIDE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data["services"]


@pytest.fixture(scope="module")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dev-certs")
    subprocess.run(["bash", str(SCRIPT), str(d)], check=True, capture_output=True)
    return d


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    """A full TLS handshake through memory buffers (no sockets); raises what the client would."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, side, out, peer_in in (("c", c, c_out, s_in), ("s", s, s_out, c_in)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_override_sets_only_settings_fields_on_existing_services() -> None:
    known = known_env()
    for name, svc in override().items():
        assert name in services(), f"compose.tls.yaml overrides {name!r}, which compose.yaml lacks"
        unknown = [k for k in environment(svc) if k.startswith("AGENTGYM_") and k not in known]
        assert not unknown, f"{name}: AGENTGYM_* variables no settings class reads: {unknown}"


def test_every_kafka_client_moves_to_sasl_ssl_with_the_ca() -> None:
    clients = [n for n, svc in services().items() if "AGENTGYM_KAFKA_SECURITY_PROTOCOL" in environment(svc)]
    assert {"topics", "processors", "gateway", "trainer"} <= set(clients)
    for name in clients:
        env = {**environment(services()[name]), **environment(override().get(name, {}))}
        assert env["AGENTGYM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["AGENTGYM_KAFKA_SSL_CA"] == f"{MOUNT}/ca.pem", name
        assert f"./tls:{MOUNT}:ro" in override()[name]["volumes"], name


def test_every_kafka_node_gets_the_same_tls_settings() -> None:
    from tests.unit.test_compose import kafka_nodes

    assert len(kafka_nodes()) == 3
    for name in kafka_nodes():
        assert override().get(name) == override()["kafka"], f"{name} is not overridden like kafka"


def test_the_broker_listeners_become_sasl_ssl() -> None:
    kafka = environment(override()["kafka"])
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = kafka_listeners(kafka_env()["KAFKA_LISTENERS"] or "")
    assert set(protocols) == set(listeners)
    assert all(protocols[n] == "SASL_SSL" for n in listeners if n != "CONTROLLER"), protocols
    # the apache/kafka image expects JKS files once an advertised listener's name contains "SSL"
    assert all("SSL" not in n for n in listeners)
    assert kafka["KAFKA_SSL_KEYSTORE_TYPE"] == kafka["KAFKA_SSL_TRUSTSTORE_TYPE"] == "PEM"
    script = ENTRYPOINT.read_text(encoding="utf-8")
    assert all(f"${{{v}" in script or f"${v}" in script for v in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"))
    assert kafka["KAFKA_SSL_KEYSTORE_LOCATION"] in script  # the entrypoint writes the key store the broker reads


def test_the_dev_certificates_serve_the_names_the_stack_uses(dev_certs: Path) -> None:
    named = {v.removeprefix(MOUNT + "/") for svc in override().values() for v in environment(svc).values()
             if v and v.startswith(MOUNT + "/")}
    assert named and all((dev_certs / f).is_file() for f in named), named
    client = ssl.create_default_context(cafile=str(dev_certs / "ca.pem"))
    for leaf, hosts in (("kafka", ("kafka", "kafka-2", "kafka-3", "localhost", "127.0.0.1")), ("gateway", ("gateway", "127.0.0.1"))):
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(str(dev_certs / f"{leaf}.pem"), str(dev_certs / f"{leaf}.key"))
        for host in hosts:
            _handshake(server, client, host)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            _handshake(server, client, "elsewhere.example")
    assert (dev_certs / "kafka.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, for Kafka
    assert (dev_certs / "kafka.key").stat().st_mode & 0o077 == 0  # keys are private
    gw = environment(override()["gateway"])
    s = GatewaySettings(tls_cert=dev_certs / Path(gw["AGENTGYM_GATEWAY_TLS_CERT"]).name,
                        tls_key=dev_certs / Path(gw["AGENTGYM_GATEWAY_TLS_KEY"]).name)
    assert s.scheme == "https"
