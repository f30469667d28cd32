"""Settings of the experiments processor (A/B statistics and decisions).

Read once, from the environment (prefix ``AGENTGYM_``), documented in
``docs/configuration.md`` ("Experiments processor"). Precedence: argument, then
environment, then default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from agentgym.producers.settings import SharedSettings, avro_enum_symbols, parse_choices

__all__ = ["ExperimentSettings"]


class ExperimentSettings(SharedSettings):
    """Read by the Faust app when `AGENTGYM_PROCESSORS` includes `experiments` (the A/B
    statistics: units per variant and metric, always-valid tests, snapshots to
    `gym-experiment-stats-v1`, decisions to `gym-decisions-v1` applied to the live
    configuration on `gym-experiments-v1`)."""

    experiments_snapshot_interval_s: float = Field(
        10.0, gt=0, description="seconds between two looks at a running experiment: statistics snapshots, always-valid tests and decisions (> 0)")
    experiments_mixing_horizon: float = Field(
        10.0, gt=0, description="the always-valid test's mixing parameter is tuned, once per experiment, so its confidence sequence is narrowest at this many times `min_samples_per_arm` units per arm (> 0)")
    experiments_correction: Literal["holm", "bonferroni"] = Field(
        "holm", description="multiple-comparison correction with more than one treatment: `holm` or `bonferroni`")
    experiments_srm_alpha: float = Field(0.001, gt=0, lt=1, description="level of the sequential sample-ratio-mismatch test (a mismatch rolls the experiment back) (0 < alpha < 1)")
    experiments_srm_concentration: float = Field(100.0, gt=0, description="k of the SRM test's Dirichlet prior k·weights: larger finds small mismatches later but more surely (> 0)")
    experiments_rating_sources: str = Field(
        "human", description="comma-separated feedback sources (`human`, `ai`, `system`: the symbols of Feedback's `source`) whose ratings the `rating` metric counts")
    experiments_feedback_hold_s: float = Field(
        60.0, ge=0, description="seconds that feedback arriving before its trace's experience is held (in the worker's memory, at most 10,000 records) waiting for the assignment; after that, or across a restart, it is not counted (>= 0)")
    experiments_auto_decide: bool = Field(True, description="apply decisions to the live configuration (promote a winner, roll back); `false` only records them")

    @field_validator("experiments_rating_sources")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        parse_choices(value, variable="AGENTGYM_EXPERIMENTS_RATING_SOURCES", allowed=avro_enum_symbols("Feedback", "source"),
                      what="source")
        return value

    @property
    def rating_sources(self) -> list[str]:
        """The feedback sources the rating metric counts, in order."""
        return [s.strip() for s in self.experiments_rating_sources.split(",") if s.strip()]
