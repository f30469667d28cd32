"""Settings of synthetic scenario generation (``agentgym synth generate``).

Precedence: argument (CLI option), then environment (``AGENTGYM_*``), then default.
Where the dataset store is, which scrubbers run and the held-out fraction of real
prompts come from :class:`agentgym.processors.datasets.settings.DatasetSettings` (``AGENTGYM_DATASET_*``),
so synthetic datasets sit next to the finished ones and honour the same splits; the
ClickHouse store from :class:`agentgym.processors.store.settings.StoreSettings`. Every field is
documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SynthSettings", "DEFAULT_MIX", "MIX_KEYS"]

MIX_KEYS = ("paraphrase", "failure", "edge", "domain")
DEFAULT_MIX: dict[str, float] = {"paraphrase": 0.35, "failure": 0.25, "edge": 0.2, "domain": 0.2}


class SynthSettings(BaseSettings):
    """What ``agentgym synth generate`` reads, how much it generates of what, and how strictly it filters."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_", extra="ignore")

    tenant_id: str = Field(default="default", min_length=1, description="tenant whose runs are mined (the CLI's --tenant)")
    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka: DatasetReady announcements, the model registry")
    synth_max_sources: int = Field(default=5000, ge=1, description="newest real runs of the agent read from ClickHouse")
    synth_window_days: float = Field(default=90.0, gt=0, description="only runs from the last this many days are mined")
    synth_mix: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MIX),
        description="share of the batch per family: paraphrase, failure, edge, domain (renormalised over the active ones)",
    )
    synth_near_duplicate_threshold: float = Field(
        default=0.9, gt=0, le=1, description="MinHash Jaccard at or above which two scenarios (or a scenario and a real input) are near duplicates"
    )
    synth_leak_threshold: float = Field(
        default=0.8, gt=0, le=1, description="Jaccard at or above which a scenario leaks a held-out evaluation prompt"
    )
    synth_eval_fraction: float = Field(default=0.2, ge=0, lt=1, description="share of scenario groups written to the eval split")
    synth_max_prompt_chars: int = Field(default=16000, ge=1, description="longer scenarios are rejected (too_long)")
    synth_long_chars: int = Field(default=12000, ge=100, description="length of the very-long edge cases, characters")
    synth_oversample: float = Field(default=1.5, ge=1, description="candidates asked of a generator per scenario still missing")
    synth_max_rounds: int = Field(default=4, ge=1, description="generation rounds before a batch stops short of --n")
    synth_cluster_threshold: float = Field(
        default=0.5, gt=0, le=1, description="Jaccard of masked inputs at or above which two failed runs share a cluster"
    )
    synth_paraphraser_max_new_tokens: int = Field(default=64, ge=1, description="tokens a registry model may generate per paraphrase")

    @field_validator("synth_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(MIX_KEYS))
        if unknown:
            raise ValueError(f"unknown family {unknown}; known: {list(MIX_KEYS)}")
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("shares must be >= 0 and not all 0")
        return {k: float(value.get(k, 0.0)) for k in MIX_KEYS}

    @model_validator(mode="after")
    def _long(self) -> "SynthSettings":
        if self.synth_long_chars > self.synth_max_prompt_chars:
            raise ValueError(
                f"synth_long_chars ({self.synth_long_chars}) exceeds synth_max_prompt_chars ({self.synth_max_prompt_chars}):"
                " every very-long edge case would be rejected"
            )
        return self
