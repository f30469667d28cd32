"""The dataset store: Parquet shards plus a manifest, under any fsspec URL.

Layout (one directory per dataset; a local path by default, ``s3://bucket/prefix``
works the same)::

    <store>/<dataset_id>/
        train-00000-of-00002.parquet
        train-00001-of-00002.parquet
        eval-00000-of-00001.parquet
        manifest.json               # written last: a dataset without one is incomplete

The manifest holds counts (per split, dropped by reason, scrubbed by kind), the
shards with their row counts and sha256, the dataset checksum (sha256 over the shard
bytes in manifest order, ``train`` then ``eval``), the lineage (every trace id and
labeller version that contributed) and the settings the dataset was built with.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from agentgym.processors.datasets.exceptions import ChecksumMismatchError, DatasetError, DatasetNotFoundError
from agentgym.schemas.ids import validate_id

__all__ = ["FORMAT", "SPLITS", "MANIFEST", "ShardInfo", "Manifest", "DatasetStore", "arrow_schema"]

FORMAT = "agentgym-dataset/1"
SPLITS = ("train", "eval")
MANIFEST = "manifest.json"


def arrow_schema(kind: str) -> Any:
    """The Parquet schema of a dataset kind (``sft`` or ``preference``)."""
    import pyarrow as pa

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    lineage = [("trace_id", pa.string()), ("labeller_version", pa.string()), ("source", pa.string()), ("prompt_key", pa.string())]
    if kind == "sft":
        return pa.schema([("prompt", message), ("completion", message), *lineage])
    if kind == "preference":
        return pa.schema([("prompt", message), ("chosen", message), ("rejected", message), *lineage,
                          ("chosen_trace_id", pa.string())])
    raise DatasetError(f"unknown dataset kind {kind!r}: expected sft or preference")


@dataclass
class ShardInfo:
    """One Parquet file of a split: its name in the dataset directory, rows, size and sha256."""

    path: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """What a dataset holds and where it came from (``manifest.json``)."""

    dataset_id: str
    tenant_id: str
    agent_id: str
    kind: str
    created_ms: int
    splits: dict[str, int]
    shards: dict[str, list[ShardInfo]]
    checksum: str
    counts: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    uri: str = ""  # filled in when read: the dataset directory's URL
    manifest_uri: str = ""

    @property
    def num_examples(self) -> int:
        return sum(self.splits.values())

    @property
    def labeller_versions(self) -> list[str]:
        return list(self.lineage.get("labeller_versions", []))

    @property
    def trace_ids(self) -> list[str]:
        return list(self.lineage.get("trace_ids", []))

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("uri")
        d.pop("manifest_uri")
        d["num_examples"] = self.num_examples
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, uri: str = "", manifest_uri: str = "") -> "Manifest":
        d = json.loads(text)
        if d.get("format") != FORMAT:
            raise DatasetError(f"{manifest_uri or 'manifest'}: format {d.get('format')!r}, expected {FORMAT}")
        d.pop("num_examples", None)
        d["shards"] = {s: [ShardInfo(**x) for x in xs] for s, xs in d["shards"].items()}
        return cls(**d, uri=uri, manifest_uri=manifest_uri)

    def announcement(self, event_id: str | None = None) -> dict[str, Any]:
        """The DatasetReady record announcing this dataset on ``gym-datasets-v1``."""
        return {
            "event_id": event_id or f"dataset-ready:{self.dataset_id}",
            "tenant_id": self.tenant_id,
            "dataset_id": self.dataset_id,
            "agent_id": self.agent_id,
            "kind": self.kind,
            "uri": self.uri,
            "manifest_uri": self.manifest_uri,
            "num_examples": self.num_examples,
            "splits": dict(self.splits),
            "checksum": self.checksum,
            "created_ms": self.created_ms,
            "source_trace_count": int(self.lineage.get("source_trace_count", len(self.trace_ids))),
            "labeller_versions": self.labeller_versions,
        }


class DatasetStore:
    """Datasets under one fsspec URL (a local directory by default).

    Args:
        url: the store's root, e.g. ``/var/lib/agentgym/datasets`` or ``s3://bucket/datasets``.
        storage_options: passed to fsspec (credentials, endpoint).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        import fsspec

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = self.root.rstrip("/")

    # -- paths --------------------------------------------------------------------
    def _dir(self, dataset_id: str) -> str:
        return f"{self.root}/{validate_id(dataset_id, 'dataset_id')}"

    def uri(self, dataset_id: str) -> str:
        """The fsspec URL of a dataset's directory."""
        return str(self.fs.unstrip_protocol(self._dir(dataset_id)))

    # -- writing ------------------------------------------------------------------
    def write(
        self,
        *,
        dataset_id: str,
        tenant_id: str,
        agent_id: str,
        kind: str,
        created_ms: int,
        rows: Mapping[str, Sequence[Mapping[str, Any]]],
        shard_rows: int = 10000,
        counts: Mapping[str, Any] | None = None,
        lineage: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Writes a dataset's shards, then its manifest; returns the manifest.

        Rewriting an id replaces the dataset (a rebuild from the same data writes the
        same bytes, so its checksum does not change).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = arrow_schema(kind)
        directory = self._dir(dataset_id)
        if self.fs.exists(f"{directory}/{MANIFEST}"):
            self.fs.rm(f"{directory}/{MANIFEST}")  # incomplete until the new manifest is written
        self.fs.makedirs(directory, exist_ok=True)
        shards: dict[str, list[ShardInfo]] = {}
        digest = hashlib.sha256()
        for split in SPLITS:
            split_rows = list(rows.get(split, ()))
            n_shards = (len(split_rows) + shard_rows - 1) // shard_rows
            shards[split] = []
            for i in range(n_shards):
                part = split_rows[i * shard_rows:(i + 1) * shard_rows]
                buf = io.BytesIO()
                table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in part], schema=schema)
                # no timestamps or writer version in the bytes beyond pyarrow's: same rows, same file
                pq.write_table(table, buf, compression="zstd", store_schema=False)
                data = buf.getvalue()
                name = f"{split}-{i:05d}-of-{n_shards:05d}.parquet"
                self.fs.pipe_file(f"{directory}/{name}", data)
                digest.update(data)
                shards[split].append(ShardInfo(name, len(part), len(data), hashlib.sha256(data).hexdigest()))
        manifest = Manifest(
            dataset_id=dataset_id, tenant_id=tenant_id, agent_id=agent_id, kind=kind, created_ms=created_ms,
            splits={s: sum(x.rows for x in shards[s]) for s in SPLITS}, shards=shards, checksum=digest.hexdigest(),
            counts=dict(counts or {}), lineage=dict(lineage or {}), settings=dict(settings or {}),
            uri=self.uri(dataset_id), manifest_uri=self.uri(dataset_id) + "/" + MANIFEST,
        )
        self.fs.pipe_file(f"{directory}/{MANIFEST}", manifest.to_json().encode())
        return manifest

    # -- reading ------------------------------------------------------------------
    def manifest(self, dataset_id: str) -> Manifest:
        """The manifest of a dataset in this store.

        Raises:
            DatasetNotFoundError: no complete dataset with that id.
        """
        path = f"{self._dir(dataset_id)}/{MANIFEST}"
        try:
            text = self.fs.cat_file(path).decode()
        except FileNotFoundError:
            raise DatasetNotFoundError(f"no dataset {dataset_id!r} in {self.url}") from None
        return Manifest.from_json(text, uri=self.uri(dataset_id), manifest_uri=self.uri(dataset_id) + "/" + MANIFEST)

    @staticmethod
    def open(uri: str, storage_options: Mapping[str, Any] | None = None) -> Manifest:
        """The manifest of the dataset at ``uri`` (its directory, or its manifest.json)."""
        uri = uri.rstrip("/")
        if uri.endswith("/" + MANIFEST):
            uri = uri[: -len(MANIFEST) - 1]
        parent, _, dataset_id = uri.rpartition("/")
        return DatasetStore(parent or ".", storage_options).manifest(dataset_id)

    def list(self) -> list[Manifest]:
        """Every complete dataset, newest first."""
        out = []
        try:
            paths = self.fs.glob(f"{self.root}/*/{MANIFEST}")
        except FileNotFoundError:
            return []
        for path in paths:
            dataset_id = path.rstrip("/").split("/")[-2]
            try:
                out.append(self.manifest(dataset_id))
            except DatasetError:
                continue
        return sorted(out, key=lambda m: (m.created_ms, m.dataset_id), reverse=True)

    def read(self, manifest: Manifest, split: str) -> builtins.list[dict[str, Any]]:
        """The rows of one split."""
        return [row for table in self._tables(manifest, split) for row in table.to_pylist()]

    def batches(self, manifest: Manifest, split: str) -> Iterator[builtins.list[dict[str, Any]]]:
        """The rows of one split, one shard at a time (what a streamed export reads)."""
        for table in self._tables(manifest, split):
            yield table.to_pylist()

    def _tables(self, manifest: Manifest, split: str) -> Iterator[Any]:
        import pyarrow.parquet as pq

        if split not in manifest.shards:
            raise DatasetError(f"dataset {manifest.dataset_id} has no split {split!r}; it has {sorted(manifest.shards)}")
        fs, directory = self._fs_for(manifest)
        for shard in manifest.shards[split]:
            with fs.open(f"{directory}/{shard.path}", "rb") as fh:
                yield pq.read_table(fh)

    def _fs_for(self, manifest: Manifest) -> tuple[Any, str]:
        import fsspec

        if manifest.uri:
            fs, path = fsspec.core.url_to_fs(manifest.uri)
            return fs, path.rstrip("/")
        return self.fs, self._dir(manifest.dataset_id)

    def verify(self, manifest: Manifest) -> None:
        """Re-hashes every shard against the manifest.

        Raises:
            ChecksumMismatchError: naming the first shard (or the dataset) that differs.
        """
        fs, directory = self._fs_for(manifest)
        digest = hashlib.sha256()
        for split in SPLITS:
            for shard in manifest.shards.get(split, []):
                data = fs.cat_file(f"{directory}/{shard.path}")
                if hashlib.sha256(data).hexdigest() != shard.sha256:
                    raise ChecksumMismatchError(f"dataset {manifest.dataset_id}: shard {shard.path} does not match its sha256")
                digest.update(data)
        if digest.hexdigest() != manifest.checksum:
            raise ChecksumMismatchError(f"dataset {manifest.dataset_id}: checksum {digest.hexdigest()} != manifest {manifest.checksum}")

    def export_jsonl(self, manifest: Manifest, out: IO[str], splits: Sequence[str] = SPLITS) -> int:
        """Writes the rows of ``splits`` as JSON lines (each with its ``split``); returns the count."""
        n = 0
        for split in splits:
            for table in self._tables(manifest, split):
                for row in table.to_pylist():
                    out.write(json.dumps({"split": split, **row}, ensure_ascii=False) + "\n")
                    n += 1
        return n
