"""How a component authenticates to Kafka: the shared settings turned into each client's config.

One place turns :class:`~agentgym.producers.settings.SharedSettings`'s
``kafka_security_protocol``/``kafka_sasl_mechanism``/``kafka_username``/``kafka_password``
into what the two client libraries take: librdkafka (confluent-kafka: the SDK, the sink,
topic admin, followers, trainers) and aiokafka (Faust's driver). With the default
``PLAINTEXT`` both return nothing to add, so existing configurations are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentgym.producers.settings import SharedSettings

__all__ = ["librdkafka_security", "aiokafka_security", "client_security", "SECURITY_KEYS"]

SECURITY_KEYS = frozenset({"security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password"})
"""The librdkafka keys :func:`librdkafka_security` sets (a pass-through config may not contradict them)."""


def librdkafka_security(settings: SharedSettings) -> dict[str, str]:
    """The librdkafka (confluent-kafka) settings that authenticate as ``settings.kafka_username``.

    Returns:
        ``{}`` for ``PLAINTEXT``; otherwise ``security.protocol``, ``sasl.mechanism``,
        ``sasl.username`` and ``sasl.password``, to merge into a client's config.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    return {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_username,
        "sasl.password": settings.kafka_password.get_secret_value(),
    }


def aiokafka_security(settings: SharedSettings) -> dict[str, Any]:
    """The aiokafka keyword arguments that authenticate as ``settings.kafka_username``.

    Returns:
        ``{}`` for ``PLAINTEXT``; otherwise ``security_protocol``, ``sasl_mechanism``,
        ``sasl_plain_username``, ``sasl_plain_password`` and, for ``SASL_SSL``, an
        ``ssl_context`` that verifies the broker against the system's CAs.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_username,
        "sasl_plain_password": settings.kafka_password.get_secret_value(),
    }
    if settings.kafka_security_protocol == "SASL_SSL":
        import ssl

        out["ssl_context"] = ssl.create_default_context()
    return out


def client_security(security: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka security settings for a client built from a bare ``bootstrap_servers``.

    Precedence as everywhere: ``security`` when given (``{}`` forces PLAINTEXT), else the
    shared settings read from the environment now (``AGENTGYM_KAFKA_*``), else PLAINTEXT.
    """
    if security is not None:
        return dict(security)
    return librdkafka_security(SharedSettings())
