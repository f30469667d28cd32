"""The API fuzzed from its own OpenAPI document (schemathesis, bounded): no 5xx, every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.http_server import serve_readonly
from tests.integration.gateway.conftest import Served, ServedGateway, new_key, test_settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
MAX_EXAMPLES = 30  # per operation: bounded for CI (~10 s in all)


@pytest.fixture(scope="module")
def served(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The gateway with an analytics store: an embedded one served read-only, as the worker serves it."""
    store = open_store(f"chdb://{tmp_path_factory.mktemp('fuzz-store') / 'ch'}")
    migrate(store)
    http = serve_readonly(store)
    try:
        with ServedGateway(test_settings(bootstrap, tmp_path_factory.mktemp("gateway-spool"), clickhouse_url=http.url)) as s:
            yield s
    finally:
        http.stop()
        store.close()


@pytest.mark.timeout(150)
def test_api_conforms_to_its_own_description(served: Served, bootstrap: str) -> None:
    key = new_key(bootstrap, served, "fuzz-tenant", "ingest,read,annotate")  # annotate: the annotation queue too
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 6  # schemathesis leaves out the document's own URL
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

        fuzz()
