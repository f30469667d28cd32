"""Masking at ingestion in the API: each tenant's (and agent's) policy, from its ``TenantPlan`` record.

A tenant's plan record on ``gym-tenants-v1`` holds a nested ``masking`` record
(``TenantPlan.v2``): the tenant's policy (on/off, built-in detectors, fields, custom regexes,
keyed hash) and per-agent policies that replace it for one agent. A tenant without one gets the
defaults: the built-in detectors (:data:`~agentgym.producers.masking.DEFAULT_DETECTORS`) on the
default fields (:data:`~agentgym.producers.masking.DEFAULT_FIELDS`), plain placeholders.
``agentgym tenants masking`` sets it; every gateway replica applies it within a second.

The keyed hash uses a per-tenant secret derived from the gateway's ``AGENTGYM_GATEWAY_MASK_SECRET``
(HMAC-SHA256(secret, ``"agentgym-mask:" + tenant_id``)): no secret travels in Kafka, and one tenant's
hashes cannot be joined with another's. ``agentgym tenants masking-key`` prints a tenant's key, for
its SDKs' ``AGENTGYM_MASK_HASH_KEY``, so SDK and API hash alike. A Python hook cannot travel in a
record: the API has none (the SDK's ``mask_hook``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from agentgym.gateway.exceptions import PlanError
from agentgym.gateway.follower import CompactedFollower
from agentgym.gateway.ids import check_id
from agentgym.gateway.plans import latest_plan, plan_record
from agentgym.producers.masking import (
    DEFAULT_DETECTORS, DEFAULT_FIELDS, Masker, MaskingConfigError, MaskingPolicy, parse_detectors, parse_fields,
)
from agentgym.producers.records import RecordProducer

__all__ = ["policy_record", "tenant_key", "build_policy", "TenantMaskers", "set_masking", "DEFAULT_POLICY"]

log = logging.getLogger("agentgym.gateway")
_TOPIC = "tenants"

DEFAULT_POLICY: dict[str, Any] = {"enabled": True, "detectors": None, "fields": None, "patterns": {}, "hash": False}
"""A policy record with every default (the built-in detectors on the default fields, plain placeholders)."""


def tenant_key(secret: str, tenant_id: str) -> bytes:
    """The tenant's masking hash key, derived from the gateway's secret (hex text, as ``AGENTGYM_MASK_HASH_KEY`` takes it)."""
    return hmac.new(secret.encode(), f"agentgym-mask:{tenant_id}".encode(), hashlib.sha256).hexdigest().encode()


def policy_record(*, enabled: bool = True, detectors: Iterable[str] | str | None = None, fields: Iterable[str] | str | None = None,
                  patterns: Mapping[str, str] | None = None, hash: bool = False) -> dict[str, Any]:
    """A checked masking policy record (``AgentMasking`` / the policy fields of ``TenantMasking``).

    Raises:
        PlanError: an unknown detector or field, or a pattern that does not compile (named).
    """
    try:
        rec = {"enabled": bool(enabled),
               "detectors": None if detectors is None else list(parse_detectors(detectors)),
               "fields": None if fields is None else list(parse_fields(fields)),
               "patterns": dict(patterns or {}), "hash": bool(hash)}
        Masker(rec["detectors"] if rec["detectors"] is not None else DEFAULT_DETECTORS, rec["patterns"])
    except MaskingConfigError as exc:
        raise PlanError(f"masking: {exc}") from None
    return rec


def build_policy(rec: Mapping[str, Any] | None, tenant_id: str, secret: str) -> MaskingPolicy:
    """The policy a record describes (None: the defaults), with the tenant's hash key when it asks for one."""
    rec = rec or DEFAULT_POLICY
    if not rec.get("enabled", True):
        return MaskingPolicy(None, ())
    detectors = rec.get("detectors")
    key = None
    if rec.get("hash"):
        if secret:
            key = tenant_key(secret, tenant_id)
        else:
            log.warning("agentgym gateway: tenant %s asks for hashed masking placeholders but "
                        "AGENTGYM_GATEWAY_MASK_SECRET is unset: plain placeholders", tenant_id)
    masker = Masker(DEFAULT_DETECTORS if detectors is None else detectors, rec.get("patterns") or {}, key)
    fields = rec.get("fields")
    return MaskingPolicy(masker, DEFAULT_FIELDS if fields is None else fields)


