"""Avro schemas of Agent Gym's records, the codec, and the topic layout."""

from agentgym.schemas.codec import SINGLE_OBJECT_MARKER, AvroCodec, Decoded
from agentgym.schemas.exceptions import (
    BadMarkerError,
    CorruptBodyError,
    DecodeError,
    SchemaError,
    SchemaValidationError,
    TruncatedMessageError,
    UnknownSchemaError,
)
from agentgym.schemas.registry import RECORD_NAMES, SchemaSet, SchemaVersion, default_schema_set
from agentgym.schemas.topics import TOPICS, TopicSpec, spec_for, topic_name

__all__ = [
    "AvroCodec",
    "Decoded",
    "SINGLE_OBJECT_MARKER",
    "SchemaSet",
    "SchemaVersion",
    "default_schema_set",
    "RECORD_NAMES",
    "TOPICS",
    "TopicSpec",
    "spec_for",
    "topic_name",
    "DecodeError",
    "TruncatedMessageError",
    "BadMarkerError",
    "UnknownSchemaError",
    "CorruptBodyError",
    "SchemaError",
    "SchemaValidationError",
]
