"""Confluent wire format through a Schema Registry speaking the REST API v1.

The registry here is a small in-process HTTP server implementing the two endpoints
the codec uses (register under a subject; fetch by id); no Kafka is involved.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentgym.schemas import AvroCodec, UnknownSchemaError
from agentgym.schemas.confluent import SchemaRegistryClient
from tests.unit.schemas.records import EXAMPLES


class _Registry(BaseHTTPRequestHandler):
    schemas: list[str] = []
    subjects: dict[str, list[int]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # /subjects/<subject>/versions
        parts = self.path.strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        schema = body["schema"]
        if schema not in self.schemas:
            self.schemas.append(schema)
        sid = self.schemas.index(schema) + 1
        self.subjects.setdefault(parts[1], []).append(sid)
        self._reply(200, {"id": sid})

    def do_GET(self) -> None:  # /schemas/ids/<id>
        sid = int(self.path.rsplit("/", 1)[1])
        if not 1 <= sid <= len(self.schemas):
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})
            return
        self._reply(200, {"schema": self.schemas[sid - 1]})


@pytest.fixture
def registry_url() -> Iterator[str]:
    _Registry.schemas, _Registry.subjects = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_confluent_framing_round_trip(registry_url: str) -> None:
    writer = AvroCodec(registry=SchemaRegistryClient(registry_url))
    data = writer.encode("Feedback", EXAMPLES["Feedback"], topic="gym-feedback-v1")
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1
    assert _Registry.subjects == {"gym-feedback-v1-value": [1]}
    # a different process (fresh client, empty caches) reads it back through the registry
    reader = AvroCodec(registry=SchemaRegistryClient(registry_url))
    decoded = reader.decode(data, expected="Feedback")
    assert decoded.record == EXAMPLES["Feedback"]
    assert decoded.writer_version == 1
    # single-object encoded messages stay readable by a registry-configured codec
    assert reader.decode(AvroCodec().encode("Feedback", EXAMPLES["Feedback"])).record == EXAMPLES["Feedback"]


def test_ids_are_cached(registry_url: str) -> None:
    writer = AvroCodec(registry=SchemaRegistryClient(registry_url))
    for _ in range(3):
        writer.encode("Decision", EXAMPLES["Decision"], topic="gym-decisions-v1")
    assert _Registry.subjects == {"gym-decisions-v1-value": [1]}


def test_unknown_registry_id(registry_url: str) -> None:
    reader = AvroCodec(registry=SchemaRegistryClient(registry_url))
    with pytest.raises(UnknownSchemaError, match="unknown schema id 99"):
        reader.decode(b"\x00\x00\x00\x00\x63body")
