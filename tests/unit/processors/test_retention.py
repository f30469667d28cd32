"""Retention's pure parts: the days per kind, the tenants' records, the plan record on the wire."""

from __future__ import annotations

import logging

import pytest

from agentgym.gateway.plans import plan_record
from agentgym.processors.retention import Retention, RetentionSettings, retention_from_record, tenant_retentions
from agentgym.schemas import AvroCodec


def test_a_tenants_days_override_the_defaults_kind_by_kind() -> None:
    defaults = RetentionSettings().defaults
    assert defaults == Retention(365, 365, 365, 365, 365)
    own = Retention(events_days=30, models_days=7)
    assert own.over(defaults) == Retention(30, 365, 365, 365, 7)
    assert own.record() == {"events_days": 30, "outcomes_days": None, "stats_days": None, "datasets_days": None,
                            "models_days": 7}
    assert Retention().is_default and not own.is_default


@pytest.mark.parametrize("bad", [0, -1, 10_001, True, 1.5, "30"])
def test_days_out_of_range_or_not_whole_are_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match=r"retention\.stats_days must be a whole number of days from 1 to 10000"):
        Retention(stats_days=bad)  # type: ignore[arg-type]


def test_the_latest_record_of_each_tenant_decides(caplog: pytest.LogCaptureFixture) -> None:
    plans = [
        {"tenant_id": "a", "retention": {"events_days": 1}},
        {"tenant_id": "a", "retention": {"events_days": 2, "datasets_days": 9}},  # later: wins
        {"tenant_id": "b", "retention": {"events_days": 1}},
        {"tenant_id": "b", "retention": None},  # back to the defaults
        {"tenant_id": "c"},  # a v1 record: no retention
        {"tenant_id": "d", "retention": {"events_days": 0}},  # not ours: the defaults, with a warning
    ]
    with caplog.at_level(logging.WARNING, logger="agentgym.processors.retention"):
        assert tenant_retentions(plans) == {"a": Retention(events_days=2, datasets_days=9)}
    assert "tenant d: retention.events_days" in caplog.text
    assert retention_from_record(None) == Retention()


def test_a_plan_record_with_retention_round_trips_through_avro() -> None:
    record = plan_record("acme", "pro", retention=Retention(events_days=30, datasets_days=90))
    codec = AvroCodec()
    decoded = codec.decode(codec.encode("TenantPlan", record)).record
    assert decoded["retention"] == {"events_days": 30, "outcomes_days": None, "stats_days": None, "datasets_days": 90,
                                    "models_days": None}
    assert retention_from_record(decoded) == Retention(events_days=30, datasets_days=90)
    assert plan_record("acme", "pro", retention=Retention())["retention"] is None  # all defaults: no record
