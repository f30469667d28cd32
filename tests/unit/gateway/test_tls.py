"""The API's TLS settings: https from a certificate and key in files; every bad file fails at start-up naming its variable."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from agentgym.gateway.settings import GatewaySettings
from agentgym.ops.cli import main
from tests.tls import TestPKI


def test_without_a_certificate_the_api_is_plain_http() -> None:
    s = GatewaySettings()
    assert s.scheme == "http" and s.ssl_context() is None


def test_a_certificate_and_its_key_serve_https(test_pki: TestPKI) -> None:
    s = GatewaySettings(tls_cert=test_pki.server_cert, tls_key=test_pki.server_key)
    ctx = s.ssl_context()
    assert s.scheme == "https" and ctx is not None
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2 and ctx.verify_mode == ssl.CERT_NONE  # no client certificate asked
    mutual = GatewaySettings(tls_cert=test_pki.server_cert, tls_key=test_pki.server_key, tls_client_ca=test_pki.ca).ssl_context()
    assert mutual is not None and mutual.verify_mode == ssl.CERT_REQUIRED


def test_the_environment_names_the_files(test_pki: TestPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGYM_GATEWAY_TLS_CERT", str(test_pki.server_cert))
    monkeypatch.setenv("AGENTGYM_GATEWAY_TLS_KEY", str(test_pki.server_key))
    assert GatewaySettings().tls_cert == test_pki.server_cert


@pytest.mark.parametrize(("files", "message"), [
    ({"tls_cert": "server_cert"}, r"AGENTGYM_GATEWAY_TLS_CERT \(tls_cert\) and AGENTGYM_GATEWAY_TLS_KEY \(tls_key\) go together: the key is missing"),
    ({"tls_key": "server_key"}, r"go together: the certificate is missing"),
    ({"tls_cert": "missing", "tls_key": "server_key"}, r"AGENTGYM_GATEWAY_TLS_CERT \(tls_cert\): .*missing.pem: no such file"),
    ({"tls_cert": "server_cert", "tls_key": "directory"}, r"AGENTGYM_GATEWAY_TLS_KEY \(tls_key\): .*: not a file"),
    ({"tls_cert": "server_cert", "tls_key": "client_key"}, r"AGENTGYM_GATEWAY_TLS_KEY \(tls_key\): .*client.key is not the private key of AGENTGYM_GATEWAY_TLS_CERT"),
    ({"tls_cert": "server_key", "tls_key": "server_key"}, r"AGENTGYM_GATEWAY_TLS_CERT \(tls_cert\): .*server.key: not a PEM certificate"),
    ({"tls_cert": "server_cert", "tls_key": "server_cert"}, r"AGENTGYM_GATEWAY_TLS_KEY \(tls_key\): .*server.pem: not an unencrypted PEM private key"),
    ({"tls_client_ca": "ca"}, r"AGENTGYM_GATEWAY_TLS_CLIENT_CA \(tls_client_ca\) needs TLS"),
    ({"tls_cert": "server_cert", "tls_key": "server_key", "tls_client_ca": "server_key"},
     r"AGENTGYM_GATEWAY_TLS_CLIENT_CA \(tls_client_ca\): .*server.key: not a PEM CA certificate"),
])
def test_a_bad_file_is_refused_naming_its_variable(test_pki: TestPKI, tmp_path: Path, files: dict[str, str], message: str) -> None:
    paths = {"missing": tmp_path / "missing.pem", "directory": tmp_path}
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(**{field: paths.get(name) or getattr(test_pki, name) for field, name in files.items()})


def test_gateway_run_refuses_a_missing_key_file_before_serving(test_pki: TestPKI, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["gateway", "run", "--port", "1", "--tls-cert", str(test_pki.server_cert),
                                    "--tls-key", str(tmp_path / "gone.key")])
    assert res.exit_code == 1, res.output
    assert "AGENTGYM_GATEWAY_TLS_KEY (tls_key)" in res.output and "gone.key: no such file" in res.output
