"""The closed-loop demo's report: one self-contained HTML file with hand-written inline SVG plots.

No external assets, no JavaScript, no plotting library: every chart is built here from its
data, every piece of text is escaped, and a section without data says so instead of failing.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentgym.ops.exceptions import ReportError

__all__ = ["RatePoint", "CsPoint", "HeldOut", "AuditArm", "AuditFigures", "ExperimentView", "DemoReport", "render", "write",
           "wilson"]


@dataclass(frozen=True)
class RatePoint:
    """One point of a success-rate-over-time series (``t_s`` in seconds since the demo started)."""

    t_s: float
    rate: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class CsPoint:
    """One look of the A/B experiment's confidence sequence on treatment minus control success rate."""

    t_s: float
    estimate: float
    low: float
    high: float
    n_control: int
    n_treatment: int


@dataclass(frozen=True)
class HeldOut:
    """Held-out evaluation of one model version (``role`` such as ``"base"`` or ``"promoted"``)."""

    model_version: str
    role: str
    successes: int
    n: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class AuditArm:
    """One arm of the experiment with an audit sample: its labelled and corrected success rates beside the truth.

    ``n``: units the experiment counted; ``m``: of them audited (gold label known);
    ``labelled``: the labeller's mean; ``corrected``: the prediction-powered estimate and
    its normal 95% interval (None below the engine's minimum of audited units); ``truth``:
    the simulator's success rate over the experiment's units of this arm (each unit's
    first labelled run, ``truth_units`` of them).
    """

    variant: str
    n: int
    m: int
    labelled: float | None
    corrected: float | None
    corrected_ci: tuple[float, float] | None
    truth: float | None
    truth_units: int


