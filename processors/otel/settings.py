"""Settings of the otel processor (``processors/otel/processor.py``).

Read once, from the environment, under the prefix ``AGENTGYM_OTEL_`` (the shared
settings keep their ``AGENTGYM_*`` names). Precedence: argument, then environment, then
default. Documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from agentgym.producers.settings import SharedSettings

__all__ = ["OtelSettings"]


class OtelSettings(SharedSettings):
    """Read by the Faust app when `AGENTGYM_PROCESSORS` includes `otel` (OTLP GenAI spans, as the
    gateway's `POST /v1/traces` maps them, assembled into one experience per trace; see `docs/otel.md`)."""

    model_config = SettingsConfigDict(env_prefix="AGENTGYM_OTEL_")

    state_ttl_s: float = Field(
        default=3600.0, gt=0, description="a trace's spans are kept this many seconds after its last batch, so that late "
        "spans revise its experience; a span arriving later starts over and replaces the run with the late spans alone (> 0)")
    max_spans_per_trace: int = Field(
        default=2000, ge=1, description="spans kept per trace; more are dropped and counted in the experience's "
        "`metadata['otel.dropped_spans']` (>= 1)")
