"""Settings of the outcome labeller (the Faust agent in ``processors/labeller.py``).

Read once, from the environment, under the prefix ``AGENTGYM_LABELLER_``.
Precedence: argument, then environment, then default.

| variable | meaning | default |
|---|---|---|
| ``AGENTGYM_LABELLER_QUIET_PERIOD_S`` | a trace's first outcome is emitted once no experience or feedback arrived for it for this many seconds; later feedback re-arms the same wait before a revision is emitted (> 0) | ``60`` |
| ``AGENTGYM_LABELLER_ORPHAN_WAIT_S`` | feedback whose experience has not arrived is labelled anyway after this many seconds of quiet (without run features and model version) (> 0) | ``600`` |
| ``AGENTGYM_LABELLER_STATE_TTL_S`` | a trace's join state is deleted (changelog tombstone) this many seconds after its last event; feedback arriving later starts a new, experience-less trace (> 0) | ``259200`` (3 days) |
| ``AGENTGYM_LABELLER_TICK_S`` | how often the finalisation timer runs, seconds (> 0) | ``1.0`` |
| ``AGENTGYM_LABELLER_EXPIRY_SWEEP_S`` | how often expired join state is swept, seconds (> 0) | ``60`` |
| ``AGENTGYM_LABELLER_RULES_PATH`` | YAML file of per-tenant / per-agent rule overrides (see :mod:`agentgym.processors.labelling.rules`) | unset (built-in defaults) |
| ``AGENTGYM_LABELLER_DRIFT_DELTA`` | ADWIN's confidence parameter: smaller means fewer false alarms and slower detection (0 < delta < 1) | ``0.002`` |
| ``AGENTGYM_LABELLER_DRIFT_GRACE_PERIOD`` | outcomes of a model version seen before ADWIN may signal drift (>= 1) | ``30`` |
| ``AGENTGYM_LABELLER_DRIFT_SOURCES`` | which labels feed the drift detector: ``independent`` (human, AI-judge and rule labels: not the online model's, which adapts to the very drift and can shift other versions' labels with it) or ``all`` (faster, more false alarms) | ``independent`` |
| ``AGENTGYM_LABELLER_MAX_FEEDBACK_PER_TRACE`` | at most this many feedback items are kept per trace (the newest); bounds state size (>= 1) | ``50`` |
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LabellerSettings"]


class LabellerSettings(BaseSettings):
    """Timing, state and drift settings of the labeller; see the module docstring."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_LABELLER_", extra="ignore")

    quiet_period_s: float = Field(default=60.0, gt=0, description="quiet period before an outcome (revision) is emitted, seconds")
    orphan_wait_s: float = Field(default=600.0, gt=0, description="how long feedback waits for its experience, seconds")
    state_ttl_s: float = Field(default=3 * 24 * 3600.0, gt=0, description="join state is deleted this long after a trace's last event, seconds")
    tick_s: float = Field(default=1.0, gt=0, description="finalisation timer interval, seconds")
    expiry_sweep_s: float = Field(default=60.0, gt=0, description="expired-state sweep interval, seconds")
    rules_path: Path | None = Field(default=None, description="YAML file with per-tenant/agent rule overrides")
    drift_delta: float = Field(default=0.002, gt=0, lt=1, description="ADWIN delta")
    drift_grace_period: int = Field(default=30, ge=1, description="outcomes per model version before drift may be signalled")
    drift_sources: Literal["independent", "all"] = Field(default="independent", description="labels the drift detector sees")
    max_feedback_per_trace: int = Field(default=50, ge=1, description="newest feedback items kept per trace")
