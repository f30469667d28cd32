"""Synthetic scenarios from real interactions: variations, failure-seeded cases, edge cases.

Real traffic is thin where it matters most. ``agentgym synth generate`` mines an
agent's runs from ClickHouse and makes new test cases from them, validates every
batch, and writes the survivors as a ``synthetic`` dataset with lineage back to the
runs they came from.

* :mod:`agentgym.trainers.synth.scenario`: the records (:class:`Scenario`, :class:`SourceRun`) and the Parquet schema.
* :mod:`agentgym.trainers.synth.text`: rule-based transformations (paraphrase, typos, translation, injections, ...).
* :mod:`agentgym.trainers.synth.bases`: requests as templates with their expected tool call and answer.
* :mod:`agentgym.trainers.synth.clusters`: clusters of failed runs (failing tool, then MinHash similarity).
* :mod:`agentgym.trainers.synth.paraphrase`: rule-based and registry-model paraphrasers.
* :mod:`agentgym.trainers.synth.generators`: the built-in generators and the generator protocol.
* :mod:`agentgym.trainers.synth.spec`: YAML domain specs (``specs/tool_routing.yaml``).
* :mod:`agentgym.trainers.synth.plugins`: generators by name, path, ``module:attr`` or entry point.
* :mod:`agentgym.trainers.synth.validation`: schema, duplicates, held-out leaks, diversity.
* :mod:`agentgym.trainers.synth.pipeline`: one batch, quotas and rounds; :mod:`agentgym.trainers.synth.report`: its report.
* :mod:`agentgym.trainers.synth.mining`, :mod:`agentgym.trainers.synth.output`, :mod:`agentgym.trainers.synth.service`: the I/O.

Pure modules import neither Kafka nor ClickHouse; nothing runs at import.
"""

from agentgym.trainers.synth.bases import Base
from agentgym.trainers.synth.exceptions import GeneratorLoadError, NoSourcesError, ScenarioSchemaError, SpecError, SynthError
from agentgym.trainers.synth.generators import (
    EdgeCaseGenerator,
    FailureSeededGenerator,
    FunctionGenerator,
    GenerationContext,
    Generator,
    ParaphraseGenerator,
)
from agentgym.trainers.synth.paraphrase import ModelParaphraser, Paraphraser, RuleParaphraser
from agentgym.trainers.synth.pipeline import BatchResult, generate_batch
from agentgym.trainers.synth.plugins import ENTRY_POINT_GROUP, load_generator
from agentgym.trainers.synth.report import QualityReport
from agentgym.trainers.synth.scenario import EDGE_FAMILIES, FAMILIES, Scenario, SourceRun, ToolCall
from agentgym.trainers.synth.settings import SynthSettings
from agentgym.trainers.synth.spec import DomainSpec, SpecGenerator
from agentgym.trainers.synth.validation import BatchValidator, Diversity, ValidationConfig, diversity

__all__ = [
    "Base",
    "BatchResult",
    "BatchValidator",
    "Diversity",
    "DomainSpec",
    "EDGE_FAMILIES",
    "ENTRY_POINT_GROUP",
    "EdgeCaseGenerator",
    "FAMILIES",
    "FailureSeededGenerator",
    "FunctionGenerator",
    "GenerationContext",
    "Generator",
    "GeneratorLoadError",
    "ModelParaphraser",
    "NoSourcesError",
    "ParaphraseGenerator",
    "Paraphraser",
    "QualityReport",
    "RuleParaphraser",
    "Scenario",
    "ScenarioSchemaError",
    "SourceRun",
    "SpecError",
    "SpecGenerator",
    "SynthError",
    "SynthSettings",
    "ToolCall",
    "ValidationConfig",
    "diversity",
    "generate_batch",
    "load_generator",
]
