"""Writing scenarios as a dataset, and reading them back as an evaluation suite or training augmentation.

**The dataset.** A synthetic dataset is a dataset of the dataset store like the
finished ones (:mod:`agentgym.processors.datasets.store`): ``train`` and ``eval`` Parquet shards,
then ``manifest.json`` (format ``agentgym-dataset/1``, kind ``synthetic``) with counts,
shards and sha256s, the checksum and the lineage. :func:`write_scenarios` is a thin
adapter over that format because :meth:`DatasetStore.write` knows only the ``sft`` and
``preference`` schemas: it writes the same layout, bytes and checksum rule with the
scenario schema (:func:`agentgym.trainers.synth.scenario.arrow_schema`), and reading,
verifying and exporting go through :class:`DatasetStore` unchanged.

**Splits.** A scenario's split is chosen by a hash of its lineage group
(:func:`agentgym.processors.datasets.quality.split_of`), so variations of one real request, or of
one filled spec template, never straddle train and eval.

**Use.** :func:`eval_suite_rows` gives the rows the validation gate scores
(``ValidationGate.evaluate(rows, ...)``: ``prompt`` plus a ``completion`` reference);
:func:`augmentation_rows` gives SFT rows (``arrow_schema("sft")``) to add to a
training set.

**Lineage in ClickHouse.** The DatasetReady announcement lands in ``datasets``
(``kind = 'synthetic'``, ``source_trace_count``); per-scenario lineage flows like every
other record: :func:`lineage_records` gives one ScenarioLineage record per scenario and
source trace, published on ``gym-scenario-lineage-v1``, which the ClickHouse sink
materialises into ``synthetic_scenarios`` (migration ``0007``; view
``v_synthetic_scenarios``), joinable with ``v_runs`` on
``(tenant_id, source_trace_id = trace_id)``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from agentgym.processors.datasets.quality import split_of
from agentgym.processors.datasets.store import FORMAT, MANIFEST, SPLITS, DatasetStore, Manifest, ShardInfo
from agentgym.processors.datasets.exceptions import DatasetError
from agentgym.trainers.synth.scenario import Scenario, arrow_schema

__all__ = [
    "KIND",
    "SPLIT_SALT",
    "synthetic_dataset_id",
    "assign_splits",
    "write_scenarios",
    "read_scenarios",
    "eval_suite_rows",
    "augmentation_rows",
    "lineage_event_id",
    "lineage_records",
]

KIND = "synthetic"
SPLIT_SALT = "synthetic"

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def synthetic_dataset_id(tenant_id: str, agent_id: str, fingerprint: str) -> str:
    """``syn-<tenant>-<agent>-<hash>``: the same inputs (seed, sources, generators, settings) give the same id."""
    digest = hashlib.sha256(f"{tenant_id}\x1f{agent_id}\x1f{fingerprint}".encode()).hexdigest()[:12]
    return f"syn-{_slug(tenant_id)}-{_slug(agent_id)}-{digest}"


def assign_splits(scenarios: Sequence[Scenario], eval_fraction: float) -> dict[str, list[Scenario]]:
    """Scenarios by split, chosen by a hash of their lineage group; order kept within a split."""
    out: dict[str, list[Scenario]] = {s: [] for s in SPLITS}
    for sc in scenarios:
        out[split_of(sc.group or sc.scenario_id, eval_fraction, SPLIT_SALT)].append(sc)
    return out


def write_scenarios(
    store: DatasetStore,
    *,
    dataset_id: str,
    tenant_id: str,
    agent_id: str,
    created_ms: int,
    splits: Mapping[str, Sequence[Scenario]],
    shard_rows: int = 10000,
    counts: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Manifest:
    """Writes the shards of each split, then the manifest (kind ``synthetic``); returns the manifest.

    Same layout and checksum rule as :meth:`DatasetStore.write`: rewriting an id
    replaces the dataset, and the same scenarios give the same bytes and checksum.
    """
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    if shard_rows < 1:
        raise DatasetError("shard_rows must be >= 1")
    schema = arrow_schema()
    uri = store.uri(dataset_id)
    fs, directory = fsspec.core.url_to_fs(uri)
    directory = directory.rstrip("/")
    if fs.exists(f"{directory}/{MANIFEST}"):
        fs.rm(f"{directory}/{MANIFEST}")  # incomplete until the new manifest is written
    fs.makedirs(directory, exist_ok=True)
    shards: dict[str, list[ShardInfo]] = {}
    digest = hashlib.sha256()
    for split in SPLITS:
        rows = [sc.row() for sc in splits.get(split, ())]
        n_shards = (len(rows) + shard_rows - 1) // shard_rows
        shards[split] = []
        for i in range(n_shards):
            part = rows[i * shard_rows:(i + 1) * shard_rows]
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(part, schema=schema), buf, compression="zstd", store_schema=False)
            data = buf.getvalue()
            name = f"{split}-{i:05d}-of-{n_shards:05d}.parquet"
            fs.pipe_file(f"{directory}/{name}", data)
            digest.update(data)
            shards[split].append(ShardInfo(name, len(part), len(data), hashlib.sha256(data).hexdigest()))
    manifest = Manifest(
        dataset_id=dataset_id, tenant_id=tenant_id, agent_id=agent_id, kind=KIND, created_ms=created_ms,
        splits={s: sum(x.rows for x in shards[s]) for s in SPLITS}, shards=shards, checksum=digest.hexdigest(),
        counts=dict(counts or {}), lineage=dict(lineage or {}), settings=dict(settings or {}), format=FORMAT,
        uri=uri, manifest_uri=f"{uri}/{MANIFEST}",
    )
    fs.pipe_file(f"{directory}/{MANIFEST}", manifest.to_json().encode())
    return manifest


def _read(store: DatasetStore, manifest: Manifest, split: str) -> list[dict[str, Any]]:
    # DatasetStore.read's annotation names ``list`` inside a class that defines a ``list`` method
    return cast("list[dict[str, Any]]", store.read(manifest, split))


def _check_kind(manifest: Manifest) -> None:
    if manifest.kind != KIND:
        raise DatasetError(f"dataset {manifest.dataset_id} is a {manifest.kind} dataset, not {KIND}")


def read_scenarios(store: DatasetStore, manifest: Manifest, split: str) -> list[Scenario]:
    """The scenarios of one split of a synthetic dataset."""
    _check_kind(manifest)
    return [Scenario.from_row(r) for r in _read(store, manifest, split)]


def eval_suite_rows(store: DatasetStore, manifest: Manifest, split: str = "eval", *,
                    families: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows for the validation gate: the scenarios of ``split`` whose answer is known (``prompt`` + ``completion``).

    Args:
        families: only these families (default: all).
    """
    _check_kind(manifest)
    return [r for r in _read(store, manifest, split)
            if r["completion"] and (families is None or r["family"] in families)]


