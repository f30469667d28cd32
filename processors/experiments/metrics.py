"""The metrics an experiment can test: where each comes from and how a unit's value is formed.

Statistics count *units* (users, sessions or traces), not events:

* a ``proportion`` metric takes each unit's **first** observation (0 or 1) — e.g. the
  label of the unit's first labelled outcome; a later revision of that same outcome
  replaces it;
* a ``mean`` metric takes the **mean of the unit's** observations (each capped at the
  metric's ``cap`` first, for heavy tails).

| name | kind | source | value | good direction |
|---|---|---|---|---|
| ``success_rate`` | proportion | Outcome (``gym-outcomes-v1``) | 1 success, 0 failure (``unknown`` is not counted) | increase |
| ``error_rate`` | proportion | Experience with an assignment | 1 unless status is ``ok`` | decrease |
| ``latency_ms`` | mean | Experience | ``latency_ms`` | decrease |
| ``cost_usd`` | mean | Experience | ``cost_usd`` | decrease |
| ``total_tokens`` | mean | Experience | ``prompt_tokens + completion_tokens`` | decrease |
| ``rating`` | mean | Feedback (``gym-feedback-v1``) joined to its trace's assignment | ``rating / rating_scale`` (in [0, 1]) | increase |

Feedback carries no assignment: the processor joins it to the assignment of the
experience of the same trace (see :mod:`agentgym.processors.experiments.processor`). Only
feedback of the sources :data:`RATING_SOURCES` (human ratings) counts by default.

**Audit labels.** An experiment with ``audit_rate > 0`` has a random audit sample of units
(:func:`agentgym.processors.experiments.engine.in_audit_sample`); a reviewer's gold label
of such a unit's trace is a Feedback with ``source = human`` and the marker
``metadata["audit"] = "true"`` (:func:`is_audit_label`); its value (:func:`gold_label`)
is ``thumbs_up`` (success: true), else ``value`` >= 0.5, else ``rating / rating_scale`` >= 0.5.
It corrects ``success_rate`` (:mod:`agentgym.processors.stats.ppi`). Feedback without
the marker, and marked feedback on a unit outside the sample, is never used as an audit
label: feedback that users chose to give is not a random sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MetricDefinition", "METRICS", "EXPOSURE", "RATING_SOURCES", "Source", "observations", "normalised_rating",
           "AUDIT_MARKER", "AUDITED_METRIC", "is_audit_label", "gold_label"]

Source = Literal["outcome", "experience", "feedback"]
EXPOSURE = "__units__"  # the pseudo-metric that counts each unit once, for the SRM check
RATING_SOURCES: frozenset[str] = frozenset({"human"})  # feedback sources the rating metric counts by default
AUDIT_MARKER = "audit"  # Feedback.metadata key whose value "true" marks a reviewer's audit label
AUDITED_METRIC = "success_rate"  # the metric the audit sample corrects


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """One metric of the catalogue.

    Attributes:
        name: the metric's name in an experiment's configuration.
        kind: ``proportion`` (a unit's first 0/1 value) or ``mean`` (a unit's mean).
        source: the record type it is read from.
        extract: the value of one record, or None when the record says nothing about it.
        direction: which way is better (the default of a configuration).
    """

    name: str
    kind: Literal["proportion", "mean"]
    source: Source
    extract: Callable[[dict[str, Any]], float | None]
    direction: Literal["increase", "decrease"]


def _label(record: dict[str, Any]) -> float | None:
    label = record.get("label")
    return 1.0 if label == "success" else 0.0 if label == "failure" else None


def normalised_rating(record: dict[str, Any]) -> float | None:
    """A Feedback's ``rating / rating_scale``, clipped to [0, 1]; None without a rating or a positive scale."""
    rating, scale = record.get("rating"), record.get("rating_scale", 5.0)
    if rating is None or scale is None or not float(scale) > 0:
        return None
    return min(1.0, max(0.0, float(rating) / float(scale)))


METRICS: dict[str, MetricDefinition] = {
    m.name: m
    for m in (
        MetricDefinition("success_rate", "proportion", "outcome", _label, "increase"),
        MetricDefinition("error_rate", "proportion", "experience", lambda r: 0.0 if r.get("status") == "ok" else 1.0, "decrease"),
        MetricDefinition("latency_ms", "mean", "experience", lambda r: float(r["latency_ms"]), "decrease"),
        MetricDefinition("cost_usd", "mean", "experience", lambda r: float(r.get("cost_usd") or 0.0), "decrease"),
        MetricDefinition("total_tokens", "mean", "experience",
                         lambda r: float((r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0)), "decrease"),
        MetricDefinition("rating", "mean", "feedback", normalised_rating, "increase"),
    )
}


def observations(source: Source, record: dict[str, Any], metric_names: set[str]) -> dict[str, float]:
    """The values ``record`` holds for the metrics in ``metric_names`` that come from ``source``."""
    out: dict[str, float] = {}
    for name in metric_names:
        m = METRICS.get(name)
        if m is None or m.source != source:
            continue
        value = m.extract(record)
        if value is not None:
            out[name] = value
    return out


def is_audit_label(record: dict[str, Any]) -> bool:
    """Whether a Feedback record is a reviewer's audit label: ``source = human`` and ``metadata["audit"] = "true"``."""
    marker = str((record.get("metadata") or {}).get(AUDIT_MARKER, "")).strip().lower()
    return record.get("source", "human") == "human" and marker in ("true", "1", "yes")


def gold_label(record: dict[str, Any]) -> float | None:
    """The gold success label (1.0 / 0.0) of an audit Feedback, or None when it holds none.

    ``thumbs_up`` if set, else ``value`` >= 0.5, else ``rating / rating_scale`` >= 0.5.
    """
    if not is_audit_label(record):
        return None
    if record.get("thumbs_up") is not None:
        return 1.0 if record["thumbs_up"] else 0.0
    if record.get("value") is not None:
        return 1.0 if float(record["value"]) >= 0.5 else 0.0
    rating = normalised_rating(record)
    return None if rating is None else (1.0 if rating >= 0.5 else 0.0)
