"""The dataset builder: labelled runs in ClickHouse -> finished datasets -> ``gym-datasets-v1``.

Why it reads ClickHouse and not the trace topics: a dataset is per tenant and agent,
while the trace topics are partitioned by trace, so every partition holds a slice of
every agent. ClickHouse already holds the join the builder needs (``v_experiences``
with ``v_outcomes_latest``: deduplicated, latest label revision, correction included),
whichever worker owns which partition, and survives restarts without state. The Faust
app runs the builder on its leader on a timer (``processors/datasets.py``), so it
shares the app's deployment and failover; ``agentgym datasets build`` runs it by hand.

When a dataset is finished (per tenant and agent; checked every
``AGENTGYM_DATASET_INTERVAL_S``):

* **size**: at least ``dataset_min_new_examples`` runs were labelled since the last
  dataset (outcomes that reached the store after its watermark), or
* **age**: the oldest of them has waited ``dataset_max_age_s``.

Datasets are cumulative (every labelled run of the window, newest first, up to
``dataset_max_examples``); one build writes an ``sft`` and a ``preference`` dataset
when each has ``dataset_min_examples``. A dataset's ``created_ms`` is its watermark:
the store time of the newest outcome in it. Its id derives from tenant, agent, kind and
watermark, so rebuilding the same data (after a crash, or by two leaders in a
rebalance) rewrites the same dataset under the same id instead of adding one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agentgym.processors.store.base import Store
from agentgym.processors.datasets.examples import BuildResult, LabelledRun, PreferencePair, QualityConfig, SftExample, build_examples
from agentgym.processors.datasets.quality import LengthLimits, Scrubber
from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.processors.datasets.settings import DatasetSettings

if TYPE_CHECKING:  # (a runtime import would be circular: deletions rewrites datasets)
    from agentgym.processors.deletions import DeletionLog

__all__ = ["DatasetBuilder", "PendingLabels", "dataset_id_for", "KINDS"]

log = logging.getLogger("agentgym.datasets")

KINDS = ("sft", "preference")

# labelled runs not yet in a dataset, per tenant and agent
_PENDING_SQL = """
SELECT o.tenant_id, o.agent_id, count() AS pending, toUnixTimestamp64Milli(min(o.inserted_at)) AS oldest_ms,
       toUnixTimestamp64Milli(max(o.inserted_at)) AS newest_ms
FROM v_outcomes_latest AS o
LEFT JOIN (
    SELECT tenant_id, agent_id, max(created_at) AS watermark FROM v_datasets
    WHERE kind IN ('sft', 'preference') GROUP BY tenant_id, agent_id
) AS d ON d.tenant_id = o.tenant_id AND d.agent_id = o.agent_id
WHERE o.label IN ('success', 'failure') AND o.confidence >= {min_confidence:Float64}
  AND o.inserted_at > ifNull(d.watermark, toDateTime64(0, 3, 'UTC'))
GROUP BY o.tenant_id, o.agent_id
SETTINGS join_use_nulls = 1
"""

# the runs of one tenant and agent, newest label first, most confident first
_RUNS_SQL = """
SELECT e.trace_id, e.input.role, e.input.content, e.output, o.label, o.confidence, o.labeller, o.labeller_version,
       o.corrected_output, o.model_version, toUnixTimestamp64Milli(o.inserted_at) AS labelled_ms,
       e.user_id, toUnixTimestamp64Milli(e.ts) AS started_ms
FROM v_outcomes_latest AS o
INNER JOIN v_experiences AS e ON e.tenant_id = o.tenant_id AND e.trace_id = o.trace_id
WHERE o.tenant_id = {tenant:String} AND o.agent_id = {agent:String}
  AND o.label IN ('success', 'failure') AND o.confidence >= {min_confidence:Float64}
  AND o.inserted_at <= fromUnixTimestamp64Milli({cutoff_ms:Int64}, 'UTC')
  AND o.ts >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')
