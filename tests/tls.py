"""A test PKI made with the ``openssl`` CLI (``cryptography`` is not installed here): a CA, a
server certificate for 127.0.0.1/localhost, a client certificate, and a second CA nobody trusts.

EC P-256 keys in PKCS#8 (what Kafka's PEM key store reads), certificates with the key identifiers
Python's strict verification (``VERIFY_X509_STRICT``, default since 3.13) asks for.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestPKI", "make_test_pki"]


@dataclass(frozen=True)
class TestPKI:
    """Paths of the test PKI's PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: a client trusting only it must refuse the server


TestPKI.__test__ = False  # type: ignore[attr-defined]


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the test PKI needs the openssl CLI (apt-get install openssl)"
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"openssl {' '.join(args)} failed:\n{proc.stderr}"


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=Agent Gym test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d: Path, name: str, usage: str, san: str | None) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature", f"extendedKeyUsage={usage}",
           "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid,issuer"]
    if san:
        ext.append(f"subjectAltName={san}")
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)


def make_test_pki(d: Path) -> TestPKI:
    """Writes the test PKI into ``d`` (about 0.2 s) and returns its paths."""
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "server", "serverAuth,clientAuth", "IP:127.0.0.1,DNS:localhost")  # clientAuth: the broker calls itself
    _leaf(d, "client", "clientAuth", None)
    return TestPKI(ca=d / "ca.pem", server_cert=d / "server.pem", server_key=d / "server.key",
                   client_cert=d / "client.pem", client_key=d / "client.key", other_ca=d / "other-ca.pem")
