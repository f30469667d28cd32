"""Datasets for fine-tuning: built from labelled runs, quality-filtered, stored as Parquet plus a manifest.

* :mod:`agentgym.processors.datasets.quality`: scrubbing, exact and near-duplicate removal, length limits, splits (pure).
* :mod:`agentgym.processors.datasets.examples`: labelled runs -> SFT examples and preference pairs (pure).
* :mod:`agentgym.processors.datasets.store`: the dataset store (any fsspec URL): shards, manifest, checksum, JSONL export.
* :mod:`agentgym.processors.datasets.builder`: reads ClickHouse, decides when a dataset is finished, writes and announces it.
"""

from agentgym.processors.datasets.examples import BuildResult, LabelledRun, PreferencePair, QualityConfig, SftExample, build_examples
from agentgym.processors.datasets.quality import LengthLimits, NearDuplicateIndex, Scrubber, split_of
from agentgym.processors.datasets.store import DatasetStore, Manifest, ShardInfo

__all__ = [
    "BuildResult",
    "LabelledRun",
    "PreferencePair",
    "QualityConfig",
    "SftExample",
    "build_examples",
    "LengthLimits",
    "NearDuplicateIndex",
    "Scrubber",
    "split_of",
    "DatasetStore",
    "Manifest",
    "ShardInfo",
]