ORDER BY o.inserted_at DESC, o.confidence DESC, e.trace_id
LIMIT {limit:UInt64}
"""


@dataclass(frozen=True)
class PendingLabels:
    """Labelled runs of one tenant and agent that no dataset holds yet."""

    tenant_id: str
    agent_id: str
    pending: int
    oldest_ms: int
    newest_ms: int


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def dataset_id_for(tenant_id: str, agent_id: str, kind: str, watermark_ms: int) -> str:
    """``ds-<tenant>-<agent>-<kind>-<UTC watermark>-<hash>``: readable, safe in paths, unique per input."""
    stamp = datetime.fromtimestamp(watermark_ms / 1000, tz=timezone.utc).strftime("%Y%m%dT%H%M%S") + f"{watermark_ms % 1000:03d}"
    digest = hashlib.sha256(f"{tenant_id}\x1f{agent_id}\x1f{kind}\x1f{watermark_ms}".encode()).hexdigest()[:8]
    return f"ds-{_slug(tenant_id)}-{_slug(agent_id)}-{kind}-{stamp}-{digest}"


@dataclass
class DatasetBuilder:
    """Builds, writes and announces datasets.

    Args:
        store: the ClickHouse store to read labelled runs from (``open_reader()``).
        settings: thresholds, filters and the dataset store.
        announce: called with each finished manifest (e.g. produce DatasetReady); None: no announcement.
        clock: milliseconds since the epoch (tests pass their own).
        deletions: the deletions topic's reader (:class:`~agentgym.processors.deletions.DeletionLog`): runs of
            deleted users and traces never enter a dataset, even before the store has applied the deletion.
    """

    store: Store
    settings: DatasetSettings = field(default_factory=lambda: DatasetSettings())
    announce: Callable[[Manifest], None] | None = None
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    deletions: DeletionLog | None = None
    _watermarks: dict[tuple[str, str], int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.datasets = DatasetStore(s.dataset_store)
        self.scrubber = Scrubber(s.scrubbers, s.dataset_scrub_patterns)
        self.quality = QualityConfig(
            min_confidence=s.dataset_min_confidence,
            eval_fraction=s.dataset_eval_fraction,
            near_duplicate_threshold=s.dataset_near_duplicate_threshold,
            limits=LengthLimits(s.dataset_max_prompt_chars, s.dataset_max_completion_chars, s.dataset_min_completion_chars),
        )

    # -- when ---------------------------------------------------------------------
    def pending(self) -> list[PendingLabels]:
        """Per tenant and agent, the labelled runs newer than its last dataset."""
        rows = self.store.query(_PENDING_SQL, {"min_confidence": self.settings.dataset_min_confidence}).rows
        out = []
        for tenant, agent, n, oldest, newest in rows:
            # a dataset this process wrote may not have reached ClickHouse yet
            mark = self._watermarks.get((tenant, agent))
            if mark is not None and newest <= mark:
                continue
            out.append(PendingLabels(tenant, agent, int(n), int(oldest), int(newest)))
        return out

    def due(self, now_ms: int | None = None) -> list[PendingLabels]:
        """The tenants and agents whose dataset is finished by the size or the age threshold."""
        now = self.clock() if now_ms is None else now_ms
        s = self.settings
        return [
            p for p in self.pending()
            if p.pending >= s.dataset_min_new_examples or now - p.oldest_ms >= s.dataset_max_age_s * 1000
        ]

    # -- what ---------------------------------------------------------------------
    def runs(self, tenant_id: str, agent_id: str, cutoff_ms: int, now_ms: int | None = None) -> list[LabelledRun]:
        """The labelled runs of one agent up to ``cutoff_ms`` (store time), newest first."""
        now = self.clock() if now_ms is None else now_ms
        since = now - int(self.settings.dataset_window_days * 86400 * 1000)
        rows = self.store.query(_RUNS_SQL, {
            "tenant": tenant_id, "agent": agent_id, "min_confidence": self.settings.dataset_min_confidence,
            "cutoff_ms": cutoff_ms, "since_ms": since, "limit": self.settings.dataset_max_examples,
        }).rows
        if self.deletions is not None:
            self.deletions.catch_up(to_end=True, timeout_s=10.0)
            gone = self.deletions.set
            rows = [r for r in rows if not gone.skips("Experience", {"tenant_id": tenant_id, "trace_id": r[0], "user_id": r[11],
                                                                    "timestamp_ms": r[12]})]
        return [
            LabelledRun(
                tenant_id=tenant_id, agent_id=agent_id, trace_id=r[0],
                messages=tuple({"role": role, "content": content} for role, content in zip(r[1], r[2])),
                output=r[3], label=r[4], confidence=float(r[5]), labeller=r[6], labeller_version=r[7],
                corrected_output=r[8], model_version=r[9], labelled_ms=int(r[10]),
            )
            for r in rows
        ]

    def build(self, tenant_id: str, agent_id: str, cutoff_ms: int | None = None) -> list[Manifest]:
        """Builds, writes and announces the datasets of one tenant and agent.

        Args:
            cutoff_ms: include outcomes stored up to this time (default: all of them now).

        Returns:
            The manifests written (none when neither kind reaches ``dataset_min_examples``).
        """
        runs = self.runs(tenant_id, agent_id, cutoff_ms if cutoff_ms is not None else self.clock() + 1)
        if not runs:
            return []
        watermark = max(r.labelled_ms for r in runs)
        result = build_examples(runs, self.quality, self.scrubber)
        manifests = [m for kind in KINDS if (m := self._write(tenant_id, agent_id, kind, watermark, runs, result)) is not None]
        self._watermarks[(tenant_id, agent_id)] = watermark
        for m in manifests:
            log.info("datasets: %s finished (%d train, %d eval) at %s", m.dataset_id, m.splits["train"], m.splits["eval"], m.uri)
            if self.announce is not None:
                self.announce(m)
        if not manifests:
            log.info("datasets: %s/%s: %d labelled runs gave too few examples (%s)", tenant_id, agent_id, len(runs),
                     dict(result.dropped))
        return manifests

    def _write(self, tenant_id: str, agent_id: str, kind: str, watermark: int, runs: list[LabelledRun],
               result: BuildResult) -> Manifest | None:
        s = self.settings
        examples: list[SftExample] | list[PreferencePair] = result.sft if kind == "sft" else result.preference
        if len(examples) < s.dataset_min_examples:
            return None
        rows: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
        ids: set[str] = set()
        for e in examples:
            rows[e.split].append(e.row())
            ids.add(e.trace_id)
            if isinstance(e, PreferencePair):
                ids.add(e.chosen_trace_id)
        trace_ids = sorted(ids)
        used = set(trace_ids)
        return self.datasets.write(
            dataset_id=dataset_id_for(tenant_id, agent_id, kind, watermark),
            tenant_id=tenant_id, agent_id=agent_id, kind=kind, created_ms=watermark, rows=rows,
            shard_rows=s.dataset_shard_rows,
            counts={"runs_read": result.runs_read, "dropped": dict(sorted(result.dropped.items())),
                    "scrubbed": dict(sorted(result.scrubbed.items()))},
            lineage={
                "trace_ids": trace_ids,
                "source_trace_count": len(trace_ids),
                "labeller_versions": sorted({r.labeller_version for r in runs if r.trace_id in used and r.labeller_version}),
                "labellers": sorted({r.labeller for r in runs if r.trace_id in used and r.labeller}),
                "served_model_versions": sorted({r.model_version for r in runs if r.trace_id in used and r.model_version}),
                "from_ms": min(r.labelled_ms for r in runs), "to_ms": watermark,
            },
            settings={
                "min_confidence": s.dataset_min_confidence, "eval_fraction": s.dataset_eval_fraction,
                "near_duplicate_threshold": s.dataset_near_duplicate_threshold, "scrubbers": self.scrubber.names,
                "max_prompt_chars": s.dataset_max_prompt_chars, "max_completion_chars": s.dataset_max_completion_chars,
                "min_completion_chars": s.dataset_min_completion_chars, "window_days": s.dataset_window_days,
                "max_examples": s.dataset_max_examples,
            },
        )

    def run_once(self, now_ms: int | None = None) -> list[Manifest]:
        """Builds every finished dataset; an agent whose build fails does not stop the others."""
        out: list[Manifest] = []
        for p in self.due(now_ms):
            try:
                out.extend(self.build(p.tenant_id, p.agent_id, cutoff_ms=p.newest_ms))
            except Exception:
                log.exception("datasets: building %s/%s failed; retrying at the next check", p.tenant_id, p.agent_id)
        return out
