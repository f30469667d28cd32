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

Two refinements of a metric's estimate, each configured per experiment:

* **Audit sample** (``audit_rate > 0``): a random sample of units, chosen by a hash of the
  unit (:func:`in_audit_sample`), gets gold labels from reviewers (audit Feedback,
  :func:`audit_observation`). ``success_rate`` is then estimated per arm by the
  prediction-powered rectified mean (:mod:`agentgym.processors.stats.ppi`): the labels'
  mean plus the audit sample's mean correction; the tests and the decision use it, and
  snapshots carry the plain labelled comparisons beside it.
* **CUPED** (``cuped_metrics``): a unit's observation may carry its pre-experiment value
  of a metric (``covariates``); the metric's per-unit (value, covariate) moments are kept
  and the tests use the CUPED-adjusted summaries (:mod:`agentgym.processors.stats.cuped`),
  with the variance reduction in the snapshot. A unit without a covariate counts with
  covariate 0 (still measured before the treatment, so the adjustment stays unbiased).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.processors.experiments.decisions import DecisionOutcome, decide
from agentgym.processors.experiments.metrics import (
    AUDITED_METRIC,
    EXPOSURE,
    METRICS,
    RATING_SOURCES,
    Source,
    gold_label,
    observations,
)
from agentgym.processors.stats import (
    ArmSummary,
    GuardrailSpec,
    MetricAnalysis,
    PpiEstimate,
    PredictionPoweredStatistic,
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    SequentialState,
    SrmResult,
    SrmState,
    analyse_metric,
    capped,
    cuped_adjust,
    mixing_rho,
    ppi_estimate,
    srm_test,
)
from agentgym.producers.assignment import unit_bucket

__all__ = [
    "UnitObservation",
    "unit_observations",
    "rating_assignment",
    "feedback_observation",
    "in_audit_sample",
    "history_key",
    "through_history",
    "audit_observation",
    "GOLD",
    "AUDIT",
    "apply_observation",
    "merge_partials",
    "ExperimentState",
    "ExperimentAnalysis",
    "analyse",
    "snapshot_records",
    "decision_record",
    "applied_config",
]

