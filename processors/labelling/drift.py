"""Drift of each model version's success rate, detected with river's ADWIN.

ADWIN (Bifet & Gavaldà, "Learning from Time-Changing Data with Adaptive Windowing",
SDM 2007) keeps a window of recent 0/1 outcomes and drops its older part whenever
the means of the two sub-windows differ by more than
``eps_cut = sqrt(1/(2m) * ln(4/delta'))`` (their Theorem 3.1, with m the harmonic
mean of the sub-window sizes); the false-alarm rate is bounded by ``delta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from river import drift

__all__ = ["DriftEvent", "SuccessRateDriftMonitor"]


@dataclass(frozen=True)
class DriftEvent:
    """A detected change of one model version's success rate.

    Attributes:
        estimate_before: success rate of the part of the window ADWIN dropped (the old regime).
        estimate_after: success rate of the window it kept (the new regime).
        n: outcomes of this model version seen so far.
    """

    model_version: str
    metric: str
    detector: str
    estimate_before: float
    estimate_after: float
    n: int


@dataclass
class SuccessRateDriftMonitor:
    """One ADWIN per model version, fed 1 for success and 0 for failure.

    Args:
        delta: ADWIN's confidence (smaller: fewer false alarms, later detection).
        grace_period: observations before a version may signal drift.
    """

    delta: float = 0.002
    grace_period: int = 30
    detectors: dict[str, drift.ADWIN] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def detector_name(self) -> str:
        return f"ADWIN(delta={self.delta:g})"

    def update(self, model_version: str, success: bool) -> DriftEvent | None:
        """Adds one outcome; returns the drift it revealed, if any."""
        det = self.detectors.get(model_version)
        if det is None:
            det = self.detectors[model_version] = drift.ADWIN(delta=self.delta, grace_period=self.grace_period)
        n = self.counts[model_version] = self.counts.get(model_version, 0) + 1
        x = 1.0 if success else 0.0
        width_before, mean_before = det.width, det.estimation
        det.update(x)
        if not det.drift_detected:
            return None
        # the dropped (old) part's mean: everything seen in the window, minus what was kept
        kept_sum = det.estimation * det.width
        dropped = width_before + 1 - det.width
        old_mean = (mean_before * width_before + x - kept_sum) / dropped if dropped > 0 else mean_before
        return DriftEvent(
            model_version=model_version,
            metric="success_rate",
            detector=self.detector_name,
            estimate_before=min(1.0, max(0.0, old_mean)),
            estimate_after=float(det.estimation),
            n=n,
        )
