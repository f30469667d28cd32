"""Settings of the dataset builder (the ``datasets`` processor of the Faust app, ``agentgym datasets``).

When a dataset is finished, what enters it, where it is stored. Precedence: argument,
then environment (``AGENTGYM_*``), then default. Every field is documented in
``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentgym.processors.store.settings import default_home

__all__ = ["DatasetSettings", "SCRUBBERS"]

# the built-in scrubbers of agentgym.processors.datasets.quality (names accepted by AGENTGYM_DATASET_SCRUB)
SCRUBBERS = ("email", "phone", "api_key", "credit_card", "ip_address")


def _under_home(home: Path, name: str) -> str:
    return str(home.expanduser().resolve() / name)


class DatasetSettings(BaseSettings):
    """The dataset builder: thresholds, quality filters, the dataset store."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="state of the local stack")
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka, where finished datasets are announced")
    dataset_store: str = Field("", description="fsspec URL or path of the dataset store (default <home>/datasets)")
    dataset_interval_s: float = Field(30.0, gt=0, description="seconds between the builder's checks")
    dataset_min_new_examples: int = Field(500, ge=1, description="size threshold: new labelled runs since the last dataset")
    dataset_max_age_s: float = Field(86400.0, gt=0, description="age threshold: oldest unused label, seconds")
    dataset_min_examples: int = Field(20, ge=1, description="a dataset with fewer examples is not written")
    dataset_max_examples: int = Field(50000, ge=1, description="newest labelled runs read per build")
    dataset_window_days: float = Field(90.0, gt=0, description="only runs labelled within this many days")
    dataset_min_confidence: float = Field(0.7, ge=0, le=1, description="labels below this confidence are left out")
    dataset_eval_fraction: float = Field(0.1, ge=0, lt=1, description="share of prompts held out for evaluation")
    dataset_max_prompt_chars: int = Field(16000, ge=1, description="longer prompts are dropped")
    dataset_max_completion_chars: int = Field(8000, ge=1, description="longer completions are dropped")
    dataset_min_completion_chars: int = Field(1, ge=0, description="shorter completions are dropped")
    dataset_near_duplicate_threshold: float = Field(
        0.9, gt=0, le=1, description="MinHash Jaccard at or above which two examples are near duplicates (1: exact only)"
    )
    dataset_scrub: str = Field("email,phone,api_key,credit_card", description="comma-separated scrubbers ('' = none)")
    dataset_scrub_patterns: dict[str, str] = Field(default_factory=dict, description="extra scrubbers: name -> regex")
    dataset_shard_rows: int = Field(10000, ge=1, description="rows per Parquet shard")

    @model_validator(mode="after")
    def _defaults(self) -> "DatasetSettings":
        if not self.dataset_store:
            self.dataset_store = _under_home(self.home, "datasets")
        unknown = set(self.scrubbers) - set(SCRUBBERS)
        if unknown:
            raise ValueError(f"dataset_scrub: unknown scrubber(s) {sorted(unknown)}; known: {list(SCRUBBERS)}")
        return self

    @property
    def scrubbers(self) -> list[str]:
        """The enabled built-in scrubbers, in order."""
        return [s.strip() for s in self.dataset_scrub.split(",") if s.strip()]
