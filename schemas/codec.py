"""Avro encoding of Agent Gym records.

Two framings:

* **Avro single-object encoding** (default; Avro 1.11 specification, "Single object
  encoding"): the two-byte marker ``C3 01``, the 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema's parsing canonical form, then the Avro binary
  body. No registry is needed: the fingerprint is looked up in ``schemas/avro``.
* **Confluent wire format** (when a Schema Registry URL is configured): a zero
  magic byte, the 4-byte big-endian schema id, then the body.

Decoding resolves the writer schema against the newest local version of the same
record (the reader schema), so events written by older producers stay readable.
"""

from __future__ import annotations

import io
import logging
from typing import Any, NamedTuple

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from agentgym.schemas.exceptions import (
    BadMarkerError,
    CorruptBodyError,
    SchemaValidationError,
    TruncatedMessageError,
    UnknownSchemaError,
)
from agentgym.schemas.fastencode import UnsupportedSchema, compile_encoder
from agentgym.schemas.registry import SchemaSet, SchemaVersion, default_schema_set

__all__ = ["SINGLE_OBJECT_MARKER", "Decoded", "AvroCodec"]

try:  # the Cython core of fastavro's schemaless_writer: writing straight into a
    # bytearray that already holds our header skips a BytesIO, a schema re-check and a
    # copy per event (~1-2 us of ~12 on the producer's hot path; see ops/bench/producer.py)
    from fastavro._write import write_data as _write_data
except ImportError:  # pragma: no cover - pure-Python fastavro
    _write_data = None

log = logging.getLogger("agentgym.schemas")

_WRITE_OPTIONS = {"strict": False, "strict_allow_default": False, "disable_tuple_notation": False}
SINGLE_OBJECT_MARKER = b"\xc3\x01"
_HEADER_LEN = 10
CONFLUENT_MAGIC = 0


class Decoded(NamedTuple):
    """A decoded record: its name, the writer's schema version, and the record."""

    name: str
    writer_version: int
    record: dict[str, Any]


def _explain(sv: SchemaVersion, record: Any, exc: Exception) -> SchemaValidationError:
    """Turns a fastavro write failure into an error naming the offending field."""
    if not isinstance(record, dict):
        return SchemaValidationError(sv.name, "", f"expected a dict, got {type(record).__name__}")
    try:
        validate(record, sv.parsed, raise_errors=True)
    except ValidationError as verr:
        first = verr.errors[0] if verr.errors else None
        if first is not None:
            path = str(first.field or "")
            prefix = f"{sv.raw.get('namespace', '')}.{sv.name}."
            path = path[len(prefix):] if path.startswith(prefix) else path
            expected = first.schema if isinstance(first.schema, str) else _type_name(first.schema)
            if first.datum is None:
                reason = f"is missing (expected {expected})"
            else:
                reason = f"has {type(first.datum).__name__} {first.datum!r:.60}, expected {expected}"
            return SchemaValidationError(sv.name, path, reason)
    except Exception:  # validation itself failed: fall through to fastavro's message
        pass
    return SchemaValidationError(sv.name, "", str(exc))


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_type_name(s) for s in schema)
    if isinstance(schema, dict):
        t = schema.get("type")
        if t == "enum":
            return "one of " + ", ".join(schema.get("symbols", []))
        return str(schema.get("name") or t)
    return str(schema)


