"""Pure outcome labelling: trace state, features, rules, the online model, drift, evaluation.

No Kafka and no ClickHouse here; ``processors/labeller.py`` is the Faust agent that
feeds this package from the topics and writes its outcomes back.
"""

from agentgym.processors.labelling.decision import Decision, decide
from agentgym.processors.labelling.drift import DriftEvent, SuccessRateDriftMonitor
from agentgym.processors.labelling.engine import (
    AgentLearner,
    DueQueue,
    Finalised,
    InMemoryLabeller,
    LabellingEngine,
    Observation,
    TrainingExample,
    drift_alert_record,
)
from agentgym.processors.labelling.exceptions import InvalidEventError, LabellingError, RulesConfigError
from agentgym.processors.labelling.model import OnlineOutcomeModel, ProportionStatistic
from agentgym.processors.labelling.rules import LabellingRules, RuleBook
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.labelling.state import FeedbackItem, RunSummary, TraceState

__all__ = [
    "AgentLearner",
    "Decision",
    "DriftEvent",
    "DueQueue",
    "FeedbackItem",
    "Finalised",
    "InMemoryLabeller",
    "InvalidEventError",
    "LabellerSettings",
    "LabellingEngine",
    "LabellingError",
    "LabellingRules",
    "Observation",
    "OnlineOutcomeModel",
    "ProportionStatistic",
    "RuleBook",
    "RulesConfigError",
    "RunSummary",
    "SuccessRateDriftMonitor",
    "TraceState",
    "TrainingExample",
    "decide",
    "drift_alert_record",
]