def augmentation_rows(store: DatasetStore, manifest: Manifest, split: str = "train") -> list[dict[str, Any]]:
    """SFT rows (``agentgym.processors.datasets.store.arrow_schema("sft")``) of the scenarios of ``split`` whose answer is known.

    ``source`` is ``synthetic:<family>``, ``trace_id`` the first real trace it came from.
    """
    _check_kind(manifest)
    keys = ("prompt", "completion", "trace_id", "labeller_version", "source", "prompt_key")
    return [{k: r[k] for k in keys} for r in _read(store, manifest, split) if r["completion"]]


def lineage_event_id(dataset_id: str, scenario_id: str, source_trace_id: str) -> str:
    """The ScenarioLineage event id: the same dataset, scenario and source trace give the same id, so a
    dataset written and announced again collapses with the first copy in ClickHouse."""
    digest = hashlib.sha256(f"{dataset_id}\x1f{scenario_id}\x1f{source_trace_id}".encode()).hexdigest()[:32]
    return f"lin-{digest}"


def lineage_records(manifest: Manifest, splits: Mapping[str, Sequence[Scenario]]) -> list[dict[str, Any]]:
    """ScenarioLineage records (``schemas/avro/ScenarioLineage.v1.avsc``): one per scenario and source trace.

    A scenario with no real source (a spec or plugin scenario) has one record with an
    empty ``source_trace_id``.
    """
    out = []
    for split in SPLITS:
        for sc in splits.get(split, ()):
            sid = sc.scenario_id
            for trace in sc.source_trace_ids or [""]:
                out.append({
                    "event_id": lineage_event_id(manifest.dataset_id, sid, trace),
                    "tenant_id": manifest.tenant_id, "agent_id": manifest.agent_id, "dataset_id": manifest.dataset_id,
                    "scenario_id": sid, "split": split, "family": sc.family, "generator": sc.generator,
                    "tags": list(sc.tags), "source_trace_id": trace, "expected_tool": sc.expected_tool,
                    "created_ms": manifest.created_ms,
                })
    return out
