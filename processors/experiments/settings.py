"""Settings of the experiments processor (A/B statistics and decisions).

Read once, from the environment (prefix ``AGENTGYM_``), documented in
``docs/configuration.md`` ("Experiments processor"). Precedence: argument, then
environment, then default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ExperimentSettings"]


class ExperimentSettings(BaseSettings):
    """How often the experiments processor snapshots, and how it tunes and decides."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    experiments_snapshot_interval_s: float = Field(
        10.0, gt=0, description="seconds between statistics snapshots (and decisions) of each running experiment")
    experiments_mixing_horizon: float = Field(
        10.0, gt=0, description="the mixing parameter is tuned for this many times min_samples_per_arm units per arm")
    experiments_correction: Literal["holm", "bonferroni"] = Field(
        "holm", description="multiple-comparison correction with more than one treatment")
    experiments_srm_alpha: float = Field(0.001, gt=0, lt=1, description="level of the sequential SRM test")
    experiments_srm_concentration: float = Field(100.0, gt=0, description="k of the SRM test's Dirichlet prior k·weights")
    experiments_rating_sources: str = Field(
        "human", description="comma-separated feedback sources (human, ai, system) the rating metric counts")
    experiments_feedback_hold_s: float = Field(
        60.0, ge=0, description="seconds feedback that arrives before its trace's experience is held, in memory, for it")
    experiments_auto_decide: bool = Field(True, description="apply decisions (promote, roll back) to the live configuration")
