"""TLS of the HTTP API: the server's ``ssl.SSLContext`` from a certificate and key in PEM files.

``AGENTGYM_GATEWAY_TLS_CERT`` and ``AGENTGYM_GATEWAY_TLS_KEY`` turn it on (aiohttp serves
https on the same port); ``AGENTGYM_GATEWAY_TLS_CLIENT_CA`` also requires every client to
present a certificate signed by that CA (mutual TLS). Every problem with a file (missing,
unreadable, not PEM, a key of another certificate) is a ``ValueError`` naming the variable,
raised when the settings are read, so a gateway never starts half-configured.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from agentgym.producers.settings import readable_file

__all__ = ["server_ssl_context", "CERT_VARIABLE", "KEY_VARIABLE", "CLIENT_CA_VARIABLE"]

CERT_VARIABLE = "AGENTGYM_GATEWAY_TLS_CERT (tls_cert)"
KEY_VARIABLE = "AGENTGYM_GATEWAY_TLS_KEY (tls_key)"
CLIENT_CA_VARIABLE = "AGENTGYM_GATEWAY_TLS_CLIENT_CA (tls_client_ca)"


def server_ssl_context(cert: Path | None, key: Path | None, client_ca: Path | None = None) -> ssl.SSLContext | None:
    """The API's server TLS context (TLS 1.2 or newer), or None without a certificate (plain http).

    Args:
        cert: the server's certificate, PEM, its chain after it (intermediates).
        key: the certificate's private key, PEM, unencrypted.
        client_ca: when given, clients must present a certificate this CA (PEM) signed.

    Raises:
        ValueError: one of the pair without the other, a file missing, unreadable or not
            PEM, or a key that does not belong to the certificate; the message names the variable.
    """
    if cert is None and key is None:
        if client_ca is not None:
            raise ValueError(f"{CLIENT_CA_VARIABLE} needs TLS: set {CERT_VARIABLE} and {KEY_VARIABLE} too")
        return None
    if cert is None or key is None:
        raise ValueError(f"{CERT_VARIABLE} and {KEY_VARIABLE} go together: "
                         f"{'the certificate' if cert is None else 'the key'} is missing")
    cert = readable_file(cert, CERT_VARIABLE)
    key = readable_file(key, KEY_VARIABLE)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ValueError(_cert_key_problem(cert, key, exc)) from None
    if client_ca is not None:
        client_ca = readable_file(client_ca, CLIENT_CA_VARIABLE)
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except ssl.SSLError as exc:
            raise ValueError(f"{CLIENT_CA_VARIABLE}: {client_ca}: not a PEM CA certificate ({_reason(exc)})") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.args[-1])


def _cert_key_problem(cert: Path, key: Path, exc: ssl.SSLError) -> str:
    """Which of the two files is at fault, told apart by loading the certificate alone."""
    if exc.reason == "KEY_VALUES_MISMATCH":
        return f"{KEY_VARIABLE}: {key} is not the private key of {CERT_VARIABLE} {cert}"
    probe = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        probe.load_verify_locations(cafile=str(cert))  # parses the PEM certificates only
    except ssl.SSLError:
        return f"{CERT_VARIABLE}: {cert}: not a PEM certificate ({_reason(exc)})"
    return f"{KEY_VARIABLE}: {key}: not an unencrypted PEM private key of {cert} ({_reason(exc)})"
