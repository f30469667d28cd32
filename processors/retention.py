"""Retention per tenant: how long ClickHouse keeps each tenant's rows (docs/privacy.md, Retention).

Every table that holds a tenant's data has an ``expires_at`` column (migration 0011),
computed by ClickHouse at insert from the row's time and the tenant's retention in the
``tenant_retention`` Join table, and ``TTL expires_at``: ClickHouse deletes the row at
the first merge after it expires. This module keeps ``tenant_retention`` equal to the
tenants' ``TenantPlan.retention`` on ``gym-tenants-v1`` (and the platform's defaults,
the row ``'*'``), and, when a retention changes, recomputes ``expires_at`` of the rows
that change with it (an ``ALTER TABLE ... UPDATE``; the mutation applies the TTL).

The worker running the ClickHouse sink runs :func:`sync` every
``AGENTGYM_RETENTION_INTERVAL_S`` (it owns the store); the trainer service expires the
dataset and model files (:mod:`agentgym.trainers.retention`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from pydantic import Field

from agentgym.processors.store import open_store
from agentgym.processors.store.base import Store
from agentgym.producers.admin import set_topic_retention
from agentgym.producers.kafka_security import librdkafka_security
from agentgym.producers.records import read_topic
from agentgym.producers.settings import SharedSettings

__all__ = [
    "KINDS", "TABLES", "MAX_DAYS", "Retention", "RetentionSettings", "retention_from_record", "tenant_retentions",
    "sync", "RetentionLoop",
]

log = logging.getLogger(__name__)

KINDS = ("events", "outcomes", "stats", "datasets", "models")
"""What a retention applies to, in the order of :class:`Retention`'s fields."""

TABLES: dict[str, str] = {
    "experiences": "events", "feedback": "events", "dead_letters": "events",
    "outcomes": "outcomes", "stats_snapshots": "stats", "datasets": "datasets",
}
"""ClickHouse table -> the kind of retention its ``expires_at`` follows (0011)."""

MAX_DAYS = 10_000
"""The longest retention (~27 years: ``expires_at`` is a ``DateTime``, which ends in 2106)."""

DEFAULT = "*"
"""The key of the platform's defaults in ``tenant_retention``."""


