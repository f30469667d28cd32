"""Measures the labeller on a simulated stream with ground truth.

    python -m agentgym.processors.labelling.evaluate [--traces 6000] [--seeds 0 1 2] [--json]

The stream (:mod:`agentgym.processors.labelling.simulator`) runs through the same engine the
Faust agent uses, on a simulated clock, once per labeller configuration:

* ``rules (fallback unknown)`` — the production default without the model;
* ``rules (fallback base rate)`` — rules, and the agent's majority label with its
  base rate as confidence where no rule decides (the strongest rules-only baseline);
* ``rules + logistic regression`` / ``rules + hoeffding tree`` — the online model
  labels what the rules leave undecided.

Quality is measured on the traces *without* explicit human feedback (those are the
ones the labeller exists for), with each trace's final label:

* accuracy — share labelled correctly; ``unknown`` counts as wrong;
* Brier score — mean of (P(success) - y)^2, with P = 0.5 for ``unknown``
  (Brier, "Verification of forecasts expressed in terms of probability", 1950);
* ECE — expected calibration error over 10 equal-width confidence bins,
  sum_b (n_b / n) |accuracy_b - confidence_b| (Guo et al., "On Calibration of Modern
  Neural Networks", ICML 2017, eq. 3), over the traces given a success/failure label.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agentgym.processors.labelling.decision import Decision
from agentgym.processors.labelling.engine import InMemoryLabeller, LabellingEngine
from agentgym.processors.labelling.rules import RuleBook
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.labelling.simulator import SimConfig, SimStream, simulate

__all__ = ["LabelQuality", "EvaluationReport", "CONFIGURATIONS", "brier_score", "expected_calibration_error", "run_labeller", "evaluate", "main"]

# name -> rule overrides for every tenant
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "rules (fallback unknown)": {"model_enabled": False, "fallback": "unknown"},
    "rules (fallback base rate)": {"model_enabled": False, "fallback": "base_rate"},
    "rules + logistic regression": {"model_enabled": True, "model_kind": "logistic_regression", "fallback": "base_rate"},
    "rules + hoeffding tree": {"model_enabled": True, "model_kind": "hoeffding_tree", "fallback": "base_rate"},
}


def brier_score(p: Sequence[float], y: Sequence[bool]) -> float:
    """Mean squared error of probabilities of success; 0 is perfect, 0.25 is a coin."""
    return sum((pi - float(yi)) ** 2 for pi, yi in zip(p, y, strict=True)) / len(p) if p else 0.0


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE over equal-width bins of the predicted label's confidence (Guo et al. 2017, eq. 3)."""
    if not confidence:
        return 0.0
    sums: list[list[float]] = [[0.0, 0.0, 0.0] for _ in range(bins)]  # n, sum confidence, sum correct
    for c, ok in zip(confidence, correct, strict=True):
        b = min(bins - 1, int(c * bins))
        sums[b][0] += 1
        sums[b][1] += c
        sums[b][2] += float(ok)
    n = len(confidence)
    return sum(s[0] / n * abs(s[2] / s[0] - s[1] / s[0]) for s in sums if s[0])


@dataclass(frozen=True)
class LabelQuality:
    """Quality of one labeller configuration on the traces without explicit feedback.

    Attributes:
        n: traces evaluated.
        accuracy: share labelled correctly (``unknown`` counts as wrong).
        coverage: share given a success/failure label.
        brier: Brier score of P(success) (0.5 for ``unknown``).
        ece: expected calibration error of the labelled ones.
        by_source: per deciding source, ``[n, accuracy]``.
    """

    name: str
    n: int
    accuracy: float
    coverage: float
    brier: float
    ece: float
    by_source: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationReport:
    """All configurations on one stream, plus what the drift detector did."""

    traces: int
    without_explicit: int
    success_rate: float
    qualities: list[LabelQuality]
    drift_start_ms: int | None
    drift_alerts: list[dict[str, Any]]

    def quality(self, name: str) -> LabelQuality:
        return next(q for q in self.qualities if q.name == name)


def _settings(**kw: Any) -> LabellerSettings:
    # the defaults, whatever the environment says: the evaluation must be reproducible
    return LabellerSettings.model_validate({**{k: f.default for k, f in LabellerSettings.model_fields.items()}, **kw})


def run_labeller(stream: SimStream, overrides: dict[str, Any], settings: LabellerSettings | None = None) -> InMemoryLabeller:
    """Runs the stream through the engine with the given rule overrides; returns the labeller."""
    settings = settings or _settings()
    labeller = InMemoryLabeller(LabellingEngine(RuleBook(overrides), settings))
    for ev in stream.events:
        if ev.kind == "experience":
            labeller.experience(ev.record, ev.time_ms)
        else:
            labeller.feedback(ev.record, ev.time_ms)
    labeller.flush(stream.events[-1].time_ms + int(settings.state_ttl_s * 1000) if stream.events else 0)
    return labeller