class AvroCodec:
    """Encodes records with the newest local schema; decodes any known writer version.

    Args:
        schemas: the schema set (default: the one shipped in ``schemas/avro``).
        registry: a Confluent-compatible Schema Registry client; when given, encoding
            uses the Confluent wire format and decoding accepts both framings.
    """

    def __init__(self, schemas: SchemaSet | None = None, registry: Any | None = None) -> None:
        self.schemas = schemas or default_schema_set()
        self.registry = registry
        # (writer fingerprint) -> (writer parsed, reader parsed or None, name, version)
        self._readers: dict[int, tuple[dict, dict | None, str, int]] = {}
        self._writers: dict[str, tuple[SchemaVersion, bytes, dict]] = {}
        self._fast: dict[str, Any] = {}
        # headers in the byte order Agent Gym wrote before following the specification
        # (big-endian fingerprint), read during the transition and counted
        self._legacy: dict[int, tuple[dict, dict | None, str, int]] = {}
        self.legacy_framed = 0
        for name in self.schemas.names:
            sv = self.schemas.latest(name)
            named: dict[str, Any] = {}
            parse_schema(sv.raw, named)
            self._writers[name] = (sv, SINGLE_OBJECT_MARKER + sv.fingerprint_bytes, named)
            try:
                self._fast[name] = compile_encoder(sv.raw)
            except UnsupportedSchema:
                pass  # fastavro writes it

    # -- encoding -----------------------------------------------------------
    def encode(self, name: str, record: dict[str, Any], topic: str | None = None) -> bytes:
        """Encodes ``record`` as the newest version of ``name``.

        Raises:
            SchemaValidationError: naming the field, when the record does not fit.
        """
        try:
            sv, header, named = self._writers[name]
        except KeyError:
            raise SchemaValidationError(name, "", f"unknown record type; known: {', '.join(self._writers)}") from None
        if self.registry is not None:
            header = bytes([CONFLUENT_MAGIC]) + self.registry.schema_id(self._subject(topic, name), sv).to_bytes(4, "big")
        fast = self._fast.get(name)
        if fast is not None:
            try:
                return header + fast(record)
            except Exception:  # noqa: S110 - fastavro below writes it or names the problem
                pass
        try:
            if _write_data is not None:
                buf = bytearray(header)
                _write_data(buf, record, sv.parsed, named, "", _WRITE_OPTIONS)
                return bytes(buf)
            bio = io.BytesIO()
            bio.write(header)
            schemaless_writer(bio, sv.parsed, record)
            return bio.getvalue()
        except Exception as exc:
            raise _explain(sv, record, exc) from exc

    def encode_version(self, sv: SchemaVersion, record: dict[str, Any]) -> bytes:
        """Encodes with a specific (possibly old) schema version, single-object framing."""
        buf = io.BytesIO()
        buf.write(SINGLE_OBJECT_MARKER + sv.fingerprint_bytes)
        try:
            schemaless_writer(buf, sv.parsed, record)
        except Exception as exc:
            raise _explain(sv, record, exc) from exc
        return buf.getvalue()

    @staticmethod
    def _subject(topic: str | None, name: str) -> str:
        # TopicNameStrategy when we know the topic, RecordNameStrategy otherwise.
        return f"{topic}-value" if topic else f"agentgym.{name}"

    # -- decoding -----------------------------------------------------------
    def decode(self, data: bytes | None, expected: str | None = None) -> Decoded:
        """Decodes one message.

        Args:
            data: the message value.
            expected: the record name this topic carries; another name is an error.

        Raises:
            DecodeError: (a subclass naming the problem) for empty, truncated or
                garbled bytes, an unknown fingerprint or schema id, or a wrong record.
        """
        if not data:
            raise TruncatedMessageError("empty message: no Avro header")
        if data[:2] == SINGLE_OBJECT_MARKER:
            if len(data) < _HEADER_LEN:
                raise TruncatedMessageError(
                    f"truncated header: {len(data)} bytes, single-object encoding needs {_HEADER_LEN}"
                )
            fp = int.from_bytes(data[2:10], "little")
            entry = self._readers.get(fp)
            if entry is None:
                entry = self._reader_for_header(fp, data[2:10])
            body_start = _HEADER_LEN
        elif data[0] == CONFLUENT_MAGIC and self.registry is not None:
            if len(data) < 5:
                raise TruncatedMessageError(f"truncated header: {len(data)} bytes, Confluent framing needs 5")
            entry = self._reader_for_registry_id(int.from_bytes(data[1:5], "big"))
            body_start = 5
        else:
            raise BadMarkerError(
                f"not an Agent Gym Avro message: starts with {data[:2].hex()!r}, expected marker 'c301'"
                + ("" if self.registry is None else " or Confluent magic byte 00")
            )
        writer, reader, name, version = entry
        if expected is not None and name != expected:
            raise UnknownSchemaError(f"expected a {expected} record, got {name} (v{version})")
        buf = io.BytesIO(data)
        buf.seek(body_start)
        try:
            record = schemaless_reader(buf, writer, reader)
        except (EOFError, StopIteration) as exc:
            raise TruncatedMessageError(f"truncated {name} body: ran out of bytes ({exc.__class__.__name__})") from exc
        except IndexError as exc:
            # fastavro raises IndexError both when a varint runs past the end and when an
            # enum symbol or union branch index is out of range: tell them apart
            if _runs_out(data, body_start, writer, reader):
                raise TruncatedMessageError(f"truncated {name} body: ran out of bytes ({exc})") from exc
            raise CorruptBodyError(f"garbled {name} body: an enum or union index is out of range ({exc})") from exc
        except Exception as exc:
            raise CorruptBodyError(f"garbled {name} body: {exc.__class__.__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise CorruptBodyError(f"garbled {name} body: {len(data) - buf.tell()} unexpected trailing bytes")
        return Decoded(name, version, record)

    def _reader_for_header(self, fp: int, raw: bytes) -> tuple[dict, dict | None, str, int]:
        """The reader for a fingerprint not yet cached: the specification's byte order
        first, then the legacy (big-endian) order, which is counted in ``legacy_framed``."""
        if self.schemas.by_fingerprint(fp) is not None:
            return self._reader_for_fp(fp)
        entry = self._legacy.get(fp)
        if entry is None:
            sv = self.schemas.by_fingerprint(int.from_bytes(raw, "big"))
            if sv is None:
                return self._reader_for_fp(fp)  # raises UnknownSchemaError
            entry = self._legacy[fp] = self._resolve(sv)
        self.legacy_framed += 1
        n = self.legacy_framed
        if n & (n - 1) == 0:  # 1, 2, 4, 8, ...: visible without flooding the log
            log.warning(
                "read %d event(s) framed with the legacy big-endian schema fingerprint (pre-spec Agent Gym "
                "writers); they decode, but upgrade those producers", n,
            )
        return entry

    def _reader_for_fp(self, fp: int) -> tuple[dict, dict | None, str, int]:
        sv = self.schemas.by_fingerprint(fp)
        if sv is None:
            raise UnknownSchemaError(
                f"unknown schema fingerprint {fp:016x}: the writer used a schema that is not in schemas/avro "
                "(a newer producer? add its .avsc file)"
            )
        entry = self._resolve(sv)
        self._readers[fp] = entry
        return entry

    def _reader_for_registry_id(self, schema_id: int) -> tuple[dict, dict | None, str, int]:
        key = -schema_id - 1  # keep registry ids apart from fingerprints in one cache
        entry = self._readers.get(key)
        if entry is None:
            try:
                sv = self.registry.writer_schema(schema_id, self.schemas)
            except LookupError as exc:
                raise UnknownSchemaError(f"unknown schema id {schema_id} in the Schema Registry: {exc}") from exc
            entry = self._resolve(sv)
            self._readers[key] = entry
        return entry

    def _resolve(self, writer_sv: SchemaVersion) -> tuple[dict, dict | None, str, int]:
        reader_sv = self.schemas.latest(writer_sv.name)
        reader = None if reader_sv.fingerprint == writer_sv.fingerprint else reader_sv.parsed
        return writer_sv.parsed, reader, writer_sv.name, writer_sv.version


def _runs_out(data: bytes, body_start: int, writer: dict, reader: dict | None) -> bool:
    """Whether a body that raised IndexError is merely short: with zero bytes appended
    (a zero is a valid long, length, enum index and union branch) it then decodes."""
    buf = io.BytesIO(data + bytes(4096))
    buf.seek(body_start)
    try:
        schemaless_reader(buf, writer, reader)
    except IndexError:
        return False
    except Exception:  # noqa: S110 - anything else: still not an index out of range
        return True
    return True
