"""Synthetic scenarios from real interactions: variations, failure-seeded cases, edge cases.

Real traffic is thin where it matters most. ``agentgym synth generate`` mines an
agent's runs from ClickHouse and makes new test cases from them, validates every
batch, and writes the survivors as a ``synthetic`` dataset with lineage back to the
runs they came from.

* :mod:`trainers.synth.scenario`: the records (:class:`Scenario`, :class:`SourceRun`) and the Parquet schema.
* :mod:`trainers.synth.text`: rule-based transformations (paraphrase, typos, translation, injections, ...).
* :mod:`trainers.synth.bases`: requests as templates with their expected tool call and answer.
* :mod:`trainers.synth.clusters`: clusters of failed runs (failing tool, then MinHash similarity).
* :mod:`trainers.synth.paraphrase`: rule-based and registry-model paraphrasers.
* :mod:`trainers.synth.generators`: the built-in generators and the generator protocol.
* :mod:`trainers.synth.spec`: YAML domain specs (``specs/tool_routing.yaml``).
* :mod:`trainers.synth.plugins`: generators by name, path, ``module:attr`` or entry point.
* :mod:`trainers.synth.validation`: schema, duplicates, held-out leaks, diversity.
* :mod:`trainers.synth.pipeline`: one batch, quotas and rounds; :mod:`trainers.synth.report`: its report.
* :mod:`trainers.synth.mining`, :mod:`trainers.synth.output`, :mod:`trainers.synth.service`: the I/O.

Pure modules import neither Kafka nor ClickHouse; nothing runs at import.
"""

from trainers.synth.bases import Base
from trainers.synth.exceptions import GeneratorLoadError, NoSourcesError, ScenarioSchemaError, SpecError, SynthError
from trainers.synth.generators import (
    EdgeCaseGenerator,
    FailureSeededGenerator,
    FunctionGenerator,
    GenerationContext,
    Generator,
    ParaphraseGenerator,
)
from trainers.synth.paraphrase import ModelParaphraser, Paraphraser, RuleParaphraser
from trainers.synth.pipeline import BatchResult, generate_batch
from trainers.synth.plugins import ENTRY_POINT_GROUP, load_generator
from trainers.synth.report import QualityReport
from trainers.synth.scenario import EDGE_FAMILIES, FAMILIES, Scenario, SourceRun, ToolCall
from trainers.synth.settings import SynthSettings
from trainers.synth.spec import DomainSpec, SpecGenerator
from trainers.synth.validation import BatchValidator, Diversity, ValidationConfig, diversity

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