@dataclass(frozen=True, slots=True)
class Retention:
    """Days kept, per kind of data; None: the platform's default."""

    events_days: int | None = None
    outcomes_days: int | None = None
    stats_days: int | None = None
    datasets_days: int | None = None
    models_days: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DAYS):
                raise ValueError(f"retention.{f.name} must be a whole number of days from 1 to {MAX_DAYS}, got {v!r}")

    def days(self, kind: str) -> int | None:
        return getattr(self, f"{kind}_days")

    def over(self, defaults: "Retention") -> "Retention":
        """These days where set, ``defaults``' elsewhere."""
        return Retention(**{f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(defaults, f.name)
                            for f in fields(self)})

    def record(self) -> dict[str, int | None]:
        """The ``TenantPlan.retention`` record."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def is_default(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


class RetentionSettings(SharedSettings):
    """Read by the worker that runs the ClickHouse sink (it keeps ClickHouse's per-tenant TTLs in
    step with the tenants' retention, and sets the event topics' `retention.ms` at start) and
    by the trainer service (it deletes expired dataset and model files). A tenant's own
    retention (`agentgym tenants retention`) overrides these defaults; see docs/privacy.md."""

    retention_events_days: int = Field(
        365, ge=1, le=MAX_DAYS, description="default days ClickHouse keeps raw events (experiences, feedback, dead "
        "letters), from the event's time (1-10000)")
    retention_outcomes_days: int = Field(
        365, ge=1, le=MAX_DAYS, description="default days ClickHouse keeps outcomes (labels), from the labelling (1-10000)")
    retention_stats_days: int = Field(
        365, ge=1, le=MAX_DAYS, description="default days ClickHouse keeps experiment statistics snapshots (1-10000)")
    retention_datasets_days: int = Field(
        365, ge=1, le=MAX_DAYS, description="default days a dataset's files (and its row in ClickHouse) are kept after "
        "it was built (1-10000)")
    retention_models_days: int = Field(
        365, ge=1, le=MAX_DAYS, description="default days a model's adapter files are kept after it was registered; a "
        "champion's or a candidate's are kept whatever their age (1-10000)")
    retention_interval_s: float = Field(
        300.0, gt=0, description="seconds between two retention passes (ClickHouse TTLs in the worker, dataset and "
        "model files in the trainer service) (> 0)")
    retention_kafka_events_ms: int = Field(
        7 * 24 * 3600 * 1000, ge=3_600_000, description="`retention.ms` of the event topics (experiences, feedback, "
        "outcomes, OTLP spans), set by the worker at start: Kafka topics are shared by tenants, so this one value "
        "applies to all (>= 1 hour)", json_schema_extra={"doc_default": "`604800000` (7 days)"})

    @property
    def defaults(self) -> Retention:
        return Retention(self.retention_events_days, self.retention_outcomes_days, self.retention_stats_days,
                         self.retention_datasets_days, self.retention_models_days)


def retention_from_record(record: Mapping[str, Any] | None) -> Retention:
    """The retention of a ``TenantPlan`` record (a v1 record, or one without it: the defaults)."""
    r = (record or {}).get("retention") or {}
    return Retention(**{f.name: r.get(f.name) for f in fields(Retention)})


def tenant_retentions(plans: list[Mapping[str, Any]]) -> dict[str, Retention]:
    """tenant -> its own retention, for the latest plan record of each tenant that sets one."""
    latest: dict[str, Mapping[str, Any]] = {}
    for r in plans:
        latest[r["tenant_id"]] = r
    out = {}
    for tenant, r in latest.items():
        try:
            ret = retention_from_record(r)
        except ValueError as exc:  # a record written by another tool: keep the defaults, say why
            log.warning("retention: tenant %s: %s; the defaults apply", tenant, exc)
            continue
        if not ret.is_default:
            out[tenant] = ret
    return out


def _rows(tenants: Mapping[str, Retention], defaults: Retention) -> set[tuple[Any, ...]]:
    rows = {(DEFAULT, *(defaults.days(k) for k in KINDS))}
    rows |= {(t, *((r.days(k) or 0) for k in KINDS)) for t, r in tenants.items()}
    return rows


def sync(store: Store, tenants: Mapping[str, Retention], defaults: Retention) -> bool:
    """Makes ``tenant_retention`` hold ``tenants``' retention and ``defaults``; applies a change to stored rows.

    When anything changed, each table's ``expires_at`` is recomputed (from its column
    default, the migration's expression) for the rows whose value changes, synchronously:
    rows past their new expiry are gone when this returns.

    Returns:
        Whether ``tenant_retention`` changed.
    """
    if defaults.is_default or any(defaults.days(k) is None for k in KINDS):
        raise ValueError("the platform's default retention must set every kind")
    wanted = _rows(tenants, defaults)
    current = {tuple(r) for r in store.query(
        "SELECT tenant_id, " + ", ".join(f"{k}_days" for k in KINDS) + " FROM tenant_retention").rows}
    if current == wanted:
        return False
    store.command("TRUNCATE TABLE tenant_retention")
    store.insert("tenant_retention", sorted(wanted), ["tenant_id", *(f"{k}_days" for k in KINDS)])
    exprs = dict(store.query(
        "SELECT table, default_expression FROM system.columns WHERE database = currentDatabase() AND name = 'expires_at'"
    ).rows)
    changed = {row[0] for row in current ^ wanted}
    # a change of the defaults concerns every tenant; else only the tenants whose row changed
    # (tenant_id leads the sorting key of most tables: the other tenants' parts are skipped)
    scope = "" if DEFAULT in changed else "tenant_id IN {changed:Array(String)} AND "
    for table in TABLES:
        expr = exprs[table]
        store.command(f"ALTER TABLE {table} UPDATE expires_at = {expr} WHERE {scope}expires_at != {expr} "
                      "SETTINGS mutations_sync = 2", {"changed": sorted(changed)})
    log.info("retention: %d tenant(s) with their own retention; expiry recomputed", len(tenants))
    return True


class RetentionLoop:
    """The worker's retention pass, in a thread: at start the event topics' ``retention.ms``,
    then every ``retention_interval_s`` the tenants' retention from ``gym-tenants-v1`` into
    ClickHouse (:func:`sync`). A failed pass is logged and retried at the next one.

    Args:
        settings: the retention settings (default: read from the environment now).
        store: the store to keep (default: a store opened on the configured ClickHouse, closed at :meth:`stop`).
        when: a pass runs only while this holds (checked every second): with several workers on a
            ClickHouse server, only in the worker whose sink has the store-wide chores.
    """

    def __init__(self, settings: RetentionSettings | None = None, store: Store | None = None,
                 when: Callable[[], bool] | None = None) -> None:
        self.settings = settings if settings is not None else RetentionSettings()
        self.when = when if when is not None else (lambda: True)
        self._store = store
        self._own_store = store is None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def run_once(self) -> bool:
        """One pass: reads the tenants' plans, syncs ClickHouse; returns whether the retention changed."""
        if self._store is None:
            self._store = open_store()
        plans = read_topic(self.settings.bootstrap_servers, "tenants", security=librdkafka_security(self.settings))
        changed = sync(self._store, tenant_retentions(plans), self.settings.defaults)
        self.passes += 1
        return changed

    def set_topic_retention(self) -> None:
        done = set_topic_retention(self.settings.bootstrap_servers, self.settings.retention_kafka_events_ms,
                                   security=librdkafka_security(self.settings))
        log.info("retention: retention.ms=%d on %s", self.settings.retention_kafka_events_ms, ", ".join(done) or "no topic")

    def _run(self) -> None:
        try:
            self.set_topic_retention()
        except Exception:  # the broker may refuse (ACLs): ClickHouse's retention still runs
            log.exception("retention: could not set the event topics' retention.ms")
        while not self._stop.is_set():
            if not self.when():
                self._stop.wait(1.0)
                continue
            try:
                self.run_once()
            except Exception:
                log.exception("retention: pass failed; retrying in %.0f s", self.settings.retention_interval_s)
            self._stop.wait(self.settings.retention_interval_s)

    def start(self) -> "RetentionLoop":
        self._thread = threading.Thread(target=self._run, name="agentgym-retention", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None
