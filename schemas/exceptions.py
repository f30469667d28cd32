"""Errors raised by the schema registry and the Avro codec."""

from __future__ import annotations

__all__ = [
    "SchemaError",
    "SchemaValidationError",
    "DecodeError",
    "TruncatedMessageError",
    "BadMarkerError",
    "UnknownSchemaError",
    "CorruptBodyError",
    "TopicNameError",
    "UnknownTopicError",
    "InvalidIdError",
]


class SchemaError(Exception):
    """A schema file is missing, malformed or inconsistent."""


class TopicNameError(SchemaError, ValueError):
    """A topic base name that is not lowercase letters, digits and hyphens."""


class UnknownTopicError(SchemaError, KeyError):
    """A topic name that is not one of Agent Gym's topics (a ``KeyError`` for lookups written before it)."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else "unknown topic"


class SchemaValidationError(ValueError):
    """A record does not match its schema.

    Attributes:
        record: the record name (e.g. ``Experience``).
        field: the dotted path of the offending field (e.g. ``steps.latency_ms``).
        reason: what is wrong with it.
    """

    def __init__(self, record: str, field: str, reason: str) -> None:
        self.record = record
        self.field = field
        self.reason = reason
        super().__init__(f"{record}.{field}: {reason}" if field else f"{record}: {reason}")


class DecodeError(ValueError):
    """Bytes that cannot be decoded into a record; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TruncatedMessageError(DecodeError):
    """The message is shorter than its header or its body says."""


class BadMarkerError(DecodeError):
    """The message does not start with a known Avro framing marker."""


class UnknownSchemaError(DecodeError):
    """The writer schema's fingerprint (or registry id) is not known here."""


class CorruptBodyError(DecodeError):
    """The framing was valid but the Avro body could not be read."""


class InvalidIdError(ValueError):
    """An id that becomes part of a path is unsafe (``..``, absolute, a separator, NUL...).

    Attributes:
        kind: which id (``job_id``, ``dataset_id``, ...).
        value: the id as given.
        reason: what is wrong with it.
    """

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind = kind
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {kind} {value!r}: {reason}")
