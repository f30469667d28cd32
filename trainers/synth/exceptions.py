"""Errors of synthetic scenario generation (:mod:`agentgym.trainers.synth`)."""

from __future__ import annotations

from agentgym.trainers.exceptions import TrainersError

__all__ = ["SynthError", "SpecError", "GeneratorLoadError", "GeneratorConfigError", "ScenarioSchemaError", "NoSourcesError"]


class SynthError(TrainersError):
    """Base class of every error raised by :mod:`agentgym.trainers.synth`."""


class SpecError(SynthError):
    """A YAML domain spec that cannot be read or is invalid (the message names the file and field)."""


class GeneratorLoadError(SynthError):
    """A generator reference (built-in name, ``module:function``, entry point, YAML path) that cannot be loaded."""


class GeneratorConfigError(SynthError, ValueError):
    """A generator constructed with an argument it does not know (e.g. an unknown edge family)."""


class ScenarioSchemaError(SynthError):
    """A scenario that lacks a field of the Scenario record or has one of the wrong type.

    Attributes:
        field: the offending field (``messages``, ``expected_arguments``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NoSourcesError(SynthError):
    """Nothing to generate from: no real runs of the agent and no domain spec or plugin generator."""
