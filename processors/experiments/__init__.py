"""A/B experiments: configuration, the metric catalogue, administration and decisions.

Importing this package pulls in neither Faust nor the ClickHouse client; the Faust
processor lives in :mod:`agentgym.processors.experiments.processor`, whose
``register(app, settings)`` the app calls when ``AGENTGYM_PROCESSORS`` includes
``experiments``.
"""

from agentgym.processors.experiments.config import ROUTED, TERMINAL, ExperimentConfig, MetricSpec, VariantSpec
from agentgym.processors.experiments.exceptions import (
    ExperimentConfigError,
    ExperimentError,
    ExperimentNotFoundError,
    PublishError,
    TransitionError,
)
from agentgym.processors.experiments.metrics import METRICS, MetricDefinition

__all__ = [
    "ExperimentConfig", "MetricSpec", "VariantSpec", "TERMINAL", "ROUTED",
    "METRICS", "MetricDefinition",
    "ExperimentError", "ExperimentConfigError", "ExperimentNotFoundError", "TransitionError", "PublishError",
]
