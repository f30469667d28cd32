"""The experiments processor's logic, without Kafka: what the Faust agents call.

Three steps, each a pure function over JSON-ready state (the Faust tables hold it):

1. :func:`unit_observations` — an Outcome or an Experience with an assignment
   becomes one :class:`UnitObservation` (the unit's values of the experiment's metrics);
   :func:`feedback_observation` — a Feedback joined to its trace's assignment (which
   :func:`rating_assignment` says to remember) becomes one for the ``rating`` metric.
2. :func:`apply_observation` — on the unit's partition: the unit's own state
   (first value of a proportion metric, running mean of a mean metric) and that
   partition's *partial* statistics per variant and metric (units, not events).
3. :func:`analyse` — on the experiment's partition: the partials of all partitions
   summed (the statistics are mergeable), the always-valid tests with their running
   state, the SRM check, :func:`agentgym.processors.experiments.decisions.decide`, and the
   records to write (:func:`snapshot_records`, :func:`decision_record`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.processors.experiments.decisions import DecisionOutcome, decide
from agentgym.processors.experiments.metrics import EXPOSURE, METRICS, RATING_SOURCES, Source, observations
from agentgym.processors.stats import (
    GuardrailSpec,
    MetricAnalysis,
    ProportionStatistic,
    SampleMeanStatistic,
    SequentialState,
    SrmResult,
    SrmState,
    analyse_metric,
    capped,
    mixing_rho,
    srm_test,
)

__all__ = [
    "UnitObservation",
    "unit_observations",
    "rating_assignment",
    "feedback_observation",
    "apply_observation",
    "merge_partials",
    "ExperimentState",
    "ExperimentAnalysis",
    "analyse",
    "snapshot_records",
    "decision_record",
    "applied_config",
]

Stat = ProportionStatistic | SampleMeanStatistic
_SEEN_TRACES = 32  # experience traces remembered per unit, against redelivered duplicates


@dataclass(frozen=True, slots=True)
class UnitObservation:
    """What one event says about one unit of one experiment.

    Attributes:
        tenant_id, experiment_id, unit_id, variant: whose and where.
        source: ``outcome``, ``experience`` or ``feedback``.
        trace_id: the trace the event belongs to (a revised outcome has the same).
        values: metric name -> the event's value.
        event_id: the feedback's event id (redelivered feedback is not counted twice); else empty.
    """

    tenant_id: str
    experiment_id: str
    unit_id: str
    variant: str
    source: Source
    trace_id: str
    values: dict[str, float] = field(default_factory=dict)
    event_id: str = ""

    @property
    def key(self) -> str:
        """The unit's key (its partition): JSON ``[tenant, experiment, unit]``."""
        return json.dumps([self.tenant_id, self.experiment_id, self.unit_id])

    def to_json(self) -> bytes:
        return json.dumps({"t": self.tenant_id, "e": self.experiment_id, "u": self.unit_id, "v": self.variant,
                           "s": self.source, "tr": self.trace_id, "x": self.values, "id": self.event_id}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "UnitObservation":
        d = json.loads(data)
        return cls(d["t"], d["e"], d["u"], d["v"], d["s"], d["tr"], {k: float(v) for k, v in d["x"].items()}, d.get("id", ""))


def unit_observations(source: Source, record: Mapping[str, Any], config: ExperimentConfig | None) -> UnitObservation | None:
    """The observation an Outcome or Experience makes for its experiment, or None.

    None when the record has no assignment, the experiment is unknown, the unit was not
    served while the experiment was running (paused traffic all goes to the control and
    would only bias the split), the variant is not one of the experiment's, or the
    tenant differs.

    A unit is counted under the status that *served* it, which Experience v3 and
    Outcome v2 carry (``experiment_status``): traffic served while paused stays out
    after a resume, and traffic served while running still counts when it arrives
    after a pause. Events from older writers carry no status; for them the live
    status decides, as before.
    """
    if source == "outcome":
        experiment_id, variant, unit_id = record.get("experiment_id"), record.get("variant"), record.get("unit_id")
        served = record.get("experiment_status") or ""
    else:
        a = record.get("assignment") or {}
        experiment_id, variant, unit_id = a.get("experiment_id"), a.get("variant"), a.get("unit_id")
        served = a.get("experiment_status") or ""
    if not (experiment_id and variant and unit_id) or config is None or config.experiment_id != experiment_id:
        return None
    if record.get("tenant_id") != config.tenant_id:
        return None
    if served:
        if served != "running" or config.status not in ("running", "paused"):
            return None
    elif config.status != "running":
        return None
    if variant not in {v.name for v in config.variants}:
        return None
    values = observations(source, dict(record), {m.name for m in config.metrics})
    return UnitObservation(config.tenant_id, experiment_id, unit_id, variant, source, str(record.get("trace_id", "")), values)


def rating_assignment(experience: Mapping[str, Any], config: ExperimentConfig | None) -> dict[str, str] | None:
    """The assignment to remember for ``experience``'s trace, so later feedback can be joined to it.

    Only when the experience would be observed (:func:`unit_observations`) and the
    experiment has a ``rating`` metric: ``{"t": tenant, "e": experiment, "v": variant,
    "u": unit}`` and ``"s"``: the status that served it, when the SDK recorded it;
    None otherwise (nothing to remember).
    """
    if config is None or all(m.name != "rating" for m in config.metrics):
        return None
    obs = unit_observations("experience", experience, config)
    if obs is None:
        return None
    out = {"t": obs.tenant_id, "e": obs.experiment_id, "v": obs.variant, "u": obs.unit_id}
    served = (experience.get("assignment") or {}).get("experiment_status")
    if served:
        out["s"] = served
    return out


def feedback_observation(
    feedback: Mapping[str, Any], assignment: Mapping[str, str] | None, config: ExperimentConfig | None,
    sources: Iterable[str] = RATING_SOURCES,
) -> UnitObservation | None:
    """The ``rating`` observation of one Feedback on a trace whose assignment is known, or None.

    Args:
        feedback: the Feedback record.
        assignment: :func:`rating_assignment` of the trace's experience (None: unknown).
        config: the live configuration of the assignment's experiment.
        sources: the feedback sources that count (default: human ratings only).

    None when the assignment is unknown, the experiment is not running or has no
    ``rating`` metric, the tenant differs, the source does not count, or the feedback
    has no rating. The value is ``rating / rating_scale``.
    """
    if assignment is None or config is None or config.experiment_id != assignment.get("e"):
        return None
    # the trace was counted under the status that served it (see unit_observations)
    live = config.status in ("running", "paused") if assignment.get("s") == "running" else config.status == "running"
    if not live or feedback.get("tenant_id") != config.tenant_id or assignment.get("t") != config.tenant_id:
        return None
    if all(m.name != "rating" for m in config.metrics) or feedback.get("source", "human") not in set(sources):
        return None
    if assignment.get("v") not in {v.name for v in config.variants}:
        return None
    values = observations("feedback", dict(feedback), {"rating"})
    if not values:
        return None
    return UnitObservation(config.tenant_id, config.experiment_id, assignment["u"], assignment["v"], "feedback",
                           str(feedback.get("trace_id", "")), values, str(feedback.get("event_id", "")))


def _stat(kind: str, d: Mapping[str, Any] | None) -> Stat:
    if kind == "proportion":
        return ProportionStatistic(int((d or {}).get("n", 0)), int((d or {}).get("s", 0)))
    return SampleMeanStatistic(int((d or {}).get("n", 0)), float((d or {}).get("s", 0.0)), float((d or {}).get("ss", 0.0)))


def _dump(stat: Stat) -> dict[str, Any]:
    if isinstance(stat, ProportionStatistic):
        return {"n": stat.n, "s": stat.successes}
    return {"n": stat.n, "s": stat.sum, "ss": stat.sum_squares}


def _kind(metric: str) -> str:
    return "proportion" if metric == EXPOSURE else METRICS[metric].kind


def apply_observation(
    unit: dict[str, Any] | None, partial: dict[str, Any] | None, obs: UnitObservation, config: ExperimentConfig
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Folds one observation into the unit's state and its partition's partial statistics.

    Unit state (JSON): ``{"v": first variant, "m": {metric: {...}}, "x": crossovers,
    "seen": latest experience trace ids}``:
    a proportion metric keeps ``{"tr": trace, "y": value}`` of the unit's first
    observation (a revision of that trace replaces the value), a mean metric keeps
    ``{"c": count, "s": sum of capped values}``. Partial (JSON):
    ``{"arms": {variant: {metric: statistic}}}``, with the pseudo-metric ``__units__``
    counting units for the SRM check.

    Returns:
        (unit state, partial, whether the partial changed).
    """
    unit = unit or {"v": obs.variant, "m": {}}
    partial = partial or {"arms": {}}
    if unit["v"] != obs.variant:
        # the unit was counted in another variant (a weight change moved it): keep it there
        unit["x"] = int(unit.get("x", 0)) + 1
        return unit, partial, False
    arms = partial.setdefault("arms", {}).setdefault(obs.variant, {})
    metrics = unit.setdefault("m", {})
    caps = {m.name: m.cap for m in config.metrics}
    changed = False
    # an experience or feedback redelivered after a crash (at-least-once) must not enter a unit's
    # mean twice: remember the unit's latest experience traces and feedback event ids (redelivery
    # concerns the latest events)
    seen: list[str] = unit.setdefault("seen", [])
    seen_id = obs.trace_id if obs.source == "experience" else f"f:{obs.event_id}" if obs.source == "feedback" and obs.event_id else None
    duplicate = seen_id is not None and seen_id in seen
    if seen_id is not None and not duplicate:
        seen.append(seen_id)
        del seen[:-_SEEN_TRACES]
    if EXPOSURE not in metrics:
        metrics[EXPOSURE] = 1
        arms[EXPOSURE] = _dump(_stat("proportion", arms.get(EXPOSURE)).add(True))
        changed = True
    for name, value in obs.values.items():
        kind = _kind(name)
        stat = _stat(kind, arms.get(name))
        mine = metrics.get(name)
        if kind == "proportion":
            y = 1 if value >= 0.5 else 0
            if mine is None:
                metrics[name] = {"tr": obs.trace_id, "y": y}
                stat = stat.add(y)  # type: ignore[union-attr]
            elif mine["tr"] == obs.trace_id and mine["y"] != y:  # a revised label of the unit's first outcome
                assert isinstance(stat, ProportionStatistic)
                stat = ProportionStatistic(stat.n, stat.successes + y - mine["y"])
                mine["y"] = y
            else:
                continue
        else:
            if duplicate:
                continue
            x = capped(value, caps.get(name))
            assert isinstance(stat, SampleMeanStatistic)
            if mine is None:
                metrics[name] = {"c": 1, "s": x}
                stat = stat.add(x)
            else:
                old = mine["s"] / mine["c"]
                mine["c"] += 1
                mine["s"] += x
                stat = stat.replace(old, mine["s"] / mine["c"])  # the unit's mean moves; n stays
        arms[name] = _dump(stat)
        changed = True
    return unit, partial, changed


def merge_partials(partials: Iterable[Mapping[str, Any]], config: ExperimentConfig) -> dict[str, dict[str, Stat]]:
    """variant -> metric -> the statistic summed over every partition's partial (exact: they are mergeable)."""
    names = [EXPOSURE, *(m.name for m in config.metrics)]
    totals: dict[str, dict[str, Stat]] = {v.name: {n: _stat(_kind(n), None) for n in names} for v in config.variants}
    for part in partials:
        for variant, metrics in (part.get("arms") or {}).items():
            if variant not in totals:
                continue
            for name, d in metrics.items():
                if name in totals[variant]:
                    totals[variant][name] = totals[variant][name] + _stat(_kind(name), d)  # type: ignore[operator]
    return totals


@dataclass(slots=True)
class ExperimentState:
    """What the processor remembers about an experiment between looks (JSON in a table).

    Attributes:
        rho: the mixing parameter, fixed at the first look for the experiment's life.
        sequential: metric -> variant -> running :class:`SequentialState` (as dict).
        guardrails: metric -> variant -> running (p_holds, p_breached).
        srm: the sequential SRM test's :class:`SrmState` (as dict).
        looks: snapshots taken.
        decided: the decision taken, with the config version it was taken at (None: none yet).
    """

    rho: float | None = None
    sequential: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    guardrails: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    srm: dict[str, Any] = field(default_factory=dict)
    looks: int = 0
    decided: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rho": self.rho, "sequential": self.sequential, "guardrails": self.guardrails, "srm": self.srm,
                "looks": self.looks, "decided": self.decided}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ExperimentState":
        d = d or {}
        return cls(d.get("rho"), dict(d.get("sequential") or {}), dict(d.get("guardrails") or {}), dict(d.get("srm") or {}),
                   int(d.get("looks", 0)), d.get("decided"))


@dataclass(frozen=True, slots=True)
class ExperimentAnalysis:
    """One look at a whole experiment."""

    config: ExperimentConfig
    primary: MetricAnalysis
    guardrails: list[MetricAnalysis]
    srm: SrmResult
    decision: DecisionOutcome
    rho: float
    look: int
    totals: Mapping[str, Mapping[str, Stat]]

    def evidence(self) -> dict[str, Any]:
        """Estimates, intervals, p-values and n of every comparison, the SRM test: JSON-ready."""
        def metric(a: MetricAnalysis) -> dict[str, Any]:
            return {
                "arms": {v: {"n": s.n, "mean": _num(s.mean), "variance": _num(s.variance)} for v, s in a.arms.items()},
                "comparisons": [c.to_dict() for c in a.comparisons],
            }

        return {
            "experiment_id": self.config.experiment_id, "config_version": self.config.config_version,
            "alpha": self.config.alpha, "rho": self.rho, "look": self.look,
            "min_samples_per_arm": self.config.min_samples_per_arm,
            "primary_metric": self.primary.metric,
            "metrics": {a.metric: metric(a) for a in [self.primary, *self.guardrails]},
            "srm": self.srm.to_dict(),
        }


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _json_safe(value: Any) -> Any:
    """Non-finite floats to None (JSON has no infinity), recursively."""
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def analyse(
    config: ExperimentConfig,
    totals: Mapping[str, Mapping[str, Stat]],
    state: ExperimentState,
    *,
    mixing_horizon: float = 10.0,
    correction: str = "holm",
    srm_alpha: float = 0.001,
    srm_concentration: float = 100.0,
) -> tuple[ExperimentAnalysis, ExperimentState]:
    """One look: every metric's tests, the SRM check and the decision; returns the new state.

    Args:
        config: the live configuration.
        totals: :func:`merge_partials` of all partitions.
        state: the state after the previous look.
        mixing_horizon: ρ is tuned (once) for ``mixing_horizon × min_samples_per_arm``
            units per arm (:func:`agentgym.processors.stats.mixing_rho`).
        correction: ``holm`` or ``bonferroni`` across treatments.
        srm_alpha, srm_concentration: the SRM test's level and Dirichlet prior k.
    """
    rho = state.rho
    if rho is None:  # fixed for the experiment's life from here on
        rho = mixing_rho(mixing_horizon * config.min_samples_per_arm * len(config.variants), config.alpha)
    control = config.control.name
    new_seq: dict[str, dict[str, dict[str, Any]]] = {}
    new_guard: dict[str, dict[str, list[float]]] = {}
    analyses: list[MetricAnalysis] = []
    for spec in config.metrics:
        stats = {v.name: totals[v.name][spec.name] for v in config.variants if v.name in totals}
        is_guardrail = spec is not config.primary_metric
        prev_seq = {v: SequentialState.from_dict(d) for v, d in state.sequential.get(spec.name, {}).items()}
        prev_guard = {v: (float(p[0]), float(p[1])) for v, p in state.guardrails.get(spec.name, {}).items()}
        a = analyse_metric(
            spec.name, stats, control, rho=rho, alpha=config.alpha, min_samples_per_arm=config.min_samples_per_arm,
            correction=correction,  # type: ignore[arg-type]
            states=prev_seq,
            guardrail=GuardrailSpec(spec.limit or 0.0, spec.direction) if is_guardrail else None,
            guardrail_states=prev_guard,
        )
        analyses.append(a)
        new_seq[spec.name] = {c.variant: c.state.to_dict() for c in a.comparisons}
        if is_guardrail:
            new_guard[spec.name] = {c.variant: [c.guardrail.p_value_holds, c.guardrail.p_value_breached]
                                    for c in a.comparisons if c.guardrail is not None}
    counts = [totals[v.name][EXPOSURE].n if v.name in totals else 0 for v in config.variants]
    srm, srm_state = srm_test(counts, [v.weight for v in config.variants], alpha=srm_alpha,
                              concentration=srm_concentration, state=SrmState.from_dict(state.srm) if state.srm else None)
    primary, guardrails = analyses[0], analyses[1:]
    decision = decide(config, primary, guardrails, srm)
    new_state = ExperimentState(rho, new_seq, new_guard, srm_state.to_dict(), state.looks + 1, state.decided)
    return ExperimentAnalysis(config, primary, guardrails, srm, decision, rho, new_state.looks, totals), new_state


def _status(a: MetricAnalysis, analysis: ExperimentAnalysis) -> str:
    if analysis.config.status != "running":
        return analysis.config.status
    if analysis.decision.action != "continue":
        return analysis.decision.action
    if any(not c.sequential.ok for c in a.comparisons):
        return "insufficient_data"
    return "running"


def snapshot_records(analysis: ExperimentAnalysis, now_ms: int) -> list[dict[str, Any]]:
    """One ``StatsSnapshot`` record per metric (the primary first), for ``gym-experiment-stats-v1``."""
    config = analysis.config
    out = []
    for role, a in [("primary", analysis.primary), *(("guardrail", g) for g in analysis.guardrails)]:
        spec = next(m for m in config.metrics if m.name == a.metric)
        arms = []
        for v in config.variants:
            st = analysis.totals.get(v.name, {}).get(a.metric)
            arms.append({"variant": v.name, "n": st.n if st else 0, "sum": st.sum if st else 0.0,
                         "sum_squares": st.sum_squares if st else 0.0})
        comparisons: list[dict[str, Any]] = []
        details: dict[str, dict[str, Any]] = {}
        for c in a.comparisons:
            abs_ = c.sequential.absolute
            rel = c.sequential.relative
            comparisons.append({
                "variant": c.variant, "control": c.control,
                "estimate": abs_.estimate if abs_ else math.nan,
                "ci_low": c.state.interval.low, "ci_high": c.state.interval.high,
                "relative_estimate": rel.estimate if rel else None,
                "relative_ci_low": c.state.relative_interval.low if rel else None,
                "relative_ci_high": c.state.relative_interval.high if rel else None,
                "p_value": c.state.p_value,
                "fixed_horizon_p_value": c.fixed_horizon.p_value if c.fixed_horizon.ok else None,
            })
            details[c.variant] = {
                "reason": c.sequential.reason.value, "adjusted_p_value": c.adjusted_p_value,
                "look_p_value": c.sequential.p_value, "z": abs_.z if abs_ else None,
                "fixed_horizon_ci": [_num(c.fixed_horizon.absolute.interval.low), _num(c.fixed_horizon.absolute.interval.high)]
                if c.fixed_horizon.absolute else None,
            }
            if c.guardrail is not None:
                details[c.variant]["guardrail"] = c.guardrail.to_dict()
        out.append({
            "event_id": f"{config.experiment_id}:{a.metric}:{analysis.look}:{now_ms}",
            "tenant_id": config.tenant_id, "experiment_id": config.experiment_id, "timestamp_ms": now_ms,
            "metric": a.metric, "arms": arms, "comparisons": comparisons,
            "srm_p_value": analysis.srm.p_value, "status": _status(a, analysis),
            "message": analysis.decision.reason if role == "primary" else f"{spec.direction}, limit {spec.limit}",
            "role": role, "config_version": config.config_version, "alpha": config.alpha, "mixing_rho": analysis.rho,
            "srm_chi_square_p_value": analysis.srm.chi_square_p_value,
            "srm_log_bayes_factor": analysis.srm.log_bayes_factor if math.isfinite(analysis.srm.log_bayes_factor) else None,
            "details_json": json.dumps(_json_safe({"look": analysis.look, "comparisons": details,
                                                   "decision": analysis.decision.action})),
        })
    return out


def decision_record(analysis: ExperimentAnalysis, now_ms: int) -> dict[str, Any]:
    """The ``Decision`` record of a look whose decision is not ``continue``."""
    config, d = analysis.config, analysis.decision
    return {
        "event_id": f"{config.experiment_id}:v{config.config_version}:{d.action}",  # one per config version
        "tenant_id": config.tenant_id, "experiment_id": config.experiment_id, "timestamp_ms": now_ms,
        "action": d.action, "winner": d.winner, "reason": d.reason,
        "evidence_json": json.dumps(_json_safe(analysis.evidence())),
        "decided_by": "auto",
    }


def applied_config(config: ExperimentConfig, decision: DecisionOutcome, by: str = "agentgym-experiments") -> ExperimentConfig | None:
    """The next configuration that applies ``decision`` (None for ``continue``), with a deterministic event id."""
    from dataclasses import replace

    if decision.action == "rollback":
        nxt = config.rollback(by)
    elif decision.action == "promote_winner" and decision.winner:
        nxt = config.promote(decision.winner, by)
    else:
        return None
    return replace(nxt, event_id=f"{config.experiment_id}:v{nxt.config_version}:{decision.action}")
