"""Charts as inline SVG geometry, computed on the server (pure: no I/O, no web framework).

The templates draw what these functions return. ``static/dashboard.js`` lays the
confidence-sequence plot out again with the same rule (:func:`cs_layout`) when a live
snapshot arrives, so the two must stay in step: the plot's size and padding travel to
the script as ``data-*`` attributes of the ``<svg>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["CS_WIDTH", "CS_HEIGHT", "CS_PAD", "CsPoint", "CsPlot", "cs_layout", "Sparkline", "sparkline"]

CS_WIDTH = 720
CS_HEIGHT = 280
CS_PAD = 40
"""Size of the confidence-sequence plot and its padding, in SVG user units (pixels)."""


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


@dataclass(frozen=True)
class CsPoint:
    """One snapshot of the confidence sequence and where it is drawn.

    Attributes:
        ts_ms: snapshot time, epoch milliseconds.
        n: units of every arm together.
        estimate: the point estimate (treatment minus control); None when there is none yet.
        lo, hi: the always-valid interval; None where infinite (too few units).
        cx, cy: the point; cy_lo, cy_hi: the interval's ends (clipped to the plot).
    """

    ts_ms: int
    n: int
    estimate: float | None
    lo: float | None
    hi: float | None
    cx: float
    cy: float
    cy_lo: float
    cy_hi: float


@dataclass(frozen=True)
class CsPlot:
    """The laid-out plot: points, the zero line's height and the axis labels."""

    points: list[CsPoint]
    zero_y: float | None
    y_min: float
    y_max: float
    ts_min: int
    ts_max: int
    width: int = CS_WIDTH
    height: int = CS_HEIGHT
    pad: int = CS_PAD

    @property
    def upper(self) -> str:
        """The interval's upper edge as SVG polyline points."""
        return " ".join(f"{p.cx:.1f},{p.cy_hi:.1f}" for p in self.points)

    @property
    def lower(self) -> str:
        return " ".join(f"{p.cx:.1f},{p.cy_lo:.1f}" for p in self.points)


def cs_layout(series: list[dict[str, Any]], width: int = CS_WIDTH, height: int = CS_HEIGHT, pad: int = CS_PAD) -> CsPlot:
    """Lays out ``series`` (dicts with ``ts_ms``, ``n``, ``estimate``, ``lo``, ``hi``), oldest first.

    x is the snapshot's time over the series' span; y spans every finite estimate and
    interval end and zero, with 10% margin. An infinite end is drawn at the plot's edge.
    """
    values = [v for s in series for v in (_finite(s.get("estimate")), _finite(s.get("lo")), _finite(s.get("hi"))) if v is not None]
    y_min, y_max = min([0.0, *values]), max([0.0, *values])
    if y_max - y_min < 1e-9:
        y_min, y_max = -1.0, 1.0
    margin = (y_max - y_min) * 0.1
    y_min, y_max = y_min - margin, y_max + margin
    ts = [int(s["ts_ms"]) for s in series]
    ts_min, ts_max = (min(ts), max(ts)) if ts else (0, 1)
    span = max(ts_max - ts_min, 1)
    inner_w, inner_h = width - 2 * pad, height - 2 * pad

    def x_of(t: int) -> float:
        return pad + (inner_w * (t - ts_min) / span if len(series) > 1 else inner_w / 2)

    def y_of(v: float) -> float:
        return pad + inner_h * (y_max - v) / (y_max - y_min)

    points = []
    for s in series:
        est, lo, hi = _finite(s.get("estimate")), _finite(s.get("lo")), _finite(s.get("hi"))
        points.append(CsPoint(
            ts_ms=int(s["ts_ms"]), n=int(s.get("n") or 0), estimate=est, lo=lo, hi=hi, cx=x_of(int(s["ts_ms"])),
            cy=y_of(est) if est is not None else y_of(0.0),
            cy_lo=y_of(lo) if lo is not None else float(height - pad), cy_hi=y_of(hi) if hi is not None else float(pad)))
    return CsPlot(points, y_of(0.0), y_min, y_max, ts_min, ts_max, width, height, pad)


@dataclass(frozen=True)
class Sparkline:
    """A small line chart: its polyline points, and the first and last values it shows."""

    points: str
    first: float
    last: float
    width: int
    height: int


def sparkline(values: list[tuple[float, float]], width: int = 160, height: int = 40, pad: int = 3) -> Sparkline | None:
    """A sparkline of ``(x, y)`` pairs (a training job's loss by step); None below two finite points."""
    pts = [(float(x), float(y)) for x, y in values if _finite(x) is not None and _finite(y) is not None]
    if len(pts) < 2:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    dx, dy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    text = " ".join(f"{pad + (width - 2 * pad) * (x - x0) / dx:.1f},{pad + (height - 2 * pad) * (y1 - y) / dy:.1f}" for x, y in pts)
    return Sparkline(text, ys[0], ys[-1], width, height)
