"""The local schema set: every version of every record, loaded from ``schemas/avro``.

Files are named ``<Record>.v<N>.avsc``. The highest version of a record is the
*reader* schema: events written with any older version are resolved against it
(Avro schema resolution), so old events stay readable after a schema evolves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from agentgym.schemas.exceptions import SchemaError

__all__ = ["AVRO_DIR", "SchemaVersion", "SchemaSet", "default_schema_set", "schema_fingerprint", "RECORD_NAMES"]

AVRO_DIR = Path(__file__).resolve().parent / "avro"
_FILE_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9]*)\.v(?P<version>\d+)\.avsc$")

RECORD_NAMES = (
    "Experience",
    "Feedback",
    "Outcome",
    "ExperimentConfig",
    "StatsSnapshot",
    "Decision",
    "DatasetReady",
    "ModelVersion",
    "DeadLetter",
    "DriftAlert",
    "ScenarioLineage",
    "AuditEvent",
    "ApiKey",
    "TenantPlan",
    "TenantUsage",
    "OtelSpans",
    "Deletion",
)


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema."""

    name: str
    version: int
    raw: dict[str, Any] = field(repr=False)
    parsed: dict[str, Any] = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: int  # CRC-64-AVRO (Rabin) of the parsing canonical form, as an unsigned int
    path: Path | None = None

    @property
    def fingerprint_bytes(self) -> bytes:
        """The fingerprint as Avro single-object encoding writes it (8 bytes, little-endian;
        Avro 1.11 specification, "Single object encoding")."""
        return self.fingerprint.to_bytes(8, "little")

    @property
    def legacy_fingerprint_bytes(self) -> bytes:
        """The fingerprint in the byte order Agent Gym wrote before it followed the
        specification (big-endian). Readers still accept it during the transition."""
        return self.fingerprint.to_bytes(8, "big")


def schema_fingerprint(canonical: str) -> int:
    """The CRC-64-AVRO (Rabin) fingerprint of a parsing canonical form, as an integer
    (Avro 1.11 specification, "Schema Fingerprints"); e.g. 0x63dd24e7cc258f8a for ``"null"``."""
    # fastavro's hex string spells the fingerprint's little-endian bytes (as Java's
    # SchemaNormalization and Apache avro for Python give them): read it as such
    return int.from_bytes(bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")), "little")


def _make_version(name: str, version: int, raw: dict[str, Any], path: Path | None) -> SchemaVersion:
    try:
        parsed = parse_schema(raw)
        canonical = to_parsing_canonical_form(raw)
    except Exception as exc:  # fastavro raises several types for bad schemas
        raise SchemaError(f"{path or name}: invalid Avro schema: {exc}") from exc
    fp = schema_fingerprint(canonical)
    return SchemaVersion(name, version, raw, parsed, canonical, fp, path)


class SchemaSet:
    """All record schemas and their versions, indexed by name and by fingerprint."""

    def __init__(self, directory: Path | str = AVRO_DIR) -> None:
        self.directory = Path(directory)
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_fp: dict[int, SchemaVersion] = {}
        files = sorted(self.directory.glob("*.avsc"))
        if not files:
            raise SchemaError(f"no .avsc files in {self.directory}")
        for path in files:
            m = _FILE_RE.match(path.name)
            if not m:
                raise SchemaError(f"{path.name}: schema files must be named <Record>.v<N>.avsc")
            try:
                raw = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise SchemaError(f"{path}: not valid JSON: {exc}") from exc
            name, version = m["name"], int(m["version"])
            if raw.get("name") != name:
                raise SchemaError(f"{path.name}: record name {raw.get('name')!r} does not match the file name")
            sv = _make_version(name, version, raw, path)
            self._add(sv)
        for versions in self._by_name.values():
            versions.sort(key=lambda v: v.version)

    def _add(self, sv: SchemaVersion) -> None:
        if sv.fingerprint in self._by_fp and self._by_fp[sv.fingerprint].name != sv.name:
            raise SchemaError(f"fingerprint collision between {sv.name} and {self._by_fp[sv.fingerprint].name}")
        self._by_name.setdefault(sv.name, []).append(sv)
        self._by_fp.setdefault(sv.fingerprint, sv)

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        try:
            return list(self._by_name[name])
        except KeyError:
            raise SchemaError(f"unknown record {name!r}; known: {', '.join(self.names)}") from None

    def latest(self, name: str) -> SchemaVersion:
        return self.versions(name)[-1]

    def get(self, name: str, version: int) -> SchemaVersion:
        for sv in self.versions(name):
            if sv.version == version:
                return sv
        raise SchemaError(f"{name} has no version {version}")

    def by_fingerprint(self, fp: int) -> SchemaVersion | None:
        return self._by_fp.get(fp)

    def register_writer(self, name: str, raw: dict[str, Any]) -> SchemaVersion:
        """Returns the version of a writer schema learnt at run time (e.g. from a Schema
        Registry): the local version with the same fingerprint, or a new version 0."""
        sv = _make_version(name, 0, raw, None)
        if name not in self._by_name:
            raise SchemaError(f"writer schema for unknown record {name!r}; known: {', '.join(self.names)}")
        return self._by_fp.setdefault(sv.fingerprint, sv)


@cache
def default_schema_set() -> SchemaSet:
    """The schema set shipped in this package (loaded once per process)."""
    return SchemaSet(AVRO_DIR)
