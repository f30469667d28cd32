"""The API fuzzed from its own OpenAPI document (schemathesis, bounded): no 5xx, every answer as documented."""

from __future__ import annotations

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

from tests.integration.gateway.conftest import Served, new_key

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
MAX_EXAMPLES = 30  # per operation: bounded for CI (~10 s in all)


@pytest.mark.timeout(150)
def test_api_conforms_to_its_own_description(served: Served, bootstrap: str) -> None:
    key = new_key(bootstrap, served, "fuzz-tenant", "ingest,read")
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
