"""Errors of the trainers package: datasets, training jobs, the registry and the gate."""

from __future__ import annotations

__all__ = [
    "TrainersError",
    "DatasetError",
    "DatasetNotFoundError",
    "ChecksumMismatchError",
    "BaseModelError",
    "TrainingError",
    "RegistryError",
    "ModelVersionNotFoundError",
    "GateError",
    "EvaluatorError",
]


class TrainersError(Exception):
    """Base class of every error raised by :mod:`trainers`."""


class DatasetError(TrainersError):
    """A dataset could not be built, written or read."""


class DatasetNotFoundError(DatasetError):
    """No dataset with that id (or at that URI) in the dataset store."""


class ChecksumMismatchError(DatasetError):
    """A dataset's shards do not hash to the checksum its manifest records."""


class BaseModelError(TrainersError):
    """A base model name or path that cannot be resolved (an unknown ``tiny:`` name, a missing path)."""


class TrainingError(TrainersError):
    """A training job failed (the Ray run raised, or produced no adapter)."""


class RegistryError(TrainersError):
    """The model registry could not be read or written."""


class ModelVersionNotFoundError(RegistryError):
    """No model version with that id in the registry."""


class GateError(TrainersError):
    """The validation gate could not evaluate (no held-out examples, a broken evaluator)."""


class EvaluatorError(GateError):
    """A pluggable evaluator could not be loaded or returned something other than a rate in [0, 1]."""
