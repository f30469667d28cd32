"""Errors of the experiments package."""

from __future__ import annotations

__all__ = ["ExperimentError", "ExperimentConfigError", "TransitionError", "ExperimentNotFoundError", "PublishError"]


class ExperimentError(Exception):
    """Base class of the experiments package's errors."""


class ExperimentConfigError(ExperimentError, ValueError):
    """An experiment configuration is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"ExperimentConfig.{field}: {reason}")


class TransitionError(ExperimentError):
    """A status change that the experiment's current status does not allow."""


class ExperimentNotFoundError(ExperimentError, KeyError):
    """No configuration with that experiment id on the experiments topic."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "experiment not found"


class PublishError(ExperimentError):
    """Kafka did not acknowledge a configuration record."""
