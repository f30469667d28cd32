"""Errors of the trainers package: training jobs, the registry and the gate.

Dataset errors are :mod:`agentgym.processors.datasets.exceptions` (the builder owns datasets).
"""

from __future__ import annotations

__all__ = [
    "TrainersError",
    "BaseModelError",
    "TrainingError",
    "InitAdapterError",
    "DatasetKindError",
    "RegistryError",
    "ModelVersionNotFoundError",
    "GateError",
    "EvaluatorError",
]


class TrainersError(Exception):
    """Base class of every error raised by :mod:`trainers`."""


class BaseModelError(TrainersError):
    """A base model name or path that cannot be resolved (an unknown ``tiny:`` name, a missing path)."""


class TrainingError(TrainersError):
    """A training job failed (the Ray run raised, or produced no adapter)."""


class InitAdapterError(TrainingError, ValueError):
    """A job's initial adapter (``init_adapter``: the champion's, or ``--init-adapter``) is missing or not a LoRA adapter."""


class DatasetKindError(TrainersError, ValueError):
    """A dataset of a kind the training method cannot use (an eval dataset; DPO on SFT rows)."""


class RegistryError(TrainersError):
    """The model registry could not be read or written."""


class ModelVersionNotFoundError(RegistryError):
    """No model version with that id in the registry."""


class GateError(TrainersError):
    """The validation gate could not evaluate (no held-out examples, a broken evaluator)."""


class EvaluatorError(GateError):
    """A pluggable evaluator could not be loaded or returned something other than a rate in [0, 1]."""
