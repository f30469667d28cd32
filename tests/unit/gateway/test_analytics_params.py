"""The analytics API's parameter binding and the audit record, without a broker or an engine."""

from __future__ import annotations

import pytest

from agentgym.gateway.analytics import CATALOGUE, PARAMS, QueryLimits, bind
from agentgym.gateway.audit import audit_record, outcome_of
from agentgym.gateway.exceptions import ApiError, AuditError
from agentgym.schemas.codec import AvroCodec

NOW = 1_796_000_000_000  # 2026-11-30T00:53:20Z, epoch milliseconds
LIMITS = QueryLimits(max_result_rows=500, max_range_days=31)


def test_the_tenant_is_always_the_keys_and_defaults_are_filled() -> None:
    bound, echo = bind(CATALOGUE["runs_over_time"], {}, "acme", LIMITS, NOW)
    assert bound == {"tenant": "acme", "from_ms": NOW - 7 * 86_400_000, "to_ms": NOW, "agent_id": "", "bucket_s": 3600, "limit": 100}
    assert echo["agent_id"] is None and echo["bucket"] == "hour" and echo["to"].endswith("Z")


@pytest.mark.parametrize(("given", "expected_from", "expected_to"), [
    ({"from": "2026-11-01", "to": "2026-11-02"}, 1_793_491_200_000, 1_793_577_600_000),
    ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T02:00:00+01:00"}, 1_793_491_200_000, 1_793_494_800_000),
    ({"from": "1793491200000", "to": "1793491260000"}, 1_793_491_200_000, 1_793_491_260_000),
])
def test_times_parse_as_rfc3339_dates_or_epoch_ms(given: dict[str, str], expected_from: int, expected_to: int) -> None:
    bound, _ = bind(CATALOGUE["dead_letters"], given, "acme", LIMITS, NOW)
    assert (bound["from_ms"], bound["to_ms"]) == (expected_from, expected_to)


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ApiError) as exc:  # 01:00+01:00 is midnight UTC
        bind(CATALOGUE["dead_letters"], {"from": "2026-11-01", "to": "2026-11-01T01:00:00+01:00"}, "acme", LIMITS, NOW)
    assert (exc.value.status, exc.value.field) == (400, "from")


@pytest.mark.parametrize(("name", "given", "field"), [
    ("runs_over_time", {"tenant": "other"}, "tenant"),
    ("models", {"from": "2026-11-01"}, "from"),
    ("runs_over_time", {"from": "soon"}, "from"),
    ("runs_over_time", {"from": "2026-01-01", "to": "2026-11-01"}, "from"),  # wider than 31 days
    ("runs_over_time", {"bucket": "minute"}, "bucket"),
    ("runs_over_time", {"agent_id": "a/b"}, "agent_id"),
    ("models", {"limit": "501"}, "limit"),
    ("models", {"limit": "-1"}, "limit"),
    ("models", {"limit": "1e3"}, "limit"),
])
def test_invalid_parameters_are_400_naming_them(name: str, given: dict[str, str], field: str) -> None:
    with pytest.raises(ApiError) as exc:
        bind(CATALOGUE[name], given, "acme", LIMITS, NOW)
    assert (exc.value.status, exc.value.field) == (400, field)


def test_every_query_reads_only_tenant_views_and_binds_only_known_parameters() -> None:
    for q in CATALOGUE.values():
        assert set(q.params) <= set(PARAMS), q.name
        assert "{tenant:String}" in q.sql and " v_" not in q.sql and "FROM pv_" in q.sql, q.name
        # every FROM/JOIN reads a pv_ view with the tenant argument
        for part in q.sql.split("FROM ")[1:]:
            assert part.startswith(("pv_", "\n(")) or part.lstrip().startswith("("), (q.name, part[:40])


def test_audit_records_encode_and_outcomes_follow_the_status() -> None:
    assert [outcome_of(s) for s in (200, 201, 403, 422, 500)] == ["ok", "ok", "refused", "refused", "error"]
    r = audit_record(tenant_id="acme", key_id="a1b2c3d4e5f6", action="model.promote", target="v4", outcome="ok",
                     status=200, detail="x" * 5000)
    assert len(r["detail"]) == 2000
    codec = AvroCodec()
    assert codec.decode(codec.encode("AuditEvent", r)).record == r
    with pytest.raises(AuditError):
        audit_record(tenant_id="acme", key_id="", action="x", target="", outcome="maybe")
