"""Multiple-comparison corrections for experiments with more than two variants.

Each treatment is compared with the control; with m comparisons the family-wise
error rate is controlled by

* Bonferroni: p̃_i = min(1, m·p_i);
* Holm (1979, "A simple sequentially rejective multiple test procedure",
  *Scandinavian Journal of Statistics* 6(2), §2): with p_(1) ≤ … ≤ p_(m),
  p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)).

Both only need each p-value to be valid at the (stopping) time it is used, so they
apply to always-valid p-values as they are (Johari et al. 2022, §6, multiple testing
with always-valid p-values). Confidence sequences use the Bonferroni level α/m.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from agentgym.processors.stats.exceptions import InvalidParameterError

__all__ = ["bonferroni", "holm", "adjust_p_values", "Correction"]

Correction = Literal["holm", "bonferroni", "none"]


def _check_p_values(p_values: Sequence[float]) -> None:
    # a NaN would sort anywhere and poison every adjusted value: refuse it
    for i, p in enumerate(p_values):
        if not 0.0 <= p <= 1.0:
            raise InvalidParameterError(f"p_values[{i}] must be in [0, 1], got {p}")


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values, same order.

    Raises:
        InvalidParameterError: a p-value is NaN or outside [0, 1] (naming its index).
    """
    _check_p_values(p_values)
    m = len(p_values)
    return [min(1.0, m * p) for p in p_values]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, same order (Holm 1979).

    Raises:
        InvalidParameterError: a p-value is NaN or outside [0, 1] (naming its index).
    """
    _check_p_values(p_values)
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def adjust_p_values(p_values: Sequence[float], method: Correction = "holm") -> list[float]:
    """Adjusted p-values by ``method`` (unchanged for one comparison or ``"none"``)."""
    _check_p_values(p_values)
    if len(p_values) <= 1 or method == "none":
        return list(p_values)
    if method == "bonferroni":
        return bonferroni(p_values)
    if method == "holm":
        return holm(p_values)
    raise InvalidParameterError(f"unknown correction {method!r}; use holm, bonferroni or none")
