"""Settings of the dataset builder (the ``datasets`` processor of the Faust app, ``agentgym datasets``).

When a dataset is finished, what enters it, where it is stored. Precedence: argument,
then environment (``AGENTGYM_*``), then default. Every field is documented in
``docs/configuration.md``.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from agentgym.producers.settings import SharedSettings, parse_choices

__all__ = ["DatasetSettings", "SCRUBBERS"]

# the built-in scrubbers of agentgym.processors.datasets.quality (names accepted by AGENTGYM_DATASET_SCRUB)
SCRUBBERS = ("email", "phone", "api_key", "credit_card", "ip_address")


class DatasetSettings(SharedSettings):
    """Read by the Faust app when `AGENTGYM_PROCESSORS` includes `datasets` (a timer on the
    leader worker that builds the finished datasets of every tenant and agent from ClickHouse,
    writes them to the dataset store (`AGENTGYM_DATASET_STORE`) and announces them on
    `gym-datasets-v1`), and by `agentgym datasets`. A dataset is finished by size
    (`AGENTGYM_DATASET_MIN_NEW_EXAMPLES` runs labelled since the agent's last dataset) or by age
    (the oldest of them waited `AGENTGYM_DATASET_MAX_AGE_S`)."""

    dataset_interval_s: float = Field(30.0, gt=0, description="seconds between the builder's checks for finished datasets (> 0)")
    dataset_min_new_examples: int = Field(500, ge=1, description="size threshold: runs labelled (success or failure, confident enough) since the agent's last dataset (>= 1)")
    dataset_max_age_s: float = Field(86400.0, gt=0, description="age threshold: seconds the oldest of those labels may wait before a dataset is built anyway (> 0)")
    dataset_min_examples: int = Field(20, ge=1, description="a dataset of one kind (`sft`, `preference`) with fewer examples is not written (>= 1)")
    dataset_max_examples: int = Field(50000, ge=1, description="newest labelled runs read per build (datasets are cumulative: every labelled run of the window, newest first) (>= 1)")
    dataset_window_days: float = Field(90.0, gt=0, description="only runs labelled within this many days enter a dataset (> 0)")
    dataset_min_confidence: float = Field(0.7, ge=0, le=1, description="outcomes below this confidence are left out (0-1)")
    dataset_eval_fraction: float = Field(0.1, ge=0, lt=1, description="share of prompts held out for evaluation, chosen by a hash of the prompt, so a held-out prompt never appears in training, in this dataset or a later one (0 <= f < 1)")
    dataset_max_prompt_chars: int = Field(16000, ge=1, description="examples with a longer prompt are dropped (>= 1)")
    dataset_max_completion_chars: int = Field(8000, ge=1, description="examples with a longer completion are dropped (>= 1)")
    dataset_min_completion_chars: int = Field(1, ge=0, description="examples with a shorter completion are dropped (>= 0)")
    dataset_near_duplicate_threshold: float = Field(
        0.9, gt=0, le=1, description="MinHash Jaccard (character 5-shingles, system prompt left out) at or above which an example nearly duplicates an earlier one and is dropped, and a training prompt nearly duplicates a held-out one (0 < t <= 1; 1: exact duplicates only)"
    )
    dataset_scrub: str = Field("email,phone,api_key,credit_card", description="comma-separated built-in scrubbers applied to every prompt and completion: `email`, `phone`, `api_key` (API keys, tokens, private keys, `password=...`), `credit_card` (Luhn-checked), `ip_address`; empty: none")
    dataset_scrub_patterns: dict[str, str] = Field(default_factory=dict, description="extra scrubbers, a JSON object name -> regex; a match becomes `<NAME>`", json_schema_extra={"doc_default": "`{}`"})
    dataset_shard_rows: int = Field(10000, ge=1, description="rows per Parquet shard (>= 1)")

    @field_validator("dataset_scrub")
    @classmethod
    def _known_scrubbers(cls, value: str) -> str:
        parse_choices(value, variable="AGENTGYM_DATASET_SCRUB", allowed=SCRUBBERS, what="scrubber")
        return value

    @property
    def scrubbers(self) -> list[str]:
        """The enabled built-in scrubbers, in order."""
        return [s.strip() for s in self.dataset_scrub.split(",") if s.strip()]
