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

from agentgym.producers.settings import SharedSettings

__all__ = ["SynthSettings", "DEFAULT_MIX", "MIX_KEYS"]

MIX_KEYS = ("paraphrase", "failure", "edge", "domain")
DEFAULT_MIX: dict[str, float] = {"paraphrase": 0.35, "failure": 0.25, "edge": 0.2, "domain": 0.2}


class SynthSettings(SharedSettings):
    """Read by `agentgym synth generate`, which mines an agent's runs of the tenant
    `AGENTGYM_TENANT_ID` (unless `--tenant` is given) from ClickHouse (the store of
    `AGENTGYM_CLICKHOUSE_URL`), generates and validates scenarios and writes them as a
    `synthetic` dataset to the dataset store, announced on `gym-datasets-v1` (Kafka at
    `AGENTGYM_BOOTSTRAP_SERVERS`, which also holds the model registry for `--paraphraser`).
    The scrubbers and the eval fraction of real prompts (runs whose prompt the dataset builder
    holds out are never seeds) come from the dataset builder's settings (`DatasetSettings`, see
    [Dataset builder](#dataset-builder)). CLI options win over these variables."""
    synth_max_sources: int = Field(default=5000, ge=1, description="newest real runs of the agent read from ClickHouse (>= 1)")
    synth_window_days: float = Field(default=90.0, gt=0, description="only runs of the last this many days are mined (> 0)")
    synth_mix: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MIX),
        description="share of a batch per family, a JSON object with keys `paraphrase`, `failure`, `edge`, `domain` (specs and plugin generators); renormalised over the families that have something to work from",
        json_schema_extra={"doc_default": "`{\"paraphrase\": 0.35, \"failure\": 0.25, \"edge\": 0.2, \"domain\": 0.2}`"},
    )
    synth_near_duplicate_threshold: float = Field(
        default=0.9, gt=0, le=1, description="MinHash Jaccard (character 5-shingles, system messages left out) at or above which a scenario nearly duplicates another or a real input (0 < t <= 1; 1: exact only)"
    )
    synth_leak_threshold: float = Field(
        default=0.8, gt=0, le=1, description="Jaccard at or above which a scenario (or a seed run) leaks a held-out evaluation prompt (0 < t <= 1)"
    )
    synth_eval_fraction: float = Field(default=0.2, ge=0, lt=1, description="share of scenario lineage groups written to the dataset's `eval` split (0 <= f < 1)")
    synth_max_prompt_chars: int = Field(default=16000, ge=1, description="longer scenarios are rejected as `too_long` (>= 1)")
    synth_long_chars: int = Field(default=12000, ge=100, description="length of the very-long edge cases, characters (>= 100, at most `AGENTGYM_SYNTH_MAX_PROMPT_CHARS`)")
    synth_oversample: float = Field(default=1.5, ge=1, description="candidates asked of a generator per scenario it still owes (>= 1)")
    synth_max_rounds: int = Field(default=4, ge=1, description="generation rounds before a batch stops short of `--n` (>= 1)")
    synth_cluster_threshold: float = Field(
        default=0.5, gt=0, le=1, description="Jaccard of masked requests at or above which two failed runs (same failing tool or status) share a failure cluster (0 < t <= 1)"
    )
    synth_paraphraser_max_new_tokens: int = Field(default=64, ge=1, description="tokens a registry model may generate per paraphrase (>= 1)")
    synth_jobs_dir: str = Field(
        default="", description="where synthetic generation jobs requested through the API are queued and recorded (run by "
        "`agentgym synth serve`): a directory or any fsspec URL", json_schema_extra={"doc_default": "unset (`<AGENTGYM_HOME>/synth/jobs`)"})

    @property
    def jobs_dir(self) -> str:
        """``synth_jobs_dir``, or ``synth/jobs`` under the home."""
        return self.synth_jobs_dir or self.under_home("synth/jobs")

    @field_validator("synth_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(MIX_KEYS))
        if unknown:
            raise ValueError(f"AGENTGYM_SYNTH_MIX: unknown family {unknown}; allowed: {list(MIX_KEYS)}")
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("AGENTGYM_SYNTH_MIX: shares must be >= 0 and not all 0")
        return {k: float(value.get(k, 0.0)) for k in MIX_KEYS}

    @model_validator(mode="after")
    def _long(self) -> "SynthSettings":
        if self.synth_long_chars > self.synth_max_prompt_chars:
            raise ValueError(
                f"synth_long_chars ({self.synth_long_chars}) exceeds synth_max_prompt_chars ({self.synth_max_prompt_chars}):"
                " every very-long edge case would be rejected"
            )
        return self
