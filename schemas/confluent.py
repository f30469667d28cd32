"""A minimal client for a Confluent-compatible Schema Registry (REST API v1).

Only what the codec needs: register a writer schema under a subject (getting its id)
and fetch a writer schema by id. Ids are cached for the life of the client.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

from agentgym.schemas.exceptions import SchemaError
from agentgym.schemas.registry import SchemaSet, SchemaVersion

__all__ = ["SchemaRegistryClient"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    """Talks to ``url`` (e.g. ``http://localhost:8081``).

    Args:
        url: the registry's base URL.
        timeout_s: per-request timeout in seconds (default 5).
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._ids: dict[tuple[str, int], int] = {}
        self._schemas: dict[int, SchemaVersion] = {}
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": _CONTENT_TYPE})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            if exc.code == 404:
                raise LookupError(f"{method} {path}: 404 {detail}") from exc
            raise SchemaError(f"Schema Registry {method} {path}: HTTP {exc.code} {detail}") from exc
        except OSError as exc:
            raise SchemaError(f"Schema Registry at {self.url} unreachable: {exc}") from exc

    def schema_id(self, subject: str, sv: SchemaVersion) -> int:
        """The registry id of ``sv`` under ``subject``, registering it on first use."""
        key = (subject, sv.fingerprint)
        sid = self._ids.get(key)
        if sid is None:
            with self._lock:
                resp = self._request("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(sv.raw)})
                sid = int(resp["id"])
                self._ids[key] = sid
        return sid

    def writer_schema(self, schema_id: int, schemas: SchemaSet) -> SchemaVersion:
        """The writer schema registered under ``schema_id``.

        Raises:
            LookupError: the registry does not know the id.
        """
        sv = self._schemas.get(schema_id)
        if sv is None:
            resp = self._request("GET", f"/schemas/ids/{schema_id}")
            raw = json.loads(resp["schema"])
            sv = schemas.register_writer(str(raw.get("name", "")).rsplit(".", 1)[-1], raw)
            self._schemas[schema_id] = sv
        return sv
