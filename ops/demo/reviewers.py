"""Simulated reviewers: they label the runs of the experiment's audit sample, as the annotation queue offers them.

The demo's stack runs no API (Kafka, the Faust worker and the trainer service only), so
the reviewers do not call ``GET /v1/annotations/next`` / ``POST /v1/annotations/{trace_id}``.
They take the queue's own path one level down, which is the part the decision depends on:

* **which runs**: the queue's query (:data:`agentgym.gateway.annotations._CANDIDATES_SQL`,
  run here with the same parameters against the worker's ClickHouse): per unit of the
  experiment, its first run the labeller labelled, without an audit label yet, oldest
  first; of those, the units of the audit sample
  (:func:`agentgym.processors.experiments.engine.in_audit_sample`), as the gateway keeps
  them. A run posted here stays out of the queue until the sink stored its label, as
  the gateway's leases keep it.
* **what they write**: the record ``POST /v1/annotations/{trace_id}`` produces: a Feedback
  encoded by the SDK's ``encode_feedback`` (``thumbs_up`` = the verdict, ``source = "human"``,
  ``metadata = {"audit": "true", "experiment_id": ..., "reviewer": ...}``) sent to
  ``gym-feedback-v1`` keyed by the trace id (the gateway's ``prepare`` + ``send_encoded``
  is the same encoder and topic).

A reviewer's verdict is the simulator's ground truth of the run (whether the tool call
was right), wrong with probability ``error_rate`` (seeded): the audit labels are the
only place the truth enters the experiment, which is what prediction-powered inference
is for. The reviewers never see the run's variant, model version or the labeller's label.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentgym.gateway.annotations import CANDIDATES, _CANDIDATES_SQL
from agentgym.processors.experiments.config import ExperimentConfig
from agentgym.processors.experiments.engine import in_audit_sample
from agentgym.processors.experiments.metrics import AUDIT_MARKER

__all__ = ["Review", "SimulatedReviewers"]


@dataclass(frozen=True)
class Review:
    """One posted audit label."""

    trace_id: str
    unit_id: str
    reviewer: str
    verdict: bool  # what the reviewer said
    truth: bool  # the simulator's ground truth of the run


@dataclass
class SimulatedReviewers:
    """Reviewers working through an experiment's audit sample.

    Args:
        gym: the SDK client (``AgentGym``) that sends the Feedback.
        query: ``(sql, **params) -> rows`` against the worker's ClickHouse.
        error_rate: the chance a verdict contradicts the truth (0 <= e < 0.5).
        seed: the errors' random seed.
        names: the reviewers (each label names one, in turn).
    """

    gym: Any
    query: Callable[..., list[tuple[Any, ...]]]
    error_rate: float = 0.03
    seed: int = 0
    names: tuple[str, ...] = ("reviewer-ana", "reviewer-ben")
    reviews: dict[str, Review] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate < 0.5:
            raise ValueError(f"error_rate: must be in [0, 0.5), got {self.error_rate}")
        self._rng = random.Random(self.seed)

    def review(self, config: ExperimentConfig, truth: Mapping[str, bool]) -> int:
        """Labels every run of the audit sample the queue offers now; returns how many were posted.

        ``truth``: trace id -> whether the run was right (the simulator's; a run missing
        from it is left for a later call).
        """
        if config.audit_rate <= 0:
            return 0
        rows = self.query(_CANDIDATES_SQL, tenant=config.tenant_id, experiment_id=config.experiment_id, limit=CANDIDATES)
        posted = 0
        for unit_id, trace_id in rows:
            unit_id, trace_id = str(unit_id), str(trace_id)
            if trace_id in self.reviews or trace_id not in truth or not in_audit_sample(config, unit_id):
                continue
            right = bool(truth[trace_id])
            verdict = right if self._rng.random() >= self.error_rate else not right
            reviewer = self.names[len(self.reviews) % len(self.names)]
            self.gym.record_feedback(trace_id, thumbs_up=verdict, source="human",
                                     metadata={AUDIT_MARKER: "true", "experiment_id": config.experiment_id,
                                               "reviewer": reviewer})
            self.reviews[trace_id] = Review(trace_id, unit_id, reviewer, verdict, right)
            posted += 1
        return posted

    @property
    def posted(self) -> int:
        return len(self.reviews)

    @property
    def wrong(self) -> int:
        """Posted verdicts that contradict the truth."""
        return sum(r.verdict != r.truth for r in self.reviews.values())
