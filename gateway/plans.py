"""Tenant plans (agents, runs per month, request rate) and their administration.

The plans of the pricing tiers:

| plan | agents | runs/month |
|---|---|---|
| free | 1 | 100 |
| pro | 5 | 10,000 |
| business | 20 | 100,000 |
| enterprise | custom (unlimited unless set) | custom |

A tenant's plan is a ``TenantPlan`` record in the compacted topic ``gym-tenants-v1``
(``agentgym tenants set``); any limit can be overridden per tenant, and the record may
set the tenant's rate limit per API key. A tenant without a record has the gateway's
default plan (``AGENTGYM_GATEWAY_DEFAULT_PLAN``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from agentgym.gateway.exceptions import PlanError
from agentgym.gateway.follower import CompactedFollower
from agentgym.gateway.ids import check_id
from agentgym.processors.retention import Retention
from agentgym.producers.records import RecordProducer, read_topic

__all__ = [
    "Plan", "PLANS", "plan_record", "plan_from_record", "TenantPlans", "set_plan", "list_plans", "latest_plan",
    "set_retention",
]

_TOPIC = "tenants"


@dataclass(frozen=True, slots=True)
class Plan:
    """A tenant's limits (None: unlimited, or the gateway's default rate)."""

    name: str
    max_agents: int | None
    max_runs_per_month: int | None
    rate_per_s: float | None = None
    burst: float | None = None


PLANS: dict[str, Plan] = {
    "free": Plan("free", 1, 100),
    "pro": Plan("pro", 5, 10_000),
    "business": Plan("business", 20, 100_000),
    "enterprise": Plan("enterprise", None, None),
}


def plan_record(tenant_id: str, plan: str, *, max_agents: int | None = None, max_runs_per_month: int | None = None,
                rate_per_s: float | None = None, burst: float | None = None,
                retention: Retention | None = None) -> dict[str, Any]:
    """A ``TenantPlan`` record: the named plan's limits, overridden where given; ``retention``: the
    tenant's own retention (None, or days left None: the platform's defaults)."""
    check_id("tenant_id", tenant_id)
    base = PLANS.get(plan)
    if base is None and plan != "custom":
        raise PlanError(f"plan {plan!r} is not one of {', '.join([*PLANS, 'custom'])}")
    for name, v in (("max_agents", max_agents), ("max_runs_per_month", max_runs_per_month)):
        if v is not None and v < 0:
            raise PlanError(f"{name} must be >= 0, got {v}")
    if rate_per_s is not None and rate_per_s <= 0:
        raise PlanError(f"rate_per_s must be > 0, got {rate_per_s}")
    if burst is not None and burst < 1:
        raise PlanError(f"burst must be >= 1, got {burst}")
    return {
        "event_id": os.urandom(16).hex(), "tenant_id": tenant_id, "plan": plan,
        "max_agents": max_agents if max_agents is not None else (base.max_agents if base else None),
        "max_runs_per_month": max_runs_per_month if max_runs_per_month is not None else (base.max_runs_per_month if base else None),
        "rate_per_s": rate_per_s, "burst": burst, "updated_ms": time.time_ns() // 1_000_000,
        "retention": None if retention is None or retention.is_default else retention.record(),
    }


def plan_from_record(record: dict[str, Any]) -> Plan:
    return Plan(record["plan"], record["max_agents"], record["max_runs_per_month"], record["rate_per_s"], record["burst"])


class TenantPlans:
    """Every tenant's plan, followed live from ``gym-tenants-v1``."""

    def __init__(self, bootstrap_servers: str, default_plan: str = "free") -> None:
        if default_plan not in PLANS:
            raise PlanError(f"default plan {default_plan!r} is not one of {', '.join(PLANS)}")
        self.default = PLANS[default_plan]
        self.follower = CompactedFollower(bootstrap_servers, _TOPIC, on_record=self._changed)
        self._plans: dict[str, Plan] = {}

    def _changed(self, tenant_id: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self._plans.pop(tenant_id, None)
        else:
            self._plans[tenant_id] = plan_from_record(record)

    def plan_of(self, tenant_id: str) -> Plan:
        return self._plans.get(tenant_id, self.default)

    def start(self) -> "TenantPlans":
        self.follower.start()
        return self

    def close(self) -> None:
        self.follower.close()

    @property
    def ready(self) -> bool:
        return self.follower.ready


def set_plan(bootstrap_servers: str, tenant_id: str, plan: str, **limits: Any) -> dict[str, Any]:
    """Writes a tenant's plan (``limits``: see :func:`plan_record`) and waits for Kafka to hold it.

    Without ``retention`` in ``limits`` the tenant's current retention is kept; its masking policy always is.
    """
    current = latest_plan(bootstrap_servers, tenant_id)
    if "retention" not in limits:
        limits["retention"] = Retention(**current["retention"]) if current and current.get("retention") else None
    record = plan_record(tenant_id, plan, **limits)
    if current is not None and current.get("masking") is not None:
        record["masking"] = current["masking"]
    with RecordProducer(bootstrap_servers) as producer:
        producer.send(_TOPIC, record)
    return record


def list_plans(bootstrap_servers: str) -> list[dict[str, Any]]:
    """The latest plan record of every tenant that has one."""
    latest: dict[str, dict[str, Any]] = {}
    for r in read_topic(bootstrap_servers, _TOPIC):
        latest[r["tenant_id"]] = r
    return sorted(latest.values(), key=lambda r: r["tenant_id"])


def latest_plan(bootstrap_servers: str, tenant_id: str) -> dict[str, Any] | None:
    """The tenant's latest plan record; None when it has none."""
    check_id("tenant_id", tenant_id)
    latest = None
    for r in read_topic(bootstrap_servers, _TOPIC):
        if r["tenant_id"] == tenant_id:
            latest = r
    return latest


def set_retention(bootstrap_servers: str, tenant_id: str, default_plan: str = "free", *, reset: bool = False,
                  **days: int | None) -> dict[str, Any]:
    """Sets a tenant's own retention (``events_days=30``, ...; see :class:`Retention`), keeping the rest of its plan.

    Days not given keep their current value; ``reset`` first returns every kind to the platform's
    default. A tenant without a plan record gets one with ``default_plan`` (the plan it had).

    Raises:
        PlanError: an unknown kind, or days out of range (the message names the field).
    """
    current = latest_plan(bootstrap_servers, tenant_id)
    own = {} if reset or current is None or current.get("retention") is None else dict(current["retention"])
    for name, value in days.items():
        if name not in Retention.__dataclass_fields__:
            raise PlanError(f"retention has no field {name!r}; fields: {', '.join(Retention.__dataclass_fields__)}")
        if value is not None:
            own[name] = value
    try:
        retention = Retention(**own)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if current is None:
        record = plan_record(tenant_id, default_plan, retention=retention)
    else:
        record = dict(current, event_id=os.urandom(16).hex(), updated_ms=time.time_ns() // 1_000_000,
                      retention=None if retention.is_default else retention.record())
    with RecordProducer(bootstrap_servers) as producer:
        producer.send(_TOPIC, record)
    return record
