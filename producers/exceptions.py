"""Errors the SDK raises at the call site (misuse only: Kafka trouble never raises)."""

from agentgym.schemas.exceptions import SchemaValidationError

__all__ = ["InvalidEventError", "ConfigError"]


class InvalidEventError(SchemaValidationError):
    """An event argument is missing, of the wrong type or out of range; names the field."""


class ConfigError(ValueError):
    """The client's configuration is invalid or contradicts the SDK's guarantees."""