def _quality(name: str, stream: SimStream, decisions: dict[str, Decision]) -> LabelQuality:
    ids = [t for t in stream.truth if t not in stream.explicit]
    y = [stream.truth[t] for t in ids]
    d = [decisions[t] for t in ids]
    correct = [dec.label == ("success" if yi else "failure") for dec, yi in zip(d, y, strict=True)]
    labelled = [(dec.confidence, ok) for dec, ok in zip(d, correct, strict=True) if dec.label != "unknown"]
    by_source: dict[str, list[float]] = {}
    for dec, ok in zip(d, correct, strict=True):
        s = by_source.setdefault(dec.source, [0, 0.0])
        s[0] += 1
        s[1] += float(ok)
    return LabelQuality(
        name=name,
        n=len(ids),
        accuracy=sum(correct) / len(ids),
        coverage=len(labelled) / len(ids),
        brier=brier_score([dec.p_success for dec in d], y),
        ece=expected_calibration_error([c for c, _ in labelled], [ok for _, ok in labelled]),
        by_source={k: [int(v[0]), v[1] / v[0]] for k, v in sorted(by_source.items())},
    )


def evaluate(
    cfg: SimConfig | None = None,
    configurations: dict[str, dict[str, Any]] | None = None,
    drift_sources: Literal["independent", "all"] = "independent",
) -> EvaluationReport:
    """Simulates one stream and measures every configuration on it; the drift alerts are
    those of the default labeller (rules + logistic regression) with ``drift_sources``."""
    stream = simulate(cfg or SimConfig())
    qualities = []
    drift_alerts: list[dict[str, Any]] = []
    for name, overrides in (configurations or CONFIGURATIONS).items():
        labeller = run_labeller(stream, overrides)
        qualities.append(_quality(name, stream, labeller.decisions))
        if overrides.get("model_kind") == "logistic_regression":  # the default labeller
            drift_alerts = labeller.drift_alerts
    if drift_sources == "all":
        drift_alerts = run_labeller(stream, CONFIGURATIONS["rules + logistic regression"], _settings(drift_sources="all")).drift_alerts
    for alert in drift_alerts:  # what really happened to that agent's model version, for the report
        alert["true_rate_before"], alert["true_rate_after"] = _true_rates(stream, alert)
    return EvaluationReport(
        traces=len(stream.truth),
        without_explicit=len(stream.truth) - len(stream.explicit),
        success_rate=sum(stream.truth.values()) / len(stream.truth),
        qualities=qualities,
        drift_start_ms=stream.drift_start_ms,
        drift_alerts=drift_alerts,
    )


def _true_rates(stream: SimStream, alert: dict[str, Any]) -> tuple[float, float]:
    """True success rates of the alert's agent and model version: the 300 runs before the
    alert's (or the drift's) start, and the runs from there to the alert."""
    split = stream.drift_start_ms if stream.drift_start_ms is not None and stream.drift_start_ms < alert["timestamp_ms"] else None
    runs = [(e.time_ms, stream.truth[e.record["trace_id"]]) for e in stream.events
            if e.kind == "experience" and e.record["agent_id"] == alert["agent_id"]
            and e.record["model_version"] == alert["model_version"] and e.time_ms <= alert["timestamp_ms"]]
    if split is None:  # no drift before the alert: compare the last 300 runs with the 300 before them
        split = runs[-300][0] if len(runs) >= 300 else runs[0][0]
    before = [ok for t, ok in runs if t < split][-300:]
    after = [ok for t, ok in runs if t >= split]
    rate = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return rate(before), rate(after)


def _print(report: EvaluationReport, seed: int) -> None:
    print(f"seed {seed}: {report.traces} traces, {report.without_explicit} without explicit feedback, "
          f"true success rate {report.success_rate:.3f}")
    print(f"  {'labeller':30} {'accuracy':>8} {'coverage':>8} {'Brier':>7} {'ECE':>7}   by source (n, accuracy)")
    for q in report.qualities:
        src = ", ".join(f"{k} {int(v[0])} {v[1]:.2f}" for k, v in q.by_source.items())
        print(f"  {q.name:30} {q.accuracy:8.3f} {q.coverage:8.3f} {q.brier:7.4f} {q.ece:7.4f}   {src}")
    for a in report.drift_alerts:
        delay = "" if report.drift_start_ms is None else f", {(a['timestamp_ms'] - report.drift_start_ms) / 1000:.0f} s after the drift began"
        print(f"  drift: {a['agent_id']} {a['model_version']} labelled success rate {a['estimate_before']:.2f} -> "
              f"{a['estimate_after']:.2f} after {a['n']} outcomes{delay} "
              f"(true rate {a['true_rate_before']:.2f} -> {a['true_rate_after']:.2f})")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: prints (or dumps as JSON) one report per seed."""
    ap = argparse.ArgumentParser(prog="python -m agentgym.processors.labelling.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=6000, help="simulated runs per seed (default 6000)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="simulation seeds (default 0 1 2)")
    ap.add_argument("--no-drift", action="store_true", help="simulate without the model-version drift")
    ap.add_argument("--drift-sources", choices=("independent", "all"), default="independent",
                    help="labels the drift detector sees (default: independent of the online model)")
    ap.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = ap.parse_args(argv)
    reports = []
    for seed in args.seeds:
        cfg = SimConfig(n_traces=args.traces, seed=seed, drift_at=None if args.no_drift else SimConfig.drift_at)
        report = evaluate(cfg, drift_sources=args.drift_sources)
        reports.append({"seed": seed, **asdict(report)})
        if not args.json:
            _print(report, seed)
    if args.json:
        json.dump(reports, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
