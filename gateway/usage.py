"""Counting a tenant's runs and agents per month across gateway replicas.

Each gateway process (a *replica*, with a random id per start) counts what it
accepted per tenant and calendar month (UTC), and every ``usage_report_s`` publishes
its running totals as a ``TenantUsage`` record to the compacted topic
``gym-tenant-usage-v1``, keyed ``tenant|month|replica``. Every replica follows that
topic, so a tenant's usage is the sum of every replica's latest report, with this
replica's own live count in place of its report.

How exact: a replica sees another's accepted runs with a delay of at most one
report interval plus the follower's lag (about ``usage_report_s`` + 0.2 s). While
that delay lasts each of N replicas may admit what it alone sees room for, so a
tenant can exceed its monthly runs by at most what the other N-1 replicas accept in
that window, and its agent limit by at most N-1 agents that start at the same moment.
With one replica the counts are exact. Reports of replicas that stopped keep
counting (their key stays in the topic), so a restart does not reset a month.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from agentgym.gateway.follower import CompactedFollower
from agentgym.producers.records import read_topic

__all__ = ["UsageMeter", "month_of", "read_usage"]

_TOPIC = "tenant-usage"


_NOW_MONTH: list[Any] = [-1, ""]  # [second, month] of the last call without an argument


def month_of(epoch_s: float | None = None) -> str:
    """``YYYY-MM`` (UTC) of ``epoch_s`` (default: now; computed at most once a second)."""
    if epoch_s is not None:
        return time.strftime("%Y-%m", time.gmtime(epoch_s))
    second = int(time.time())
    if second != _NOW_MONTH[0]:
        _NOW_MONTH[:] = [second, time.strftime("%Y-%m", time.gmtime(second))]
    return str(_NOW_MONTH[1])


_NONE: tuple[int, frozenset[str]] = (0, frozenset())


class UsageMeter:
    """This replica's counts plus the others' latest reports.

    Args:
        bootstrap_servers: Kafka.
        replica_id: this process's id in the reports (default: host, pid and a random suffix).
    """

    def __init__(self, bootstrap_servers: str, replica_id: str | None = None) -> None:
        self.replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self._local: dict[tuple[str, str], tuple[int, frozenset[str]]] = {}
        self._dirty: set[tuple[str, str]] = set()
        # (tenant, month) -> replica -> (runs, agents) of the other replicas
        self._others: dict[tuple[str, str], dict[str, tuple[int, frozenset[str]]]] = {}
        # (tenant, month) -> their sum, replaced whole by the follower's thread: a request reads one tuple (no loop
        # over the replicas per request, and no dict the other thread may grow while it is iterated)
        self._others_total: dict[tuple[str, str], tuple[int, frozenset[str]]] = {}
        self.follower = CompactedFollower(bootstrap_servers, _TOPIC, on_record=self._report)

    def _report(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None or record["replica_id"] == self.replica_id:
            return
        which = (record["tenant_id"], record["month"])
        slot = self._others.setdefault(which, {})
        slot[record["replica_id"]] = (int(record["runs"]), frozenset(record["agents"]))
        self._others_total[which] = (sum(r for r, _ in slot.values()), frozenset().union(*(a for _, a in slot.values())))

    def usage(self, tenant_id: str, month: str) -> tuple[int, frozenset[str]]:
        """(runs, agents) of ``tenant_id`` in ``month`` as this replica knows them."""
        key = (tenant_id, month)
        runs, agents = self._local.get(key, _NONE)
        others = self._others_total.get(key)
        if others is None:
            return runs, agents
        return runs + others[0], (agents | others[1] if not others[1] <= agents else agents)

    def add(self, tenant_id: str, month: str, runs: int, agents: Iterable[str]) -> None:
        """Counts what this replica just accepted."""
        key = (tenant_id, month)
        r, a = self._local.get(key, (0, frozenset()))
        agents = frozenset(agents)
        self._local[key] = (r + runs, a | agents if not agents <= a else a)
        self._dirty.add(key)

    def reports(self) -> list[dict[str, Any]]:
        """``TenantUsage`` records of what changed since the last call."""
        now = time.time_ns() // 1_000_000
        out = []
        dirty, self._dirty = self._dirty, set()
        for tenant_id, month in dirty:
            runs, agents = self._local[(tenant_id, month)]
            key = f"{tenant_id}|{month}|{self.replica_id}"
            out.append({"event_id": f"{key}|{now}", "usage_key": key, "tenant_id": tenant_id, "month": month,
                        "replica_id": self.replica_id, "runs": runs, "agents": sorted(agents), "updated_ms": now})
        return out

    def start(self) -> "UsageMeter":
        self.follower.start()
        return self

    def close(self) -> None:
        self.follower.close()

    @property
    def ready(self) -> bool:
        return self.follower.ready


def read_usage(bootstrap_servers: str, tenant_id: str | None = None, month: str | None = None) -> list[dict[str, Any]]:
    """Per tenant and month, the runs and agents every replica reported (what the plan limits count).

    Returns:
        ``{"tenant_id", "month", "runs", "agents", "replicas"}`` rows, sorted by tenant and month.
    """
    latest: dict[str, dict[str, Any]] = {}
    for r in read_topic(bootstrap_servers, _TOPIC):
        if (tenant_id is None or r["tenant_id"] == tenant_id) and (month is None or r["month"] == month):
            latest[r["usage_key"]] = r
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for r in latest.values():
        t = totals.setdefault((r["tenant_id"], r["month"]), {"tenant_id": r["tenant_id"], "month": r["month"], "runs": 0,
                                                              "agents": set(), "replicas": 0})
        t["runs"] += r["runs"]
        t["agents"] |= set(r["agents"])
        t["replicas"] += 1
    return [dict(t, agents=sorted(t["agents"])) for _, t in sorted(totals.items())]
