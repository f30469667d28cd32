"""An experiment's configuration: the typed model of an ``ExperimentConfig`` record.

The live configuration is the latest record per ``experiment_id`` on the compacted
``gym-experiments-v1`` topic. Every change is a new record with ``config_version`` + 1
(the ClickHouse table keeps the highest version; agents and the processor follow the
topic). Changes go through the methods here, which check the status transition:

    draft ──start──▶ running ──pause──▶ paused ──resume──▶ running
                        │  ▲                │
                        │  └────────────────┘
                        ├──stop──▶ stopped            (no traffic routed any more)
                        ├──rollback──▶ rolled_back    (all traffic to the control)
                        └──promote──▶ concluded       (all traffic to the winner)

``paused`` routes everyone to the control and makes no decisions; ``stopped``,
``rolled_back`` and ``concluded`` are final.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agentgym.processors.experiments.exceptions import ExperimentConfigError, TransitionError
from agentgym.processors.experiments.metrics import METRICS
from agentgym.schemas.exceptions import InvalidIdError
from agentgym.schemas.ids import validate_id

__all__ = ["MetricSpec", "VariantSpec", "ExperimentConfig", "Status", "TERMINAL", "ROUTED"]

Status = Literal["draft", "running", "paused", "stopped", "rolled_back", "concluded"]
UnitType = Literal["user", "session", "trace"]
TERMINAL: frozenset[str] = frozenset({"stopped", "rolled_back", "concluded"})
ROUTED: frozenset[str] = frozenset({"running", "paused", "rolled_back", "concluded"})  # agents get a variant
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"running", "stopped"}),
    "running": frozenset({"paused", "stopped", "rolled_back", "concluded"}),
    "paused": frozenset({"running", "stopped", "rolled_back"}),
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric of an experiment.

    Attributes:
        name: a metric of :data:`agentgym.processors.experiments.metrics.METRICS`.
        kind: ``proportion`` or ``mean`` (must match the catalogue).
        direction: ``increase`` if higher is better, ``decrease`` otherwise.
        cap: values above it count as ``cap`` (heavy-tailed metrics); None: uncapped.
        limit: guardrails only: the largest tolerated relative degradation (0.1 = 10 %).
    """

    name: str
    kind: Literal["proportion", "mean"] = "proportion"
    direction: Literal["increase", "decrease"] = "increase"
    cap: float | None = None
    limit: float | None = None

    @classmethod
    def of(cls, name: str, *, direction: str | None = None, cap: float | None = None, limit: float | None = None) -> "MetricSpec":
        """A spec with the catalogue's kind and (unless given) direction."""
        m = METRICS.get(name)
        if m is None:
            raise ExperimentConfigError("metric", f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
        return cls(name, m.kind, direction or m.direction, cap, limit)  # type: ignore[arg-type]

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "direction": self.direction, "cap": self.cap, "limit": self.limit}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "MetricSpec":
        return cls(r["name"], r["kind"], r.get("direction") or "increase", r.get("cap"), r.get("limit"))


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One arm: its name, the model version it serves, its traffic weight."""

    name: str
    model_version: str
    weight: float
    is_control: bool = False

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "model_version": self.model_version, "weight": float(self.weight), "is_control": self.is_control}


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    """The configuration of one experiment (one ``ExperimentConfig`` record).

    Attributes:
        experiment_id: the id (letters, digits, ``.``, ``_``, ``:``, ``-``); the topic's key.
        tenant_id, agent_id: whose agent it concerns.
        variants: the arms; exactly one is the control.
        primary_metric: the metric that picks a winner.
        guardrails: metrics that must not degrade beyond their ``limit``.
        alpha: level of every test, in (0, 0.5].
        min_samples_per_arm: no inference (and no decision) below this many units per arm.
        salt: hashed with the unit id for assignment (default: the experiment id).
        unit_type: ``user``, ``session`` or ``trace``: what is randomised and counted.
        status: see the module docstring.
        config_version: 1 for the first record, + 1 per change.
        audit_rate: fraction of units in the audit sample, in [0, 1) (0: off); their gold
            labels correct ``success_rate`` (:mod:`agentgym.processors.stats.ppi`).
        cuped_metrics: metrics adjusted with CUPED by the unit's pre-experiment value.
        cuped_lookback_days: CUPED's pre-experiment window, in days (default 28).
    """

    experiment_id: str
    tenant_id: str
    agent_id: str
    variants: tuple[VariantSpec, ...]
    primary_metric: MetricSpec
    guardrails: tuple[MetricSpec, ...] = ()
    alpha: float = 0.05
    min_samples_per_arm: int = 100
    salt: str = ""
    unit_type: UnitType = "user"
    name: str = ""
    status: Status = "draft"
    config_version: int = 1
    updated_ms: int = field(default_factory=_now_ms)
    updated_by: str = ""
    event_id: str = ""
    audit_rate: float = 0.0
    cuped_metrics: tuple[str, ...] = ()
    cuped_lookback_days: int = 28

    def __post_init__(self) -> None:
        if not self.salt:
            object.__setattr__(self, "salt", self.experiment_id)
        if not self.event_id:
            object.__setattr__(self, "event_id", f"{self.experiment_id}:v{self.config_version}:{os.urandom(4).hex()}")

    # -- checks -----------------------------------------------------------------
    def validate(self) -> "ExperimentConfig":
        """Returns self; raises :class:`ExperimentConfigError` naming the field otherwise."""
        try:
            validate_id(self.experiment_id, "experiment_id")
        except InvalidIdError as exc:
            raise ExperimentConfigError("experiment_id", exc.reason) from None
        if not _ID.match(self.experiment_id or ""):
            raise ExperimentConfigError("experiment_id", f"{self.experiment_id!r} must be 1-128 letters, digits, '.', '_', ':' or '-'")
        for f in ("tenant_id", "agent_id"):
            if not getattr(self, f):
                raise ExperimentConfigError(f, "must not be empty")
        if len(self.variants) < 2:
            raise ExperimentConfigError("variants", f"needs at least two variants, got {len(self.variants)}")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names) or not all(names):
            raise ExperimentConfigError("variants", f"variant names must be non-empty and unique, got {names}")
        for v in self.variants:
            if not v.model_version:
                raise ExperimentConfigError(f"variants[{v.name}].model_version", "must not be empty")
            if not (v.weight >= 0 and v.weight < float("inf")):
                raise ExperimentConfigError(f"variants[{v.name}].weight", f"must be a finite number >= 0, got {v.weight}")
        controls = [v for v in self.variants if v.is_control]
        if len(controls) != 1:
            raise ExperimentConfigError("variants", f"exactly one variant must be the control, got {len(controls)}")
        if sum(v.weight for v in self.variants) <= 0:
            raise ExperimentConfigError("variants", "the weights must not all be 0")
        if self.status == "running" and (controls[0].weight <= 0 or all(v.weight <= 0 for v in self.variants if not v.is_control)):
            raise ExperimentConfigError("variants", "a running experiment needs traffic on the control and on a treatment")
        for where, m in [("primary_metric", self.primary_metric), *((f"guardrails[{g.name}]", g) for g in self.guardrails)]:
            known = METRICS.get(m.name)
            if known is None:
                raise ExperimentConfigError(f"{where}.name", f"unknown metric {m.name!r}; known: {', '.join(sorted(METRICS))}")
            if m.kind != known.kind:
                raise ExperimentConfigError(f"{where}.kind", f"{m.name} is a {known.kind} metric, not {m.kind}")
            if m.cap is not None and not m.cap > 0:
                raise ExperimentConfigError(f"{where}.cap", f"must be > 0, got {m.cap}")
        for g in self.guardrails:
            if g.limit is None or not g.limit >= 0:
                raise ExperimentConfigError(f"guardrails[{g.name}].limit", f"a guardrail needs a limit >= 0 (relative degradation), got {g.limit}")
            if g.name == self.primary_metric.name:
                raise ExperimentConfigError(f"guardrails[{g.name}]", "the primary metric cannot also be a guardrail")
        if len({g.name for g in self.guardrails}) != len(self.guardrails):
            raise ExperimentConfigError("guardrails", "a metric appears twice")
        if not 0 < self.alpha <= 0.5:
            raise ExperimentConfigError("alpha", f"must be in (0, 0.5], got {self.alpha}")
        if self.min_samples_per_arm < 1:
            raise ExperimentConfigError("min_samples_per_arm", f"must be >= 1, got {self.min_samples_per_arm}")
        if not 0.0 <= self.audit_rate < 1.0:
            raise ExperimentConfigError("audit_rate", f"must be in [0, 1), got {self.audit_rate}")
        for name in self.cuped_metrics:
            if name not in {m.name for m in self.metrics}:
                raise ExperimentConfigError("cuped_metrics", f"{name!r} is not one of the experiment's metrics")
        if self.cuped_lookback_days < 1:
            raise ExperimentConfigError("cuped_lookback_days", f"must be >= 1, got {self.cuped_lookback_days}")
        return self

    # -- views ------------------------------------------------------------------
    @property
    def control(self) -> VariantSpec:
        """The control variant."""
        return next(v for v in self.variants if v.is_control)

    @property
    def treatments(self) -> list[VariantSpec]:
        return [v for v in self.variants if not v.is_control]

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        raise ExperimentConfigError("variants", f"no variant {name!r}; variants: {[v.name for v in self.variants]}")

    @property
    def metrics(self) -> list[MetricSpec]:
        """The primary metric, then the guardrails."""
        return [self.primary_metric, *self.guardrails]

    # -- records ----------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The ``ExperimentConfig`` Avro record."""
        return {
            "event_id": self.event_id, "tenant_id": self.tenant_id, "experiment_id": self.experiment_id,
            "agent_id": self.agent_id, "name": self.name, "salt": self.salt, "unit_type": self.unit_type,
            "variants": [v.to_record() for v in self.variants],
            "primary_metric": self.primary_metric.to_record(),
            "guardrails": [g.to_record() for g in self.guardrails],
            "alpha": float(self.alpha), "min_samples_per_arm": int(self.min_samples_per_arm), "status": self.status,
            "config_version": int(self.config_version), "updated_ms": int(self.updated_ms), "updated_by": self.updated_by,
            "audit_rate": float(self.audit_rate), "cuped_metrics": list(self.cuped_metrics),
            "cuped_lookback_days": int(self.cuped_lookback_days),
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "ExperimentConfig":
        """The model of a decoded ``ExperimentConfig`` record (not validated: see :meth:`validate`)."""
        return cls(
            experiment_id=r["experiment_id"], tenant_id=r["tenant_id"], agent_id=r["agent_id"],
            variants=tuple(VariantSpec(v["name"], v["model_version"], float(v["weight"]), bool(v.get("is_control"))) for v in r["variants"]),
            primary_metric=MetricSpec.from_record(r["primary_metric"]),
            guardrails=tuple(MetricSpec.from_record(g) for g in r.get("guardrails") or ()),
            alpha=float(r.get("alpha", 0.05)), min_samples_per_arm=int(r.get("min_samples_per_arm", 100)),
            salt=r.get("salt") or "", unit_type=r.get("unit_type") or "user", name=r.get("name") or "",
            status=r.get("status") or "draft", config_version=int(r.get("config_version", 1)),
            updated_ms=int(r["updated_ms"]), updated_by=r.get("updated_by") or "", event_id=r.get("event_id") or "",
            audit_rate=float(r.get("audit_rate") or 0.0), cuped_metrics=tuple(r.get("cuped_metrics") or ()),
            cuped_lookback_days=int(r.get("cuped_lookback_days") or 28),
        )

    # -- changes (each returns the next version) -------------------------------------
    def _next(self, by: str, **changes: Any) -> "ExperimentConfig":
        nxt = replace(self, config_version=self.config_version + 1, updated_ms=max(_now_ms(), self.updated_ms + 1),
                      updated_by=by, event_id="", **changes)
        return nxt.validate()

    def transition(self, status: Status, by: str) -> "ExperimentConfig":
        """The next version with ``status``; raises :class:`TransitionError` if not allowed."""
        if status not in _TRANSITIONS.get(self.status, frozenset()):
            raise TransitionError(f"experiment {self.experiment_id} is {self.status}: cannot go to {status}")
        return self._next(by, status=status)

    def start(self, by: str) -> "ExperimentConfig":
        return self.transition("running", by)

    def pause(self, by: str) -> "ExperimentConfig":
        return self.transition("paused", by)

    def resume(self, by: str) -> "ExperimentConfig":
        if self.status != "paused":
            raise TransitionError(f"experiment {self.experiment_id} is {self.status}, not paused")
        return self.transition("running", by)

    def stop(self, by: str) -> "ExperimentConfig":
        return self.transition("stopped", by)

    def rollback(self, by: str) -> "ExperimentConfig":
        """All traffic back to the control (weights 1 / 0), status ``rolled_back``."""
        if "rolled_back" not in _TRANSITIONS.get(self.status, frozenset()):
            raise TransitionError(f"experiment {self.experiment_id} is {self.status}: cannot roll back")
        variants = tuple(replace(v, weight=1.0 if v.is_control else 0.0) for v in self.variants)
        return self._next(by, status="rolled_back", variants=variants)

    def promote(self, winner: str, by: str) -> "ExperimentConfig":
        """All traffic to ``winner`` (weights 1 / 0), status ``concluded``."""
        self.variant(winner)
        if "concluded" not in _TRANSITIONS.get(self.status, frozenset()):
            raise TransitionError(f"experiment {self.experiment_id} is {self.status}: cannot promote a winner")
        variants = tuple(replace(v, weight=1.0 if v.name == winner else 0.0) for v in self.variants)
        return self._next(by, status="concluded", variants=variants)

    def with_weights(self, weights: dict[str, float], by: str) -> "ExperimentConfig":
        """The next version with new weights (a ramp-up); only while draft, running or paused."""
        if self.status in TERMINAL:
            raise TransitionError(f"experiment {self.experiment_id} is {self.status}: weights are final")
        unknown = set(weights) - {v.name for v in self.variants}
        if unknown:
            raise ExperimentConfigError("variants", f"no variant(s) {sorted(unknown)}")
        return self._next(by, variants=tuple(replace(v, weight=float(weights.get(v.name, v.weight))) for v in self.variants))