@dataclass
class AuditFigures:
    """The experiment's labelled and corrected (PPI) estimates beside the truth (``result.json["audit"]``).

    Differences are treatment minus control; ``*_ci`` are the experiment's anytime-valid
    confidence sequences at its last look (the decision uses the corrected one);
    ``truth_diff`` is the simulator's difference over the experiment's units and
    ``heldout_diff`` the paired difference of the two versions on held-out requests.
    """

    experiment_id: str
    audit_rate: float
    review_error: float
    reviews_posted: int
    reviews_wrong: int
    audit_units: int
    estimator: str
    arms: list[AuditArm]
    labelled_diff: float | None
    labelled_ci: tuple[float, float] | None
    labelled_p: float | None
    corrected_diff: float | None
    corrected_ci: tuple[float, float] | None
    corrected_p: float | None
    truth_diff: float | None
    heldout_diff: float | None = None
    heldout_ci: tuple[float, float] | None = None

    def covers(self, which: str) -> bool | None:
        """Whether the ``labelled`` or ``corrected`` interval covers the truth over the experiment's units."""
        ci = self.labelled_ci if which == "labelled" else self.corrected_ci
        if ci is None or self.truth_diff is None:
            return None
        return ci[0] <= self.truth_diff <= ci[1]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (non-finite numbers as None)."""
        def clean(v: object) -> object:
            if isinstance(v, float):
                return v if math.isfinite(v) else None
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        doc = {k: v for k, v in self.__dict__.items() if k != "arms"}
        doc["arms"] = {a.variant: {k: v for k, v in a.__dict__.items() if k != "variant"} for a in self.arms}
        doc["labelled_covers_truth"], doc["corrected_covers_truth"] = self.covers("labelled"), self.covers("corrected")
        return clean(doc)  # type: ignore[return-value]


@dataclass(frozen=True)
class ExperimentView:
    """One A/B experiment of the run: its confidence sequence and decision."""

    title: str
    confidence_sequence: list[CsPoint]
    decision: str
    decision_t_s: float | None


@dataclass
class DemoReport:
    """Everything the report shows; times are seconds since the demo started."""

    title: str
    started_at: str
    duration_s: float
    summary: list[tuple[str, str]]
    success_over_time: dict[str, list[RatePoint]]
    confidence_sequence: list[CsPoint]
    decision: str
    decision_t_s: float | None
    events: list[tuple[float, str]]
    feedback_counts: dict[str, int]
    label_counts: dict[str, dict[str, int]]
    training_loss: list[tuple[float, float]]
    eval_losses: dict[str, float]
    held_out: list[HeldOut]
    notes: list[str] = field(default_factory=list)
    audit: AuditFigures | None = None
    # several experiments (one chart each; empty: the single ``confidence_sequence``), the lineage
    # table (phase, dataset, examples, job, model, experiment, decision, registry) and drift alerts
    experiments: list[ExperimentView] = field(default_factory=list)
    lineage: list[tuple[str, ...]] = field(default_factory=list)
    drift_alerts: list[dict[str, object]] = field(default_factory=list)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(0.0, 1.0)`` when ``n == 0``.

    Raises:
        ReportError: ``n`` is negative or ``successes`` lies outside ``[0, n]`` (a ``ValueError``).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ReportError(f"wilson: need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    # Wilson (1927), JASA 22:209-212; closed form as Newcombe (1998), Stat. Med. 17:857-872, method 3:
    # (2np + z^2 -/+ z sqrt(z^2 + 4np(1-p))) / (2(n + z^2))
    p = successes / n
    centre, half = 2 * n * p + z * z, z * math.sqrt(z * z + 4 * n * p * (1 - p))
    low, high = (centre - half) / (2 * (n + z * z)), (centre + half) / (2 * (n + z * z))
    # the bounds are exact at the edges; rounding must not nudge them off 0 or 1
    return (0.0 if successes == 0 else max(0.0, low)), (1.0 if successes == n else min(1.0, high))


# --- SVG primitives -------------------------------------------------------------------------

_W, _H = 720, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 20, 16, 48
_PW, _PH = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
# Okabe & Ito (2008) colour-blind-safe palette
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
_VERDICT_COLOURS = {"success": "#009E73", "failure": "#D55E00", "unknown": "#999999"}
_DECISION_COLOUR = "#C0392B"

_Fmt = Callable[[float], str]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(v: float) -> str:
    return f"{v:.1f}"


def _pts(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in points)


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    start, stop = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(start, stop + 1)]


def _tick_fmt(ticks: Sequence[float], scale: float = 1.0, suffix: str = "") -> _Fmt:
    """Formats tick values with just enough decimals for their step."""
    step = abs(ticks[1] - ticks[0]) * scale if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0

    def fmt(v: float) -> str:
        text = f"{v * scale:,.{decimals}f}"
        return ("0" if text.strip("-0.,") == "" else text) + suffix

    return fmt


@dataclass(frozen=True)
class _Frame:
    """Maps data coordinates onto the plot box; values outside the range are clamped to its edge."""

    x0: float
    x1: float
    y0: float
    y1: float

    def px(self, x: float) -> float:
        return _LEFT + (min(max(x, self.x0), self.x1) - self.x0) / (self.x1 - self.x0) * _PW

    def py(self, y: float) -> float:
        return _TOP + (1 - (min(max(y, self.y0), self.y1) - self.y0) / (self.y1 - self.y0)) * _PH


def _svg(body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
            f'aria-label="{_e(label)}">{"".join(body)}</svg>')


def _y_axis(frame: _Frame, ticks: Sequence[float], fmt: _Fmt, label: str) -> list[str]:
    out = []
    for t in ticks:
        y = _n(frame.py(t))
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + _PW}" y1="{y}" y2="{y}"/>'
                   f'<text class="tick" x="{_LEFT - 6}" y="{y}" text-anchor="end" dy="0.32em">{_e(fmt(t))}</text>')
    out.append(f'<text class="axis-label" transform="translate(14,{_TOP + _PH / 2}) rotate(-90)" '
               f'text-anchor="middle">{_e(label)}</text>')
    return out


def _x_axis(frame: _Frame, ticks: Sequence[float], fmt: _Fmt, label: str) -> list[str]:
    base = _TOP + _PH
    out = [f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + _PW}" y1="{base}" y2="{base}"/>']
    for t in ticks:
        x = _n(frame.px(t))
        out.append(f'<line class="axis" x1="{x}" x2="{x}" y1="{base}" y2="{base + 4}"/>'
                   f'<text class="tick" x="{x}" y="{base + 16}" text-anchor="middle">{_e(fmt(t))}</text>')
    out.append(f'<text class="axis-label" x="{_LEFT + _PW / 2}" y="{_H - 8}" text-anchor="middle">{_e(label)}</text>')
    return out


def _vmark(frame: _Frame, x: float, label: str, cls: str) -> str:
    px, at = _n(frame.px(x)), f"{_n(frame.px(x) + 3)},{_TOP + 4}"
    return (f'<line class="{cls}" x1="{px}" x2="{px}" y1="{_TOP}" y2="{_TOP + _PH}"><title>{_e(label)}</title></line>'
            f'<text class="{cls}-label" transform="translate({at}) rotate(90)">{_e(label)}</text>')


@dataclass(frozen=True)
class _Line:
    """One series of a line chart: ``points`` are (x, y), ``band`` is (x, low, high)."""

    name: str
    colour: str
    points: list[tuple[float, float]]
    band: list[tuple[float, float, float]] = field(default_factory=list)


def _line_chart(lines: Sequence[_Line], frame: _Frame, x_label: str, y_label: str, label: str, *,
                y_scale: float = 1.0, y_suffix: str = "", events: Sequence[tuple[float, str]] = (),
                zero_line: bool = False, decision: tuple[float, str] | None = None) -> str:
    """A line chart with optional shaded bands, dashed event markers, a zero line and a decision marker."""
    xt = [t for t in _nice_ticks(frame.x0, frame.x1) if frame.x0 <= t <= frame.x1]
    yt = [t for t in _nice_ticks(frame.y0, frame.y1) if frame.y0 <= t <= frame.y1]
    body = _y_axis(frame, yt, _tick_fmt(yt, y_scale, y_suffix), y_label) + _x_axis(frame, xt, _tick_fmt(xt), x_label)
    if zero_line:
        y0 = _n(frame.py(0))
        body.append(f'<line class="zero" x1="{_LEFT}" x2="{_LEFT + _PW}" y1="{y0}" y2="{y0}"/>')
    for t, text in events:
        if frame.x0 <= t <= frame.x1:
            body.append(_vmark(frame, t, text, "event"))
    for line in lines:
        band = [b for b in line.band if not any(math.isnan(v) for v in b)]
        if band:
            edge = [(frame.px(x), frame.py(hi)) for x, _, hi in band]
            edge += [(frame.px(x), frame.py(lo)) for x, lo, _ in band[::-1]]
            body.append(f'<polygon class="band" fill="{line.colour}" points="{_pts(edge)}"/>')
    for line in lines:
        pts = [(frame.px(x), frame.py(y)) for x, y in line.points if not (math.isnan(x) or math.isnan(y))]
        body.append(f'<polyline class="series" data-series="{_e(line.name)}" stroke="{line.colour}" '
                    f'points="{_pts(pts)}"><title>{_e(line.name)}</title></polyline>')
        if len(pts) <= 40:  # dots help read sparse series and clutter dense ones
            body.extend(f'<circle cx="{_n(a)}" cy="{_n(b)}" r="2.5" fill="{line.colour}"/>' for a, b in pts)
    if decision is not None:
        body.append(_vmark(frame, decision[0], decision[1], "decision"))
    return _svg(body, label)


def _bar_chart(categories: Sequence[str], stacks: Sequence[tuple[str, str, Sequence[float]]], y_label: str,
               label: str, *, y_max: float | None = None, y_scale: float = 1.0, y_suffix: str = "",
               whiskers: Sequence[tuple[float, float]] | None = None) -> str:
    """Bars per category, the ``stacks`` (name, colour, value per category) piled on each other.

    ``whiskers`` (low, high per category) draws interval whiskers over single-stack bars.
    """
    totals = [sum(s[2][i] for s in stacks) for i in range(len(categories))]
    top = max([*totals, *(hi for _, hi in whiskers or ())], default=1.0) * 1.08 or 1.0  # room for value labels
    yt = _nice_ticks(0.0, top if y_max is None else y_max)
    frame = _Frame(0.0, 1.0, 0.0, yt[-1] if y_max is None else y_max)
    fmt = _tick_fmt(yt, y_scale, y_suffix)
    body = _y_axis(frame, yt, fmt, y_label)
    base = _TOP + _PH
    body.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + _PW}" y1="{base}" y2="{base}"/>')
    slot = _PW / max(1, len(categories))
    width = min(64.0, slot * 0.6)
    for i, cat in enumerate(categories):
        x = _LEFT + slot * (i + 0.5)
        acc = 0.0
        for name, colour, values in stacks:
            v = values[i]
            if v > 0:
                y_hi, y_lo = frame.py(acc + v), frame.py(acc)
                tip = _e(f"{cat} · {name}: {fmt(v)}")
                body.append(f'<rect x="{_n(x - width / 2)}" y="{_n(y_hi)}" width="{_n(width)}" '
                            f'height="{_n(y_lo - y_hi)}" fill="{colour}"><title>{tip}</title></rect>')
            acc += v
        label_y = frame.py(totals[i])
        if whiskers is not None:
            lo, hi = whiskers[i]
            ylo, yhi = _n(frame.py(lo)), _n(frame.py(hi))
            left, right = _n(x - 8), _n(x + 8)
            body.append(f'<path class="whisker" d="M{_n(x)},{ylo}V{yhi}M{left},{yhi}H{right}M{left},{ylo}H{right}"/>')
            label_y = min(label_y, frame.py(hi))
        body.append(f'<text class="value" x="{_n(x)}" y="{_n(label_y - 5)}" text-anchor="middle">'
                    f'{_e(fmt(totals[i]))}</text>'
                    f'<text class="tick" x="{_n(x)}" y="{base + 16}" text-anchor="middle">{_e(cat)}</text>')
    return _svg(body, label)


# --- sections --------------------------------------------------------------------------------

_EMPTY = '<p class="empty">no data</p>'


def _legend(items: Sequence[tuple[str, str]]) -> str:
    spans = "".join(f'<li><span class="swatch" style="background:{c}"></span>{_e(n)}</li>' for n, c in items)
    return f'<ul class="legend">{spans}</ul>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = f'<thead><tr>{"".join(f"<th>{_e(h)}</th>" for h in header)}</tr></thead>' if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _section(title: str, caption: str, *parts: str) -> str:
    return f'<section><h2>{_e(title)}</h2><p class="caption">{_e(caption)}</p>{"".join(parts)}</section>'


def _time_range(report: DemoReport) -> tuple[float, float]:
    ts = [p.t_s for s in report.success_over_time.values() for p in s] + [p.t_s for p in report.confidence_sequence]
    ts += [t for t, _ in report.events] + ([report.decision_t_s] if report.decision_t_s is not None else [])
    hi = max([report.duration_s, *(t for t in ts if math.isfinite(t))])
    return 0.0, _nice_ticks(0.0, hi)[-1] if hi > 0 else 1.0


def _success_section(report: DemoReport) -> str:
    title = "Success rate over time"
    caption = ("Share of runs judged successful for each model version over time; "
               "shaded bands are the intervals, dashed lines mark phases of the demo.")
    series = {v: sorted(p, key=lambda q: q.t_s) for v, p in report.success_over_time.items() if p}
    if not series:
        return _section(title, caption, _EMPTY)
    lines = [_Line(v, _PALETTE[i % len(_PALETTE)], [(p.t_s, p.rate) for p in pts],
                   [(p.t_s, p.low, p.high) for p in pts]) for i, (v, pts) in enumerate(series.items())]
    chart = _line_chart(lines, _Frame(*_time_range(report), 0.0, 1.0), "time since start (s)", "success rate",
                        title, y_scale=100, y_suffix="%", events=report.events)
    return _section(title, caption, _legend([(ln.name, ln.colour) for ln in lines]), chart)


def _experiment_section(report: DemoReport) -> str:
    views = report.experiments or [ExperimentView("A/B experiment", report.confidence_sequence, report.decision,
                                                  report.decision_t_s)]
    return "".join(_one_experiment(report, v, many=bool(report.experiments)) for v in views)


def _one_experiment(report: DemoReport, view: ExperimentView, many: bool) -> str:
    title = f"{view.title}: confidence sequence" if many else "A/B experiment: confidence sequence"
    decision = (f"Decision: {view.decision}" if view.decision else "No decision was reached.")
    caption = ("Treatment minus control success rate at each look, with its confidence sequence (shaded); "
               f"the experiment may stop once the band excludes zero. {decision}")
    cs = sorted(view.confidence_sequence, key=lambda p: p.t_s)
    if not cs:
        return _section(title, caption, _EMPTY)
    values = [v for p in cs for v in (p.estimate, p.low, p.high) if math.isfinite(v)] + [0.0]
    yt = _nice_ticks(min(values), max(values))
    line = _Line("estimate", _PALETTE[0], [(p.t_s, p.estimate) for p in cs], [(p.t_s, p.low, p.high) for p in cs])
    mark = (view.decision_t_s, "decision") if view.decision_t_s is not None else None
    # the experiment's own window (it is often a small part of the run): its looks and its decision
    ts = [p.t_s for p in cs if math.isfinite(p.t_s)] + ([mark[0]] if mark else [])
    pad = max(1.0, 0.05 * (max(ts) - min(ts)))
    chart = _line_chart([line], _Frame(min(ts) - pad, max(ts) + pad, yt[0], yt[-1]), "time since start (s)",
                        "treatment − control (pp)", title, y_scale=100, y_suffix=" pp", events=report.events,
                        zero_line=True, decision=mark)
    legend = [("estimate (band: confidence sequence)", _PALETTE[0])]
    legend += [("decision", _DECISION_COLOUR)] if mark else []
    return _section(title, caption, _legend(legend), chart)


def _lineage_section(report: DemoReport) -> str:
    if not report.lineage and not report.drift_alerts:
        return ""
    parts = []
    if report.lineage:
        parts.append(_table(["phase", "dataset", "examples", "training job", "model (parent, initialised from)",
                             "experiment", "decision", "registry"], report.lineage))
    if report.drift_alerts:
        rows = [(str(a.get("model_version", "")), str(a.get("detector", "")),
                 f"{float(a.get('estimate_before', 0)):.1%} → {float(a.get('estimate_after', 0)):.1%}",  # type: ignore[arg-type]
                 str(a.get("n", "")), f"{float(a.get('t_s', 0)):.0f} s") for a in report.drift_alerts]  # type: ignore[arg-type]
        parts.append("<h3>Drift alerts</h3>" + _table(["model version", "detector", "success before → after", "labelled runs",
                                                      "seen at"], rows))
    return _section("Lineage: dataset → job → model → experiment → decision",
                    "Each fine-tuning round, from the dataset it trained on to the registry's verdict; then the "
                    "labeller's drift alerts (ADWIN on each model version's success rate).", *parts)


def _feedback_section(report: DemoReport) -> str:
    title = "Feedback and labels"
    caption = "How users responded, by kind of feedback; then the outcome labels per labeller source, by verdict."
    fb = list(report.feedback_counts.items())
    fb_chart = (_bar_chart([k for k, _ in fb], [("count", _PALETTE[0], [float(v) for _, v in fb])],
                           "count", "feedback counts") if fb else _EMPTY)
    sources = [s for s, c in report.label_counts.items() if c]
    verdicts = [v for v in _VERDICT_COLOURS if any(v in report.label_counts[s] for s in sources)]
    verdicts += sorted({v for s in sources for v in report.label_counts[s]} - set(verdicts))
    stacks = [(v, _VERDICT_COLOURS.get(v, _PALETTE[(i + 3) % len(_PALETTE)]),
               [float(report.label_counts[s].get(v, 0)) for s in sources]) for i, v in enumerate(verdicts)]
    lb_chart = (_legend([(n, c) for n, c, _ in stacks]) + _bar_chart(sources, stacks, "labels", "label counts")
                if sources else _EMPTY)
    return _section(title, caption, f"<h3>Feedback</h3>{fb_chart}<h3>Labels</h3>{lb_chart}")


def _training_section(report: DemoReport) -> str:
    title = "Training loss"
    caption = "Fine-tuning loss of the candidate model per optimiser step; held-out evaluation losses below."
    pts = sorted((s, v) for s, v in report.training_loss if math.isfinite(s) and math.isfinite(v))
    evals = _table(["evaluation", "loss"], [(k, f"{v:.4g}") for k, v in report.eval_losses.items()])
    evals = evals if report.eval_losses else ""
    if not pts:
        return _section(title, caption, _EMPTY, evals)
    xt, yt = _nice_ticks(pts[0][0], pts[-1][0]), _nice_ticks(min(v for _, v in pts), max(v for _, v in pts))
    chart = _line_chart([_Line("training loss", _PALETTE[1], pts)], _Frame(xt[0], xt[-1], yt[0], yt[-1]),
                        "step", "loss", title)
    return _section(title, caption, chart, evals)


def _held_out_section(report: DemoReport) -> str:
    title = "Held-out success"
    caption = "Success rate on the held-out task set for each model version; whiskers are the intervals."
    if not report.held_out:
        return _section(title, caption, _EMPTY)
    cats = [f"{h.model_version} ({h.role})" for h in report.held_out]
    chart = _bar_chart(cats, [("success rate", _PALETTE[2], [h.rate for h in report.held_out])], "success rate",
                       title, y_max=1.0, y_scale=100, y_suffix="%", whiskers=[(h.low, h.high) for h in report.held_out])
    rows = [(h.model_version, h.role, f"{h.successes}/{h.n}", f"{h.rate:.1%}", f"{h.low:.1%} – {h.high:.1%}")
            for h in report.held_out]
    return _section(title, caption, chart, _table(["model version", "role", "successes", "rate", "interval"], rows))


def _pp(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:+.1f} pp"


def _pct(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.1%}"


def _ci_pp(ci: tuple[float, float] | None) -> str:
    return "–" if ci is None else f"[{100 * max(ci[0], -1.0):+.1f}, {100 * min(ci[1], 1.0):+.1f}]"


def _audit_section(report: DemoReport) -> str:
    title = "Audit sample: labelled against corrected estimates"
    a = report.audit
    if a is None:
        return ""
    caption = (f"Reviewers labelled {a.reviews_posted} runs of the audit sample ({a.audit_rate:.0%} of units, chosen by hash) "
               f"with the simulator's truth, {a.reviews_wrong} of them wrongly (their error rate is set to {a.review_error:.0%}). "
               "The labelled estimate tests the labeller's labels; the corrected one (prediction-powered inference: "
               "labels' mean plus the audit sample's mean correction gold − label) is what the decision used. "
               "Intervals of the differences are the experiment's confidence sequences at its last look; the truth is "
               "the simulator's, over the experiment's units and on held-out requests.")
    by = {arm.variant: arm for arm in a.arms}
    names = [v for v in ("control", "treatment") if v in by] + [v for v in by if v not in ("control", "treatment")]
    header = ["", *[f"{v} (n = {by[v].n}, audited {by[v].m})" for v in names], "treatment − control", "interval",
              "covers truth"]
    def covered(which: str) -> str:
        c = a.covers(which)
        return "–" if c is None else ("yes" if c else "no")
    def corrected(arm: AuditArm) -> str:
        ci = arm.corrected_ci
        return _pct(arm.corrected) + ("" if ci is None else f" [{_pct(ci[0])}, {_pct(ci[1])}]")

    rows = [
        ["labelled (the labeller's labels)", *[_pct(by[v].labelled) for v in names], _pp(a.labelled_diff),
         _ci_pp(a.labelled_ci), covered("labelled")],
        ["corrected (prediction-powered)", *[corrected(by[v]) for v in names],
         _pp(a.corrected_diff), _ci_pp(a.corrected_ci), covered("corrected")],
        ["truth over the experiment's units (simulator)",
         *[f"{_pct(by[v].truth)} of {by[v].truth_units}" for v in names], _pp(a.truth_diff), "", ""],
        ["truth on held-out requests (paired)", *["" for _ in names], _pp(a.heldout_diff), _ci_pp(a.heldout_ci), ""],
    ]
    return _section(title, caption, _table(header, rows))


_CSS = """
body{margin:0;background:#f6f7f9;color:#1d232b;font:15px/1.5 system-ui,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px}.empty{color:#8a94a3;font-style:italic;padding:20px 0}
header h1{margin:0 0 4px;font-size:26px}.meta{color:#5b6573;margin:0 0 16px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{margin:0 0 4px;font-size:19px}h3{margin:8px 0 4px;font-size:15px}.caption{color:#5b6573;margin:0 0 10px}
table{border-collapse:collapse;margin:10px 0;font-variant-numeric:tabular-nums}th{color:#5b6573;font-weight:600}
th,td{border-bottom:1px solid #e1e4e8;padding:5px 16px 5px 0;text-align:left}
.decision-box{border-left:4px solid #C0392B;background:#fdf3f2;padding:8px 12px;margin-top:10px}
svg{width:100%;height:auto;display:block;font-size:11px}.grid{stroke:#eceef1}.axis{stroke:#6b7480}
.tick{fill:#4a5360}.axis-label{fill:#1d232b;font-size:12px}.value{fill:#1d232b;font-weight:600}
.series{fill:none;stroke-width:2;stroke-linejoin:round}.band{opacity:.16;stroke:none}
.zero{stroke:#1d232b;stroke-width:1.2}.whisker{stroke:#1d232b;stroke-width:1.5;fill:none}
.event{stroke:#8a94a3;stroke-dasharray:5 4}.event-label{fill:#6b7480;font-size:10px}
.decision{stroke:#C0392B;stroke-width:2;stroke-dasharray:2 3}
.decision-label{fill:#C0392B;font-size:10px;font-weight:600}
.legend{list-style:none;padding:0;margin:0 0 6px;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:13px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
footer{color:#8a94a3;font-size:12px;text-align:center;padding:8px}
"""


def _duration(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def render(report: DemoReport) -> str:
    """The complete, self-contained HTML document for ``report``."""
    summary = _table([], report.summary) if report.summary else _EMPTY
    if report.decision:
        summary += f'<div class="decision-box"><strong>Decision:</strong> {_e(report.decision)}</div>'
    notes = ("<section><h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in report.notes) + "</ul></section>"
             if report.notes else "")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(report.title)}</title>'
            f"<style>{_CSS}</style></head><body><main><header><h1>{_e(report.title)}</h1>"
            f'<p class="meta">Started {_e(report.started_at)} · ran {_e(_duration(report.duration_s))}</p></header>'
            f"<section><h2>Summary</h2>{summary}</section>"
            f"{_success_section(report)}{_lineage_section(report)}{_experiment_section(report)}{_feedback_section(report)}"
            f"{_audit_section(report)}{_training_section(report)}{_held_out_section(report)}{notes}"
            f"<footer>Agent Gym closed-loop demo report · self-contained, no external assets</footer>"
            f"</main></body></html>\n")


def write(report: DemoReport, path: str | os.PathLike[str]) -> Path:
    """Renders ``report`` to ``path`` atomically (temporary file, then ``os.replace``); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(report))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