class TenantMaskers:
    """Every tenant's masking policy, followed live from ``gym-tenants-v1``; compiled once per record.

    Args:
        bootstrap_servers: Kafka.
        secret: the gateway's masking secret (``AGENTGYM_GATEWAY_MASK_SECRET``; empty: no keyed hash).
    """

    def __init__(self, bootstrap_servers: str, secret: str = "") -> None:
        self.secret = secret
        self._masking: dict[str, dict[str, Any]] = {}
        self._cache: dict[tuple[str, str | None], MaskingPolicy] = {}
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every change: a policy built from an older record is not cached
        self.follower = CompactedFollower(bootstrap_servers, _TOPIC, on_record=self._changed)

    def _changed(self, tenant_id: str, record: dict[str, Any] | None) -> None:
        masking = record.get("masking") if record is not None else None
        with self._lock:
            if masking is None:
                self._masking.pop(tenant_id, None)
            else:
                self._masking[tenant_id] = masking
            for k in [k for k in self._cache if k[0] == tenant_id]:
                del self._cache[k]
            self._generation += 1

    def policy(self, tenant_id: str, agent_id: str) -> MaskingPolicy:
        """The policy of ``agent_id`` of ``tenant_id``: the agent's own, else the tenant's, else the defaults."""
        generation = self._generation
        masking = self._masking.get(tenant_id)
        agents = masking.get("agents") or {} if masking else {}
        which = agent_id if agent_id in agents else None
        key = (tenant_id, which)
        found = self._cache.get(key)
        if found is None:
            rec = agents[which] if which is not None else masking
            try:
                found = build_policy(rec, tenant_id, self.secret)
            except MaskingConfigError as exc:  # written by hand, past agentgym tenants: the defaults, loudly
                log.error("agentgym gateway: tenant %s's masking policy is invalid (%s): the defaults apply", tenant_id, exc)
                found = build_policy(None, tenant_id, self.secret)
            with self._lock:
                if generation == self._generation:
                    self._cache[key] = found
        return found

    def start(self) -> "TenantMaskers":
        self.follower.start()
        return self

    def close(self) -> None:
        self.follower.close()

    @property
    def ready(self) -> bool:
        return self.follower.ready


def set_masking(bootstrap_servers: str, tenant_id: str, policy: Mapping[str, Any] | None, *, agent_id: str | None = None,
                default_plan: str = "free") -> dict[str, Any]:
    """Sets a tenant's masking policy (``agent_id``: that agent's), keeping the rest of its plan record.

    Args:
        policy: a :func:`policy_record`; None removes it (the tenant: the gateway's defaults; an
            agent: the tenant's policy).
        default_plan: the plan of a tenant without a plan record (the plan it had).

    Returns:
        The record written.
    """
    check_id("tenant_id", tenant_id)
    if agent_id is not None:
        check_id("agent_id", agent_id)
    current = latest_plan(bootstrap_servers, tenant_id)
    record = dict(current) if current is not None else plan_record(tenant_id, default_plan)
    masking = dict(record.get("masking") or {**DEFAULT_POLICY, "agents": {}})
    if agent_id is None:
        agents = masking.get("agents") or {}
        masking = {**(dict(policy) if policy is not None else DEFAULT_POLICY), "agents": agents}
        if policy is None and not agents:
            masking = None  # type: ignore[assignment]
    else:
        agents = dict(masking.get("agents") or {})
        if policy is None:
            agents.pop(agent_id, None)
        else:
            agents[agent_id] = dict(policy)
        masking["agents"] = agents
    record.update(event_id=os.urandom(16).hex(), updated_ms=time.time_ns() // 1_000_000, masking=masking)
    with RecordProducer(bootstrap_servers) as producer:
        producer.send(_TOPIC, record)
    return record
