"""Pure outcome labelling: trace state, features, rules, the online model, drift, evaluation.

No Kafka and no ClickHouse here; ``processors/labeller.py`` is the Faust agent that
feeds this package from the topics and writes its outcomes back.
"""

from processors.labelling.decision import Decision, decide
from processors.labelling.drift import DriftEvent, SuccessRateDriftMonitor
from processors.labelling.engine import (
    AgentLearner,
    DueQueue,
    Finalised,
    InMemoryLabeller,
    LabellingEngine,
    Observation,
    TrainingExample,
    drift_alert_record,
)
from processors.labelling.exceptions import InvalidEventError, LabellingError, RulesConfigError
from processors.labelling.model import OnlineOutcomeModel, ProportionStatistic
from processors.labelling.rules import LabellingRules, RuleBook
from processors.labelling.settings import LabellerSettings
from processors.labelling.state import FeedbackItem, RunSummary, TraceState

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
