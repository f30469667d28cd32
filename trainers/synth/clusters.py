"""Clusters of failed runs: where the agent fails systematically, failure-seeded generation digs deeper.

Failed runs are grouped first by why they failed (the failing tool, else the run's
status, else the label: :func:`agentgym.trainers.synth.bases.failure_key`), then within a group
by what was asked: leader clustering over the masked request templates, with the
character-shingle Jaccard similarity that near-duplicate detection uses
(:class:`agentgym.processors.datasets.quality.NearDuplicateIndex` at a lower threshold, so a
request joins the first cluster whose leader is at least that similar). Masking the
argument values first makes ``"Where is order 4512?"`` and ``"Where is order 88?"``
one cluster.

A cluster's share of the failure-seeded budget is proportional to its size (bigger,
more systematic failures get more scenarios), and its scenarios carry the weight
``size / mean cluster size``.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agentgym.processors.datasets.quality import NearDuplicateIndex
from agentgym.trainers.synth.bases import Base

__all__ = ["FailureCluster", "cluster_failures", "allocate"]


@dataclass(frozen=True)
class FailureCluster:
    """Failed runs that failed the same way on similar requests.

    Attributes:
        cluster_id: ``fc-<slug of key>-<hash>``, stable for the same leader.
        key: why they failed (``tool:lookup_order``, ``status:timeout``, ``label:failure``).
        bases: the runs' bases, leader first.
        weight: the scenarios' weight, ``size / mean cluster size``.
    """

    cluster_id: str
    key: str
    bases: tuple[Base, ...]
    weight: float = 1.0

    @property
    def size(self) -> int:
        return len(self.bases)

    @property
    def trace_ids(self) -> list[str]:
        return [t for b in self.bases for t in b.trace_ids]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32] or "x"


def cluster_failures(bases: Iterable[Base], threshold: float = 0.5, k: int = 5) -> list[FailureCluster]:
    """Clusters the failed bases (``failure`` set); biggest first, ties by id.

    Args:
        threshold: Jaccard similarity of the masked requests at or above which a request joins a cluster.
        k: shingle length, characters.
    """
    groups: dict[str, list[Base]] = {}
    for b in bases:
        if b.failure is not None:
            groups.setdefault(b.failure, []).append(b)
    clusters: list[tuple[str, list[Base]]] = []
    for key in sorted(groups):
        index = NearDuplicateIndex(threshold=threshold, k=k)
        members: dict[str, list[Base]] = {}
        for i, b in enumerate(groups[key]):
            lead = index.add(str(i), b.template)
            members.setdefault(lead if lead is not None else str(i), []).append(b)
        clusters.extend((key, ms) for ms in members.values())
    if not clusters:
        return []
    mean = sum(len(ms) for _, ms in clusters) / len(clusters)
    out = []
    for key, ms in clusters:
        digest = hashlib.sha256(f"{key}\x1f{ms[0].template}".encode()).hexdigest()[:8]
        out.append(FailureCluster(f"fc-{_slug(key)}-{digest}", key, tuple(ms), weight=len(ms) / mean))
    return sorted(out, key=lambda c: (-c.size, c.cluster_id))


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Splits ``total`` into integer parts proportional to ``weights`` (largest remainder, ties to the earlier).

    Hamilton's method: floor of each exact share, then one more to the largest
    remainders until the parts sum to ``total``. Zero weights get zero.
    """
    if total <= 0 or not weights or sum(weights) <= 0:
        return [0] * len(weights)
    s = float(sum(weights))
    exact = [total * w / s for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts
