"""The online outcome model: a river classifier trained on explicitly labelled traces.

It learns one example at a time (``learn``), from the traces a human labelled, and
labels the others with ``P(success | features)``, calibrated in two steps:

1. **Platt scaling, prequential** (Platt 1999, "Probabilistic outputs for support
   vector machines"): a one-feature logistic regression on the classifier's logit,
   ``P = sigmoid(a * logit(p) + b)``, trained on each labelled trace *before* the
   classifier learns it, so it sees honest out-of-sample scores. It undoes the
   under-confidence of a slowly converging online learner (and a tree's coarse leaves).
2. **Label-noise inversion**: humans are right with probability ``1 - eps`` (the rules'
   ``human_confidence``), so the calibrated P(a human would say success) is
   ``eps + (1 - 2 eps) P(success)`` under symmetric noise (Natarajan et al., "Learning
   with Noisy Labels", NeurIPS 2013, sec. 2); inverting gives
   ``P(success) = (P_human - eps) / (1 - 2 eps)``.

The evaluation measures how well this works (``python -m agentgym.processors.labelling.evaluate``).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import compose, linear_model, optim, preprocessing, tree

from agentgym.processors.labelling.exceptions import ModelConfigError
from agentgym.processors.labelling.features import CATEGORICAL
from agentgym.processors.labelling.rules import ModelKind

__all__ = ["OnlineOutcomeModel", "ProportionStatistic"]


@dataclass(frozen=True)
class ProportionStatistic:
    """Successes out of n trials; mergeable (``a + b`` equals counting both streams)."""

    n: int = 0
    successes: int = 0

    def __add__(self, other: ProportionStatistic) -> ProportionStatistic:
        return ProportionStatistic(self.n + other.n, self.successes + other.successes)

    def add(self, success: bool) -> ProportionStatistic:
        """This statistic with one more trial."""
        return ProportionStatistic(self.n + 1, self.successes + int(success))

    @property
    def smoothed_rate(self) -> float:
        """Laplace's rule of succession, (s + 1) / (n + 2): 0.5 with no data, never 0 or 1."""
        return (self.successes + 1) / (self.n + 2)


_CALIBRATION_WARMUP = 20  # labelled traces scored before Platt scaling is trusted
_P_MIN, _P_MAX = 0.005, 0.995  # logits within +-5.3: keeps the calibrator's SGD steps stable


def _logit(p: float) -> float:
    p = min(_P_MAX, max(_P_MIN, p))
    return math.log(p / (1.0 - p))


def _numeric(x: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in x.items() if not k.startswith(CATEGORICAL)}


def _categorical(x: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in x.items() if k.startswith(CATEGORICAL)}


def _build(kind: ModelKind) -> Any:
    if kind == "logistic_regression":
        # Standardised numeric inputs (one-hot ones unscaled: a sparse indicator is
        # constant wherever present, so a scaler would zero it), SGD on log loss with a
        # little L2; the intercept learns as fast as the weights (river's default 0.01
        # lags the base rate for hundreds of labels)
        return compose.Pipeline(
            compose.TransformerUnion(
                compose.Pipeline(compose.FuncTransformer(_numeric), preprocessing.StandardScaler()),
                compose.FuncTransformer(_categorical),
            ),
            linear_model.LogisticRegression(optimizer=optim.SGD(0.05), intercept_lr=0.05, l2=1e-3),
        )
    if kind == "hoeffding_tree":
        # Naive-Bayes-adaptive leaves give probabilities from the first examples on.
        return tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, leaf_prediction="nba", seed=7)
    raise ModelConfigError(f"unknown model kind {kind!r}; known: logistic_regression, hoeffding_tree")


class OnlineOutcomeModel:
    """A river classifier of success vs failure with a probability.

    Args:
        kind: ``logistic_regression`` (default) or ``hoeffding_tree``.
        calibrate: apply prequential Platt scaling (see the module docstring).
        label_noise: eps, the share of training labels assumed flipped (0: none).
    """

    def __init__(self, kind: ModelKind = "logistic_regression", calibrate: bool = True, label_noise: float = 0.0) -> None:
        if not 0.0 <= label_noise < 0.5:
            raise ModelConfigError(f"label_noise must be in [0, 0.5), got {label_noise}")
        self.kind: ModelKind = kind
        self.calibrate = calibrate
        self.label_noise = label_noise
        self.model = _build(kind)
        # starts as the identity map (a = 1, b = 0)
        self.calibrator = linear_model.LogisticRegression(
            optimizer=optim.SGD(0.05), intercept_lr=0.05, initializer=optim.initializers.Constant(1.0)
        )
        self.n_learned = 0
        self.n_calibrated = 0

    @property
    def name(self) -> str:
        """The model's name as Outcome.labeller reports it."""
        return f"river-{self.kind.replace('_', '-')}"

    @property
    def version(self) -> str:
        """Changes with every example learnt: ``<name>@<n_learned>``."""
        return f"{self.name}@{self.n_learned}"

    def learn(self, features: Mapping[str, float], success: bool) -> None:
        """Learns one labelled trace (the calibrator first, on the not-yet-learnt score)."""
        x = dict(features)
        if self.calibrate and self.n_learned >= _CALIBRATION_WARMUP:
            self.calibrator.learn_one({"logit": _logit(self.raw_proba(x))}, bool(success))
            self.n_calibrated += 1
        self.model.learn_one(x, bool(success))
        self.n_learned += 1

    def raw_proba(self, features: Mapping[str, float]) -> float:
        """The classifier's own P(success); 0.5 before anything was learnt."""
        proba = self.model.predict_proba_one(dict(features))
        if not proba:
            return 0.5
        return float(proba.get(True, 1.0 - proba.get(False, 0.5)))

    def predict_proba(self, features: Mapping[str, float]) -> float:
        """Calibrated P(success) in [0, 1]."""
        p = self.raw_proba(features)
        if self.calibrate and self.n_calibrated >= _CALIBRATION_WARMUP:
            p = float(self.calibrator.predict_proba_one({"logit": _logit(p)}).get(True, p))
        eps = self.label_noise
        if eps:
            p = (p - eps) / (1.0 - 2.0 * eps)  # invert symmetric label noise
        return min(1.0, max(0.0, p))

    def to_bytes(self) -> bytes:
        """A checkpoint (pickle; only ever read back from this app's own changelog topic)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(data: bytes) -> OnlineOutcomeModel:
        """Inverse of :meth:`to_bytes`."""
        model = pickle.loads(data)  # noqa: S301 - our own checkpoint, see to_bytes
        if not isinstance(model, OnlineOutcomeModel):
            raise TypeError(f"not an OnlineOutcomeModel checkpoint: {type(model).__name__}")
        return model
