"""The demo report renders a self-contained HTML file with one inline SVG per plot."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from agentgym.ops.demo.report import AuditFigures, CsPoint, DemoReport, HeldOut, RatePoint, render, wilson, write
from agentgym.ops.exceptions import ReportError

_PLOTS = 6  # success over time, confidence sequence, feedback, labels, training loss, held-out


def _points(rates: list[float]) -> list[RatePoint]:
    return [RatePoint(t_s=10.0 * i, rate=r, low=max(0.0, r - 0.1), high=min(1.0, r + 0.1), n=20)
            for i, r in enumerate(rates)]


def _report(**changes: object) -> DemoReport:
    report = DemoReport(
        title="Closed-loop demo",
        started_at="2025-11-26T14:00:00+00:00",
        duration_s=300.0,
        summary=[("runs", "1234"), ("promoted", "treatment v2")],
        success_over_time={"<v&1>": _points([0.2, 0.5, 0.35, 0.9, 0.1]), "v2": _points([0.4, 0.6])},
        confidence_sequence=[CsPoint(t_s=30.0 * i, estimate=0.1, low=0.1 - 1 / (i + 1), high=0.1 + 1 / (i + 1),
                                     n_control=10 * i, n_treatment=10 * i) for i in range(1, 8)],
        decision="promote_winner treatment at 212 s: band above zero",
        decision_t_s=212.0,
        events=[(60.0, "users start"), (150.0, "fine-tune <done>")],
        feedback_counts={"thumbs_up": 40, "thumbs_down": 12, "silence": 80},
        label_counts={"human": {"success": 5, "failure": 3}, "signals": {"success": 30, "failure": 10, "unknown": 4}},
        training_loss=[(float(s), 2.0 / (s + 1)) for s in range(50)],
        eval_losses={"champion held-out loss": 1.2, "candidate held-out loss": 0.4},
        held_out=[HeldOut("v1", "base", 30, 100, 0.3, *wilson(30, 100)),
                  HeldOut("v2", "promoted", 62, 100, 0.62, *wilson(62, 100))],
        notes=["a note & more"],
    )
    for key, value in changes.items():
        setattr(report, key, value)
    return report


def _empty() -> DemoReport:
    return DemoReport(title="empty", started_at="", duration_s=0.0, summary=[], success_over_time={},
                      confidence_sequence=[], decision="", decision_t_s=None, events=[], feedback_counts={},
                      label_counts={}, training_loss=[], eval_losses={}, held_out=[])


def _polyline(doc: str, series: str) -> list[tuple[float, float]]:
    match = re.search(rf'<polyline class="series" data-series="{re.escape(series)}"[^>]*points="([^"]*)"', doc)
    assert match, f"no polyline for {series!r}"
    return [(float(x), float(y)) for x, y in (p.split(",") for p in match.group(1).split())]


def test_one_svg_per_plot_with_summary_and_escaped_text() -> None:
    doc = render(_report())
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert doc.count("<svg") == _PLOTS
    assert doc.count("</svg>") == _PLOTS
    for label, value in _report().summary:
        assert f"<td>{label}</td><td>{value}</td>" in doc
    assert "&lt;v&amp;1&gt;" in doc and "<v&1>" not in doc
    assert "fine-tune &lt;done&gt;" in doc and "a note &amp; more" in doc
    assert "promote_winner treatment at 212 s" in doc
    assert "champion held-out loss" in doc and "62/100" in doc


def test_polyline_has_one_point_per_input_and_higher_rate_draws_higher() -> None:
    rates = [0.2, 0.5, 0.35, 0.9, 0.1]
    pts = _polyline(render(_report()), "&lt;v&amp;1&gt;")
    assert len(pts) == len(rates)
    assert [x for x, _ in pts] == sorted(x for x, _ in pts)  # time runs left to right
    by_rate = [y for _, y in sorted(zip(rates, (y for _, y in pts)))]
    assert all(a > b for a, b in zip(by_rate, by_rate[1:]))  # SVG y grows downwards
    assert len(_polyline(render(_report()), "v2")) == 2


def test_rate_axis_is_zero_to_one_in_percent() -> None:
    doc = render(_report(success_over_time={"v": _points([0.0, 1.0])}))
    (_, y0), (_, y1) = _polyline(doc, "v")
    assert y0 > y1
    assert ">0%</text>" in doc and ">100%</text>" in doc


def test_decision_and_events_are_drawn_as_vertical_markers() -> None:
    doc = render(_report())
    assert doc.count('<line class="event"') == 2 * 2  # on both time plots
    assert doc.count('<line class="decision"') == 1
    assert '<line class="zero"' in doc
    doc = render(_report(decision="", decision_t_s=None))
    assert '<line class="decision"' not in doc and "No decision was reached." in doc


def test_empty_report_says_no_data_instead_of_raising() -> None:
    doc = render(_empty())
    assert "<svg" not in doc
    assert doc.count("no data") == 1 + _PLOTS  # summary and every plot


def _coordinates(doc: str) -> list[float]:
    attrs = re.findall(r'\s(?:x|y|x1|x2|y1|y2|cx|cy|width|height|points|d)="([^"]*)"', doc)
    return [float(v) for text in attrs for v in re.findall(r"-?(?:\d+\.?\d*|nan|inf)", text)]


def test_degenerate_data_is_drawn_inside_the_plot_without_crashing() -> None:
    doc = render(_report(success_over_time={"v": []}, feedback_counts={"silence": 0}, label_counts={"human": {}},
                         training_loss=[(0.0, 1.0)],
                         confidence_sequence=[CsPoint(10.0, 0.0, float("-inf"), float("inf"), 0, 0),
                                              CsPoint(20.0, 0.05, -0.3, 0.4, 5, 5)]))
    assert doc.count("<svg") == _PLOTS - 2  # success plot and label plot are empty
    coords = _coordinates(doc)
    assert coords and all(math.isfinite(c) and -1 <= c <= 720 for c in coords)


def test_self_contained_no_remote_references() -> None:
    doc = render(_report())
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", doc, re.IGNORECASE)
    assert "<script" not in doc and "<link" not in doc
    assert set(re.findall(r"https?://[^\s\"']+", doc)) == {"http://www.w3.org/2000/svg"}


# golden values: Newcombe (1998), Stat. Med. 17:857-872, Table II, method 3 (score interval)
@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    (50, 100, 0.4038, 0.5962),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (0, 0, 0.0, 1.0),
])
def test_wilson_known_values(successes: int, n: int, low: float, high: float) -> None:
    got = wilson(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)
    if successes == 0:
        assert got[0] == 0.0


@pytest.mark.parametrize("z", [0.7, 1.645, 1.96, 2.576])
def test_wilson_is_exact_at_the_edges(z: float) -> None:
    for n in range(1, 60):
        assert wilson(0, n, z)[0] == 0.0 and wilson(n, n, z)[1] == 1.0


def test_wilson_contains_the_estimate_and_narrows_with_n() -> None:
    for n in (1, 7, 50, 1000):
        for k in range(0, n + 1, max(1, n // 10)):
            lo, hi = wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert wilson(500, 1000)[1] - wilson(500, 1000)[0] < wilson(50, 100)[1] - wilson(50, 100)[0]
    with pytest.raises(ReportError, match="successes"):
        wilson(11, 10)


def test_write_creates_parent_dirs_atomically(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.html"
    got = write(_report(), target)
    assert got == target and target.read_text(encoding="utf-8") == render(_report())
    write(_empty(), str(target))
    assert "no data" in target.read_text(encoding="utf-8")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary file left behind


def _audit() -> AuditFigures:
    from agentgym.ops.demo.report import AuditArm, AuditFigures

    return AuditFigures(
        experiment_id="exp-v2", audit_rate=0.2, review_error=0.03, reviews_posted=88, reviews_wrong=3, audit_units=80,
        estimator="prediction_powered",
        arms=[AuditArm("control", 200, 40, 0.56, 0.49, (0.40, 0.58), 0.50, 210),
              AuditArm("treatment", 205, 40, 0.90, 0.81, (0.73, 0.89), 0.80, 212)],
        labelled_diff=0.34, labelled_ci=(0.25, 0.43), labelled_p=1e-6, corrected_diff=0.32, corrected_ci=(0.12, 0.52),
        corrected_p=1e-4, truth_diff=0.30, heldout_diff=0.44, heldout_ci=(0.37, 0.51))


def test_the_audit_section_shows_labelled_and_corrected_beside_the_truth() -> None:
    audit = _audit()
    doc = render(_report(audit=audit))
    section = doc[doc.index("Audit sample: labelled against corrected"):]
    section = section[:section.index("</section>")]
    for text in ("labelled (the labeller", "corrected (prediction-powered)", "truth over the experiment", "held-out",
                 "+34.0 pp", "[+25.0, +43.0]", "+32.0 pp", "[+12.0, +52.0]", "+30.0 pp", "+44.0 pp",
                 "88 runs", "3 of them wrongly", "audited 40", "81.0% [73.0%, 89.0%]"):
        assert text in section, text
    assert "Audit sample" not in render(_report())  # no audit sample, no section
    doc = audit.to_dict()
    assert doc["arms"]["treatment"]["corrected_ci"] == [0.73, 0.89] and doc["corrected_ci"] == [0.12, 0.52]
    assert doc["corrected_covers_truth"] is True and doc["labelled_covers_truth"] is True
    audit.labelled_ci = (0.31, 0.37)
    audit.corrected_p = math.nan
    doc = audit.to_dict()
    assert doc["labelled_covers_truth"] is False and doc["corrected_p"] is None
