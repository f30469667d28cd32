"""Labelling rules: thresholds, confidences and signal weights, per tenant and agent.

Defaults live in :class:`LabellingRules`. A :class:`RuleBook` layers overrides on top,
from Python or from YAML::

    default:                    # for everyone (overrides the built-in defaults)
      rating_success_at: 0.8
    tenants:
      acme:
        rules:                  # every agent of tenant acme
          ai_judge_confidence: 0.7
        agents:
          support-bot:          # this agent of acme only
            signal_weights: {escalate: -3.5, handoff: -2.0}   # merged key by key
            fallback: base_rate

Resolution for (tenant, agent): built-in defaults, then ``default``, then the tenant's
``rules``, then the agent's; ``signal_weights`` dictionaries are merged key by key, so
a tenant can add its own implicit signals (``handoff`` above) with a weight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentgym.processors.labelling.exceptions import RulesConfigError

__all__ = ["LabellingRules", "RuleBook", "DEFAULT_SIGNAL_WEIGHTS", "ModelKind", "ModelTrainOn", "Fallback"]

ModelKind = Literal["logistic_regression", "hoeffding_tree"]
Fallback = Literal["unknown", "base_rate"]
ModelTrainOn = Literal["all", "undecided"]

# Log-odds of success each piece of evidence adds (negative: evidence of failure).
# Summed naive-Bayes style, so independent signals add up and contradictory ones
# cancel; a weight w moves P(success) from 0.5 to sigmoid(w) on its own
# (w = -2.5 -> 0.08, +2.5 -> 0.92). Count-valued signals (failed tool calls, step
# errors, retries, sentiment words) add w per occurrence, up to ``signal_count_cap``.
DEFAULT_SIGNAL_WEIGHTS: dict[str, float] = {
    # the run itself (from the Experience)
    "status_error": -3.0,
    "status_timeout": -2.5,
    "status_cancelled": -1.5,
    "empty_output": -1.5,
    "failed_tool_call": -0.75,
    "step_error": -0.5,  # an llm/retrieval/other step that errored
    "step_retry": -0.5,  # a step repeated right after it errored
    # implicit feedback signals (Feedback.signal), from the user's behaviour or the system
    "retry": -1.0,
    "abandon": -2.0,
    "escalate": -2.5,
    "copy": 1.0,
    "task_completed": 2.5,
    # verdicts of automated checks (Feedback source=system with a rating or thumbs)
    "system_pass": 2.0,
    "system_fail": -2.0,
    # words in feedback comments (see positive_words / negative_words)
    "positive_word": 0.5,
    "negative_word": -0.75,
}

_POSITIVE_WORDS = (
    "thanks", "thank", "great", "perfect", "perfectly", "helpful", "work", "works", "worked", "working", "solved", "excellent", "awesome",
    "correct", "exactly", "good", "nice", "love", "fixed", "resolved", "brilliant", "accurate", "useful",
)
_NEGATIVE_WORDS = (
    "wrong", "bad", "broken", "incorrect", "error", "fail", "failed", "fails", "unhelpful",
    "terrible", "awful", "confusing", "nonsense", "hallucinated", "worse", "stuck", "useless", "frustrating",
)


class LabellingRules(BaseModel):
    """How one tenant's agent is labelled. Every field has a sane default.

    Ratings are compared after normalising to [0, 1] (``rating / rating_scale``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- explicit human feedback -------------------------------------------------
    rating_success_at: float = Field(default=0.7, ge=0, le=1, description="normalised rating at or above which a rating means success (0.7: 4 and 5 of 5)")
    rating_failure_at: float = Field(default=0.5, ge=0, le=1, description="normalised rating at or below which it means failure (0.5: 0-2 of 5); in between is neutral")
    human_confidence: float = Field(default=0.95, gt=0.5, le=1, description="confidence of an unanimous explicit human label")
    correction_confidence: float = Field(default=0.99, gt=0.5, le=1, description="confidence of failure when a correction was given")
    # -- AI judges -----------------------------------------------------------------
    ai_judge_enabled: bool = Field(default=True, description="use feedback with source=ai")
    ai_judge_confidence: float = Field(default=0.75, gt=0.5, le=1, description="confidence of an unanimous AI-judge label")
    # -- system signals ------------------------------------------------------------
    signal_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SIGNAL_WEIGHTS), description="log-odds of success per signal")
    signal_count_cap: int = Field(default=3, ge=1, description="count-valued signals contribute at most this many times")
    signal_decisive_at: float = Field(default=1.5, gt=0, description="|summed log-odds| at which system signals decide the label")
    signal_max_confidence: float = Field(default=0.95, gt=0.5, le=1, description="cap of a signal-based confidence")
    positive_words: tuple[str, ...] = Field(default=_POSITIVE_WORDS, description="comment words that suggest success")
    negative_words: tuple[str, ...] = Field(default=_NEGATIVE_WORDS, description="comment words that suggest failure")
    # -- online model ----------------------------------------------------------------
    model_enabled: bool = Field(default=True, description="label traces no rule decided with the online model")
    model_kind: ModelKind = Field(default="logistic_regression", description="the river classifier")
    model_min_examples: int = Field(default=30, ge=1, description="explicit labels the model must have learnt before it labels anything")
    model_learn_from_ai_judge: bool = Field(default=False, description="also train on AI-judge labels (default: human labels only)")
    model_train_on: ModelTrainOn = Field(
        default="all",
        description="'all' explicitly labelled traces, or only those the system signals leave 'undecided' "
        "(the population the model labels)",
    )
    model_calibration: bool = Field(default=True, description="prequential Platt scaling of the model's probability")
    model_label_noise: float | None = Field(
        default=None, ge=0, lt=0.5, description="share of human labels assumed wrong, inverted in the model's probability (None: 1 - human_confidence)"
    )
    # -- nothing decided -------------------------------------------------------------
    fallback: Fallback = Field(
        default="unknown",
        description="when no source decides: 'unknown', or 'base_rate' (the majority label of this agent's explicit labels, "
        "with the smoothed base rate as confidence)",
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> LabellingRules:
        if self.rating_failure_at >= self.rating_success_at:
            raise ValueError(f"rating_failure_at ({self.rating_failure_at}) must be below rating_success_at ({self.rating_success_at})")
        return self

    @property
    def label_noise(self) -> float:
        """The share of human labels the model assumes wrong."""
        return 1.0 - self.human_confidence if self.model_label_noise is None else self.model_label_noise

    def rating_verdict(self, normalised: float) -> bool | None:
        """True (success), False (failure) or None (neutral band) for a rating in [0, 1]."""
        if normalised >= self.rating_success_at:
            return True
        if normalised <= self.rating_failure_at:
            return False
        return None


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if key == "signal_weights" and isinstance(value, Mapping):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _validated(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> LabellingRules:
    merged: dict[str, Any] = LabellingRules().model_dump()
    for where, layer in layers:
        if not isinstance(layer, Mapping):
            raise RulesConfigError(f"{where}: expected a mapping of rule settings, got {type(layer).__name__}")
        merged = _merge(merged, layer)
        try:
            LabellingRules(**merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise RulesConfigError(f"{where}: {field}: {first['msg']}") from exc
    return LabellingRules(**merged)


class RuleBook:
    """Rules per (tenant, agent): defaults plus overrides.

    Args:
        default: overrides of the built-in defaults for every tenant.
        tenants: ``{tenant: {"rules": {...}, "agents": {agent: {...}}}}``.

    Raises:
        RulesConfigError: naming the tenant/agent and field of a bad override.
    """

    def __init__(self, default: Mapping[str, Any] | LabellingRules | None = None, tenants: Mapping[str, Any] | None = None) -> None:
        if isinstance(default, LabellingRules):
            default = default.model_dump()
        if default is not None and not isinstance(default, Mapping):
            raise RulesConfigError(f"default: expected a mapping of rule settings, got {type(default).__name__}")
        if tenants is not None and not isinstance(tenants, Mapping):
            raise RulesConfigError(f"tenants: expected a mapping of tenant ids, got {type(tenants).__name__}")
        self._default = dict(default or {})
        self._tenants = {}
        for t, v in (tenants or {}).items():
            if v is not None and not isinstance(v, Mapping):
                raise RulesConfigError(f"tenants.{t}: expected a mapping with 'rules' and 'agents'")
            self._tenants[str(t)] = dict(v or {})
        for tenant, spec in self._tenants.items():
            unknown = set(spec) - {"rules", "agents"}
            if unknown:
                raise RulesConfigError(f"tenants.{tenant}: unknown key(s) {sorted(unknown)}; expected 'rules' and 'agents'")
        self._cache: dict[tuple[str, str], LabellingRules] = {}
        # validate every layer now, so a typo fails at start-up, not on the first event
        base = [("default", self._default)]
        _validated(base)
        for tenant, spec in self._tenants.items():
            tl = base + [(f"tenants.{tenant}.rules", spec.get("rules") or {})]
            _validated(tl)
            agents = spec.get("agents") or {}
            if not isinstance(agents, Mapping):
                raise RulesConfigError(f"tenants.{tenant}.agents: expected a mapping of agent ids")
            for agent, layer in agents.items():
                _validated(tl + [(f"tenants.{tenant}.agents.{agent}", layer or {})])
        self.version = hashlib.sha256(
            json.dumps({"default": self._default, "tenants": self._tenants}, sort_keys=True, default=str).encode()
        ).hexdigest()[:12]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> RuleBook:
        """From a parsed YAML/JSON document with the keys ``default`` and ``tenants``."""
        data = dict(data or {})
        unknown = set(data) - {"default", "tenants"}
        if unknown:
            raise RulesConfigError(f"unknown top-level key(s) {sorted(unknown)}; expected 'default' and 'tenants'")
        return cls(data.get("default"), data.get("tenants"))

    @classmethod
    def from_yaml(cls, path: str | Path) -> RuleBook:
        """Loads a YAML rules file (see the module docstring)."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).expanduser().read_text()) or {}
        except OSError as exc:
            raise RulesConfigError(f"{path}: cannot read the rules file: {exc}") from exc
        except yaml.YAMLError as exc:
            raise RulesConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise RulesConfigError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_mapping(data)
        except RulesConfigError as exc:
            raise RulesConfigError(f"{path}: {exc}") from exc

    def rules_for(self, tenant_id: str, agent_id: str) -> LabellingRules:
        """The resolved rules of one agent (cached)."""
        key = (tenant_id, agent_id)
        rules = self._cache.get(key)
        if rules is None:
            spec = self._tenants.get(tenant_id, {})
            layers = [("default", self._default), (f"tenants.{tenant_id}.rules", spec.get("rules") or {})]
            agent_layer = (spec.get("agents") or {}).get(agent_id)
            if agent_layer:
                layers.append((f"tenants.{tenant_id}.agents.{agent_id}", agent_layer))
            rules = self._cache[key] = _validated(layers)
        return rules