Stat: TypeAlias = "ProportionStatistic | SampleMeanStatistic | PredictionPoweredStatistic | RegressionAdjustedStatistic"
_SEEN_TRACES = 32  # experience traces remembered per unit, against redelivered duplicates
_GOLDS = 8  # audit labels remembered per unit (by trace), waiting for the trace's label
GOLD = "__gold__"  # an audit observation's value: the gold label of its trace
AUDIT = "__audit__"  # the partials' pseudo-metric: (label, gold) pairs of the audit sample
_CUPED = "#cuped"  # suffix of a metric's (value, covariate) moments in the partials
_LABELLED = "#labelled"  # suffix of a corrected metric's plain running state
_MIN_AUDIT = 30  # audited units per arm before the corrected estimate makes an inference


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
    covariates: dict[str, float] = field(default_factory=dict)
    timestamp_ms: int = 0

    @property
    def key(self) -> str:
        """The unit's key (its partition): JSON ``[tenant, experiment, unit]``."""
        return json.dumps([self.tenant_id, self.experiment_id, self.unit_id])

    def to_json(self) -> bytes:
        return json.dumps({"t": self.tenant_id, "e": self.experiment_id, "u": self.unit_id, "v": self.variant,
                           "s": self.source, "tr": self.trace_id, "x": self.values, "id": self.event_id,
                           **({"c": self.covariates} if self.covariates else {}),
                           **({"ts": self.timestamp_ms} if self.timestamp_ms else {})}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "UnitObservation":
        d = json.loads(data)
        return cls(d["t"], d["e"], d["u"], d["v"], d["s"], d["tr"], {k: float(v) for k, v in d["x"].items()}, d.get("id", ""),
                   {k: float(v) for k, v in (d.get("c") or {}).items()}, int(d.get("ts", 0)))


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
    return UnitObservation(config.tenant_id, experiment_id, unit_id, variant, source, str(record.get("trace_id", "")), values,
                           timestamp_ms=int(record.get("timestamp_ms") or 0))


def rating_assignment(experience: Mapping[str, Any], config: ExperimentConfig | None) -> dict[str, str] | None:
    """The assignment to remember for ``experience``'s trace, so later feedback can be joined to it.

    Only when the experience would be observed (:func:`unit_observations`) and the
    experiment has a ``rating`` metric, or its unit is in the audit sample: ``{"t": tenant, "e": experiment, "v": variant,
    "u": unit}`` and ``"s"``: the status that served it, when the SDK recorded it;
    None otherwise (nothing to remember).
    """
    if config is None:
        return None
    audited = config.audit_rate > 0 and any(m.name == AUDITED_METRIC for m in config.metrics)
    if not audited and all(m.name != "rating" for m in config.metrics):
        return None
    obs = unit_observations("experience", experience, config)
    if obs is None:
        return None
    if all(m.name != "rating" for m in config.metrics) and not in_audit_sample(config, obs.unit_id):
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


_DAY_MS = 86_400_000
_HISTORY_DAYS = 120  # days of a unit's history kept (the longest look-back window CUPED can use)
_HISTORY_EXPERIMENTS = 64  # experiments whose first exposure is remembered per unit


def history_key(obs: UnitObservation) -> str:
    """The key of a unit's history across experiments: JSON ``[tenant, unit]``."""
    return json.dumps([obs.tenant_id, obs.unit_id])


def through_history(
    history: dict[str, Any] | None, obs: UnitObservation, config: ExperimentConfig | None,
) -> tuple[dict[str, Any], UnitObservation]:
    """Attaches the unit's pre-experiment covariates to ``obs`` and records ``obs`` in the unit's history.

    History (JSON, per tenant and unit, across experiments): ``{"d": {metric: {day: [count,
    sum]}}, "f": {experiment: first exposure ms}}``, daily buckets of every value the unit
    was observed with (:data:`_HISTORY_DAYS` days kept). For each metric in the
    experiment's ``cuped_metrics`` the covariate is the mean of the unit's values over the
    ``cuped_lookback_days`` whole days before the day of its first observation in this
    experiment — measured before the treatment, so CUPED stays unbiased — and absent
    (covariate 0 in the engine) when the unit has none. The history covers the unit's runs
    that were observed at all, i.e. runs of earlier experiments. A redelivered event may be
    recorded twice: that only adds noise to a later covariate, never bias.
    """
    hist = history or {"d": {}, "f": {}}
    ts = obs.timestamp_ms
    first = hist.setdefault("f", {})
    if obs.experiment_id not in first:
        first[obs.experiment_id] = ts
        for stale in list(first)[:-_HISTORY_EXPERIMENTS]:
            del first[stale]
    covariates: dict[str, float] = {}
    if config is not None and config.cuped_metrics:
        day0 = int(first[obs.experiment_id]) // _DAY_MS
        days = {str(d) for d in range(day0 - config.cuped_lookback_days, day0)}
        for name in config.cuped_metrics:
            buckets = [b for d, b in (hist["d"].get(name) or {}).items() if d in days]
            count = sum(int(b[0]) for b in buckets)
            if count:
                covariates[name] = sum(float(b[1]) for b in buckets) / count
    if ts > 0:
        day = ts // _DAY_MS
        for name, value in obs.values.items():
            if name not in METRICS:
                continue
            per_day = hist["d"].setdefault(name, {})
            bucket = per_day.setdefault(str(day), [0, 0.0])
            bucket[0] += 1
            bucket[1] += float(value)
            for old in [d for d in per_day if int(d) < day - _HISTORY_DAYS]:
                del per_day[old]
    if covariates:
        obs = UnitObservation(obs.tenant_id, obs.experiment_id, obs.unit_id, obs.variant, obs.source, obs.trace_id,
                              obs.values, obs.event_id, {**obs.covariates, **covariates}, obs.timestamp_ms)
    return hist, obs


def in_audit_sample(config: ExperimentConfig, unit_id: str) -> bool:
    """Whether ``unit_id`` is in the experiment's audit sample: its audit bucket < ``audit_rate``.

    The bucket is the assignment hash (:func:`agentgym.producers.assignment.unit_bucket`)
    of the unit under the salt ``<salt>:audit``: uniform, independent of the unit's
    variant bucket (another salt) and of anything that happens in the run, so the sample
    is a Bernoulli(``audit_rate``) sample within every arm (stratified by arm: each arm's
    share of the sample is its share of the units).
    """
    return config.audit_rate > 0 and unit_bucket(f"{config.salt}:audit", unit_id) < config.audit_rate


def audit_observation(
    feedback: Mapping[str, Any], assignment: Mapping[str, str] | None, config: ExperimentConfig | None,
) -> UnitObservation | None:
    """The gold-label observation of a reviewer's audit Feedback on a trace of the audit sample, or None.

    None unless the feedback is an audit label (:func:`agentgym.processors.experiments.metrics.is_audit_label`)
    with a value, the trace's assignment is known, the experiment is live (as for
    :func:`feedback_observation`) with ``audit_rate > 0`` and the audited metric, and the
    unit is in the audit sample (a marked label on any other unit is not a random sample).
    """
    if assignment is None or config is None or config.experiment_id != assignment.get("e") or config.audit_rate <= 0:
        return None
    live = config.status in ("running", "paused") if assignment.get("s") == "running" else config.status == "running"
    if not live or feedback.get("tenant_id") != config.tenant_id or assignment.get("t") != config.tenant_id:
        return None
    if all(m.name != AUDITED_METRIC for m in config.metrics) or assignment.get("v") not in {v.name for v in config.variants}:
        return None
    y = gold_label(dict(feedback))
    if y is None or not in_audit_sample(config, assignment["u"]):
        return None
    return UnitObservation(config.tenant_id, config.experiment_id, assignment["u"], assignment["v"], "feedback",
                           str(feedback.get("trace_id", "")), {GOLD: y}, str(feedback.get("event_id", "")))


def _stat(kind: str, d: Mapping[str, Any] | None) -> Stat:
    if kind == "audit":  # binary labels and gold labels: every square is the value itself
        a = d or {}
        m, sf, sy, sfy = int(a.get("n", 0)), float(a.get("sf", 0)), float(a.get("sy", 0)), float(a.get("sfy", 0))
        return PredictionPoweredStatistic(m, sf, sf, m, sf, sf, sy, sy, sfy)
    if kind == "cuped":
        c = d or {}
        return RegressionAdjustedStatistic(int(c.get("n", 0)), float(c.get("sy", 0)), float(c.get("syy", 0)),
                                           float(c.get("sx", 0)), float(c.get("sxx", 0)), float(c.get("sxy", 0)))
    if kind == "proportion":
        return ProportionStatistic(int((d or {}).get("n", 0)), int((d or {}).get("s", 0)))
    return SampleMeanStatistic(int((d or {}).get("n", 0)), float((d or {}).get("s", 0.0)), float((d or {}).get("ss", 0.0)))


def _dump(stat: Stat) -> dict[str, Any]:
    if isinstance(stat, ProportionStatistic):
        return {"n": stat.n, "s": stat.successes}
    return {"n": stat.n, "s": stat.sum, "ss": stat.sum_squares}


def _kind(metric: str) -> str:
    if metric == AUDIT:
        return "audit"
    if metric.endswith(_CUPED):
        return "cuped"
    return "proportion" if metric == EXPOSURE else METRICS[metric].kind


def _move(d: dict[str, Any], sign: int, **values: float) -> None:
    """Adds (sign +1) or removes (-1) one unit's values from a JSON statistic."""
    d["n"] = int(d.get("n", 0)) + sign
    for k, v in values.items():
        d[k] = float(d.get(k, 0.0)) + sign * v


def _sync_audit(unit: dict[str, Any], arms: dict[str, Any]) -> bool:
    """Counts the unit's (label, gold) pair once the label of its first labelled trace and that trace's gold are known.

    The pair follows revisions of either; returns whether the partial changed.
    """
    label = (unit.get("m") or {}).get(AUDITED_METRIC)
    gold = (unit.get("g") or {}).get(label["tr"]) if label else None
    want = None if gold is None or label is None else (float(label["y"]), float(gold))
    have = (float(unit["a"][0]), float(unit["a"][1])) if unit.get("a") else None
    if want == have:
        return False
    d = arms.setdefault(AUDIT, {})
    if have is not None:
        _move(d, -1, sf=have[0], sy=have[1], sfy=have[0] * have[1])
    if want is not None:
        _move(d, +1, sf=want[0], sy=want[1], sfy=want[0] * want[1])
    unit["a"] = list(want) if want is not None else None
    return True


def _sync_cuped(arms: dict[str, Any], name: str, old: float | None, new: float, x: float) -> None:
    """Moves the unit's (value, covariate) pair in the metric's CUPED moments from ``old`` to ``new``."""
    d = arms.setdefault(name + _CUPED, {})
    if old is not None:
        _move(d, -1, sy=old, syy=old * old, sx=x, sxx=x * x, sxy=x * old)
    _move(d, +1, sy=new, syy=new * new, sx=x, sxx=x * x, sxy=x * new)


def _covariate(unit: dict[str, Any], obs: UnitObservation, name: str) -> float:
    """The unit's pre-experiment covariate of ``name``: fixed by its first observation of the metric (0 when unknown)."""
    fixed: dict[str, float] = unit.setdefault("cx", {})
    if name not in fixed:
        fixed[name] = float(obs.covariates.get(name, 0.0))
    return fixed[name]


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
        arms[EXPOSURE] = _dump(_stat("proportion", arms.get(EXPOSURE)).add(True))  # type: ignore[union-attr]
        changed = True
    cuped = set(config.cuped_metrics)
    for name, value in obs.values.items():
        if name == GOLD:  # a reviewer's gold label of one of the unit's traces (the latest one counts)
            golds: dict[str, float] = unit.setdefault("g", {})
            golds.pop(obs.trace_id, None)
            golds[obs.trace_id] = 1.0 if value >= 0.5 else 0.0
            for stale in list(golds)[:-_GOLDS]:
                del golds[stale]
            changed = _sync_audit(unit, arms) or changed
            continue
        if name not in METRICS:
            continue
        kind = _kind(name)
        stat = _stat(kind, arms.get(name))
        mine = metrics.get(name)
        if kind == "proportion":
            y = 1 if value >= 0.5 else 0
            old_y: float | None = None
            if mine is None:
                metrics[name] = {"tr": obs.trace_id, "y": y}
                stat = stat.add(y)  # type: ignore[union-attr]
            elif mine["tr"] == obs.trace_id and mine["y"] != y:  # a revised label of the unit's first outcome
                assert isinstance(stat, ProportionStatistic)
                stat = ProportionStatistic(stat.n, stat.successes + y - mine["y"])
                old_y = float(mine["y"])
                mine["y"] = y
            else:
                continue
            if name in cuped:
                _sync_cuped(arms, name, old_y, float(y), _covariate(unit, obs, name))
            if name == AUDITED_METRIC:
                _sync_audit(unit, arms)
        else:
            if duplicate:
                continue
            x = capped(value, caps.get(name))
            assert isinstance(stat, SampleMeanStatistic)
            old: float | None = None
            if mine is None:
                metrics[name] = {"c": 1, "s": x}
                stat = stat.add(x)
            else:
                old = mine["s"] / mine["c"]
                mine["c"] += 1
                mine["s"] += x
                stat = stat.replace(old, mine["s"] / mine["c"])  # the unit's mean moves; n stays
            if name in cuped:
                own = metrics[name]
                _sync_cuped(arms, name, old, own["s"] / own["c"], _covariate(unit, obs, name))
        arms[name] = _dump(stat)
        changed = True
    return unit, partial, changed


def merge_partials(partials: Iterable[Mapping[str, Any]], config: ExperimentConfig) -> dict[str, dict[str, Stat]]:
    """variant -> metric -> the statistic summed over every partition's partial (exact: they are mergeable)."""
    names = [EXPOSURE, *(m.name for m in config.metrics), *(c + _CUPED for c in config.cuped_metrics)]
    if config.audit_rate > 0 and any(m.name == AUDITED_METRIC for m in config.metrics):
        names.append(AUDIT)
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
    labelled: Mapping[str, MetricAnalysis] = field(default_factory=dict)
    estimators: Mapping[str, str] = field(default_factory=dict)
    audit: Mapping[str, PpiEstimate] = field(default_factory=dict)
    variance_reduction: Mapping[str, float] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        """Estimates, intervals, p-values and n of every comparison, the SRM test: JSON-ready."""
        def metric(a: MetricAnalysis) -> dict[str, Any]:
            out: dict[str, Any] = {
                "arms": {v: {"n": s.n, "mean": _num(s.mean), "variance": _num(s.variance)} for v, s in a.arms.items()},
                "comparisons": [c.to_dict() for c in a.comparisons],
                "estimator": self.estimators.get(a.metric, "labelled"),
            }
            if a.metric in self.labelled:
                out["labelled_comparisons"] = [c.to_dict() for c in self.labelled[a.metric].comparisons]
            if a.metric == AUDITED_METRIC and self.audit:
                out["prediction_powered"] = {v: e.to_dict() for v, e in self.audit.items()}
            if a.metric in self.variance_reduction:
                out["variance_reduction"] = _num(self.variance_reduction[a.metric])
            return out

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


def _ppi_summaries(config: ExperimentConfig, totals: Mapping[str, Mapping[str, Stat]]) -> dict[str, PpiEstimate]:
    """Each arm's prediction-powered estimate of the audited metric (empty: no audit sample)."""
    if config.audit_rate <= 0 or all(m.name != AUDITED_METRIC for m in config.metrics):
        return {}
    min_audit = max(2, min(_MIN_AUDIT, config.min_samples_per_arm))
    out = {}
    for v in config.variants:
        labels, pairs = totals.get(v.name, {}).get(AUDITED_METRIC), totals.get(v.name, {}).get(AUDIT)
        if not isinstance(labels, ProportionStatistic) or not isinstance(pairs, PredictionPoweredStatistic):
            continue
        s = float(labels.successes)
        m = min(pairs.m, labels.n)  # every audited unit is labelled (the pair needs its label)
        stat = PredictionPoweredStatistic(labels.n, s, s, m, pairs.sum_audit_label, pairs.sum_audit_label_squares,
                                          pairs.sum_gold, pairs.sum_gold_squares, pairs.sum_label_gold)
        out[v.name] = ppi_estimate(stat, min_audit=min_audit)
    return out


def _corrected(est: PpiEstimate) -> ArmSummary:
    """The summary the tests take: (N, θ̂, N·V̂); without an estimate, the audit count (below the burn-in) and no mean."""
    if est.ok:
        return est.summary()
    return ArmSummary(0 if est.n == 0 else est.m, math.nan, math.nan)


def _cuped_summaries(spec_name: str, config: ExperimentConfig,
                     totals: Mapping[str, Mapping[str, Stat]]) -> tuple[dict[str, ArmSummary], float] | None:
    """CUPED-adjusted summaries of a metric's arms and the variance reduction of the mean difference's variance.

    The reduction is ``1 − Σ_j v_adj,j/n_j ÷ Σ_j v_j/n_j`` over the arms (NaN before two units per arm).
    """
    if spec_name not in config.cuped_metrics:
        return None
    names = [v.name for v in config.variants]
    stats = [totals.get(n, {}).get(spec_name + _CUPED) for n in names]
    if not all(isinstance(st, RegressionAdjustedStatistic) for st in stats):
        return None
    ra = [st for st in stats if isinstance(st, RegressionAdjustedStatistic)]
    adjusted = cuped_adjust(ra)
    plain = [st.summary() for st in ra]
    before = sum(p.variance / p.n for p in plain if p.n)
    after = sum(a.variance / a.n for a in adjusted if a.n)
    reduction = 1.0 - after / before if before > 0 and math.isfinite(before) and math.isfinite(after) else math.nan
    return dict(zip(names, adjusted)), reduction


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
    labelled: dict[str, MetricAnalysis] = {}
    estimators: dict[str, str] = {}
    reductions: dict[str, float] = {}
    audit = _ppi_summaries(config, totals)
    for spec in config.metrics:
        stats = {v.name: totals[v.name][spec.name] for v in config.variants if v.name in totals}
        is_guardrail = spec is not config.primary_metric
        prev_seq = {v: SequentialState.from_dict(d) for v, d in state.sequential.get(spec.name, {}).items()}
        prev_guard = {v: (float(p[0]), float(p[1])) for v, p in state.guardrails.get(spec.name, {}).items()}
        summaries: dict[str, ArmSummary] | None = None
        if spec.name == AUDITED_METRIC and audit:
            # the decision uses the prediction-powered estimate whenever there is an audit sample
            summaries = {v: _corrected(audit[v]) if v in audit else ArmSummary(0, math.nan, math.nan) for v in stats}
            estimators[spec.name] = "prediction_powered"
        else:
            adjusted = _cuped_summaries(spec.name, config, totals)
            if adjusted is not None:
                summaries, reductions[spec.name] = adjusted
                estimators[spec.name] = "cuped"
        a = analyse_metric(
            spec.name, stats, control, rho=rho, alpha=config.alpha, min_samples_per_arm=config.min_samples_per_arm,
            correction=correction,  # type: ignore[arg-type]
            states=prev_seq,
            guardrail=GuardrailSpec(spec.limit or 0.0, spec.direction) if is_guardrail else None,
            guardrail_states=prev_guard,
            summaries=summaries,
        )
        analyses.append(a)
        new_seq[spec.name] = {c.variant: c.state.to_dict() for c in a.comparisons}
        if summaries is not None:  # the plain estimate beside it, with its own running state (not decided on)
            key = spec.name + _LABELLED
            plain = analyse_metric(
                spec.name, stats, control, rho=rho, alpha=config.alpha, min_samples_per_arm=config.min_samples_per_arm,
                correction=correction,  # type: ignore[arg-type]
                states={v: SequentialState.from_dict(d) for v, d in state.sequential.get(key, {}).items()},
            )
            labelled[spec.name] = plain
            new_seq[key] = {c.variant: c.state.to_dict() for c in plain.comparisons}
        if is_guardrail:
            new_guard[spec.name] = {c.variant: [c.guardrail.p_value_holds, c.guardrail.p_value_breached]
                                    for c in a.comparisons if c.guardrail is not None}
    counts = [totals[v.name][EXPOSURE].n if v.name in totals else 0 for v in config.variants]
    srm, srm_state = srm_test(counts, [v.weight for v in config.variants], alpha=srm_alpha,
                              concentration=srm_concentration, state=SrmState.from_dict(state.srm) if state.srm else None)
    primary, guardrails = analyses[0], analyses[1:]
    decision = decide(config, primary, guardrails, srm)
    new_state = ExperimentState(rho, new_seq, new_guard, srm_state.to_dict(), state.looks + 1, state.decided)
    return ExperimentAnalysis(config, primary, guardrails, srm, decision, rho, new_state.looks, totals,
                              labelled, estimators, audit, reductions), new_state


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
        comparisons = [_comparison_row(c) for c in a.comparisons]
        details: dict[str, dict[str, Any]] = {}
        for c in a.comparisons:
            abs_ = c.sequential.absolute
            details[c.variant] = {
                "reason": c.sequential.reason.value, "adjusted_p_value": c.adjusted_p_value,
                "look_p_value": c.sequential.p_value, "z": abs_.z if abs_ else None,
                "fixed_horizon_ci": [_num(c.fixed_horizon.absolute.interval.low), _num(c.fixed_horizon.absolute.interval.high)]
                if c.fixed_horizon.absolute else None,
            }
            if c.guardrail is not None:
                details[c.variant]["guardrail"] = c.guardrail.to_dict()
        extra: dict[str, Any] = {}
        if a.metric == AUDITED_METRIC and analysis.audit:
            extra["prediction_powered"] = {v: e.to_dict() for v, e in analysis.audit.items()}
        plain = analysis.labelled.get(a.metric)
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
                                                   "decision": analysis.decision.action, **extra})),
            "estimator": analysis.estimators.get(a.metric, "labelled"),
            "labelled_comparisons": [_comparison_row(c) for c in plain.comparisons] if plain else [],
            "audit_units": sum(e.m for e in analysis.audit.values()) if a.metric == AUDITED_METRIC else 0,
            "variance_reduction": _num(analysis.variance_reduction[a.metric]) if a.metric in analysis.variance_reduction else None,
        })
    return out


def _comparison_row(c: Any) -> dict[str, Any]:
    """One ``Comparison`` of a StatsSnapshot: this look's estimate, the running interval and p-value."""
    abs_ = c.sequential.absolute
    rel = c.sequential.relative
    return {
        "variant": c.variant, "control": c.control,
        "estimate": abs_.estimate if abs_ else math.nan,
        "ci_low": c.state.interval.low, "ci_high": c.state.interval.high,
        "relative_estimate": rel.estimate if rel else None,
        "relative_ci_low": c.state.relative_interval.low if rel else None,
        "relative_ci_high": c.state.relative_interval.high if rel else None,
        "p_value": c.state.p_value,
        "fixed_horizon_p_value": c.fixed_horizon.p_value if c.fixed_horizon.ok else None,
    }


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
