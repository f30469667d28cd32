"""How a component authenticates to Kafka and encrypts what it sends: the shared settings turned into each client's config.

One place turns :class:`~agentgym.producers.settings.SharedSettings`'s
``kafka_security_protocol``/``kafka_sasl_mechanism``/``kafka_username``/``kafka_password``
and the TLS files ``kafka_ssl_ca``/``kafka_ssl_cert``/``kafka_ssl_key`` into what the two
client libraries take: librdkafka (confluent-kafka: the SDK, the sink, topic admin,
followers, trainers) and aiokafka (Faust's driver). With the default ``PLAINTEXT`` both
return nothing to add, so existing configurations are unchanged.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from agentgym.producers.settings import SharedSettings

__all__ = ["librdkafka_security", "aiokafka_security", "client_security", "kafka_ssl_context", "SECURITY_KEYS"]

SECURITY_KEYS = frozenset({"security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
                           "ssl.ca.location", "ssl.certificate.location", "ssl.key.location"})
"""The librdkafka keys :func:`librdkafka_security` sets (a pass-through config may not contradict them)."""


def librdkafka_security(settings: SharedSettings) -> dict[str, str]:
    """The librdkafka (confluent-kafka) settings that authenticate as ``settings.kafka_username`` and encrypt.

    Returns:
        ``{}`` for ``PLAINTEXT``; otherwise ``security.protocol``, with ``SASL_*``
        ``sasl.mechanism``, ``sasl.username`` and ``sasl.password``, and with ``*SSL``
        ``ssl.ca.location`` (unset: the system's CAs) and the client certificate's
        ``ssl.certificate.location``/``ssl.key.location`` when given. librdkafka verifies
        the broker's host name by default (``ssl.endpoint.identification.algorithm=https``).
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    out = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        out |= {
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_username,
            "sasl.password": settings.kafka_password.get_secret_value(),
        }
    if protocol.endswith("SSL"):
        for key, path in (("ssl.ca.location", settings.kafka_ssl_ca), ("ssl.certificate.location", settings.kafka_ssl_cert),
                          ("ssl.key.location", settings.kafka_ssl_key)):
            if path is not None:
                out[key] = str(path.expanduser())
    return out


def kafka_ssl_context(settings: SharedSettings) -> ssl.SSLContext:
    """The client TLS context of ``SSL``/``SASL_SSL``: verifies the broker (certificate and host name)
    against ``kafka_ssl_ca`` (else the system's CAs), presents ``kafka_ssl_cert`` when given.

    Raises:
        ValueError: a file is not PEM, or the key does not belong to the certificate; the
            message names the variable.
    """
    ca = settings.kafka_ssl_ca
    try:
        ctx = ssl.create_default_context(cafile=str(ca.expanduser()) if ca is not None else None)
    except ssl.SSLError as exc:
        raise ValueError(f"AGENTGYM_KAFKA_SSL_CA (kafka_ssl_ca): {ca}: not a PEM CA certificate ({exc.reason or exc.args[-1]})") from None
    if settings.kafka_ssl_cert is not None and settings.kafka_ssl_key is not None:
        try:
            ctx.load_cert_chain(str(settings.kafka_ssl_cert.expanduser()), str(settings.kafka_ssl_key.expanduser()))
        except ssl.SSLError as exc:
            raise ValueError(f"AGENTGYM_KAFKA_SSL_CERT/AGENTGYM_KAFKA_SSL_KEY: {settings.kafka_ssl_cert}, "
                             f"{settings.kafka_ssl_key}: not a PEM certificate and its key ({exc.reason or exc.args[-1]})") from None
    return ctx


def aiokafka_security(settings: SharedSettings) -> dict[str, Any]:
    """The aiokafka keyword arguments that authenticate as ``settings.kafka_username`` and encrypt.

    Returns:
        ``{}`` for ``PLAINTEXT``; otherwise ``security_protocol``, with ``SASL_*``
        ``sasl_mechanism``, ``sasl_plain_username`` and ``sasl_plain_password``, and with
        ``*SSL`` an ``ssl_context`` (:func:`kafka_ssl_context`).
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        out |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_username,
            "sasl_plain_password": settings.kafka_password.get_secret_value(),
        }
    if protocol.endswith("SSL"):
        out["ssl_context"] = kafka_ssl_context(settings)
    return out


def client_security(security: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka security settings for a client built from a bare ``bootstrap_servers``.

    Precedence as everywhere: ``security`` when given (``{}`` forces PLAINTEXT), else the
    shared settings read from the environment now (``AGENTGYM_KAFKA_*``), else PLAINTEXT.
    """
    if security is not None:
        return dict(security)
    return librdkafka_security(SharedSettings())
