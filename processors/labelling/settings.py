"""Settings of the outcome labeller (the Faust agent in ``processors/labeller.py``).

Read once, from the environment, under the prefix ``AGENTGYM_LABELLER_`` (the shared
settings keep their ``AGENTGYM_*`` names). Precedence: argument, then environment, then
default. Documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from agentgym.producers.settings import SharedSettings

__all__ = ["LabellerSettings"]


class LabellerSettings(SharedSettings):
    """Read by the Faust app when `AGENTGYM_PROCESSORS` includes `labeller` (outcomes of every
    run from feedback, rules and an online river model; drift alerts per model version)."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_LABELLER_")

    quiet_period_s: float = Field(default=60.0, gt=0, description="a trace's first outcome is emitted once no experience or feedback arrived for it for this many seconds; later feedback re-arms the same wait before a revision is emitted (> 0)")
    orphan_wait_s: float = Field(default=600.0, gt=0, description="feedback whose experience has not arrived is labelled anyway after this many seconds of quiet (without run features and model version) (> 0)")
    state_ttl_s: float = Field(default=3 * 24 * 3600.0, gt=0, description="a trace's join state is deleted (changelog tombstone) this many seconds after its last event; feedback arriving later starts a new, experience-less trace (> 0)")
    tick_s: float = Field(default=1.0, gt=0, description="how often the finalisation timer runs, seconds (> 0)")
    expiry_sweep_s: float = Field(default=60.0, gt=0, description="how often expired join state is swept, seconds (> 0)")
    rules_path: Path | None = Field(default=None, description="YAML file of per-tenant / per-agent rule overrides (see `agentgym.processors.labelling.rules`)", json_schema_extra={"doc_default": "unset (built-in defaults)"})
    drift_delta: float = Field(default=0.002, gt=0, lt=1, description="ADWIN's confidence parameter: smaller means fewer false alarms and slower detection (0 < delta < 1)")
    drift_grace_period: int = Field(default=30, ge=1, description="outcomes of a model version seen before ADWIN may signal drift (>= 1)")
    drift_sources: Literal["independent", "all"] = Field(default="independent", description="which labels feed the drift detector: `independent` (human, AI-judge and rule labels: not the online model's, which adapts to the very drift and can shift other versions' labels with it) or `all` (faster, more false alarms)")
    max_feedback_per_trace: int = Field(default=50, ge=1, description="at most this many feedback items are kept per trace (the newest); bounds state size (>= 1)")
