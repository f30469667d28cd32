"""Deterministic traffic assignment for experiments, inside the agent's process.

A unit (user, session or trace) gets a variant from a hash of the experiment's salt
and the unit id, mapped to [0, 1) and placed against the cumulative weights:

    u = int(blake2b(salt ‖ 0x00 ‖ unit_id, 8 bytes), big-endian) / 2^64
    variant = the first v with u · Σw < w_1 + … + w_v        (zero-weight variants never win)

Same salt, same unit, same weights: same variant — in every call, process and
machine, with no state and no network. A weight change moves only the units whose
``u`` falls between the old and the new boundaries (a ramp-up keeps earlier units
where they were as far as the new split allows).

What the live status means for routing (the configuration is followed live by
:class:`agentgym.producers.follower.ExperimentFollower`):

| status | :func:`assign` returns |
|---|---|
| ``running`` | the hashed variant |
| ``paused`` | the control |
| ``rolled_back`` | the control (its weights are 1 / 0) |
| ``concluded`` | the winner (its weights are 1 / 0) |
| ``draft``, ``stopped``, unknown | ``None``: the agent serves its default model |

Only ``running`` assignments are experiment traffic (``Assignment.active``); the
others still tell the agent which model to serve, so a rollback or a promotion
switches it without a redeploy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Assignment", "unit_bucket", "choose_variant", "assign"]

_TWO_64 = float(2**64)


def unit_bucket(salt: str, unit_id: str) -> float:
    """The unit's uniform position in [0, 1): 64 bits of BLAKE2b over salt, a 0 byte and the unit id."""
    digest = hashlib.blake2b(salt.encode() + b"\x00" + unit_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


def choose_variant(variants: Sequence[Mapping[str, Any]], u: float) -> Mapping[str, Any] | None:
    """The variant whose cumulative-weight slot holds ``u`` (None when all weights are 0)."""
    total = 0.0
    for v in variants:
        w = float(v["weight"])
        if w > 0:
            total += w
    if total <= 0:
        return None
    target = u * total
    acc = 0.0
    last = None
    for v in variants:
        w = float(v["weight"])
        if w <= 0:
            continue
        acc += w
        last = v
        if target < acc:
            return v
    return last  # rounding at the top edge


@dataclass(frozen=True, slots=True)
class Assignment:
    """The variant a unit is served by.

    Attributes:
        experiment_id: the experiment.
        variant: the variant's name.
        model_version: the model version the agent should serve.
        unit_type: ``user``, ``session`` or ``trace``.
        unit_id: the unit.
        config_version: the configuration version that decided it.
        status: the experiment's status at that version.
    """

    experiment_id: str
    variant: str
    model_version: str
    unit_type: str
    unit_id: str
    config_version: int
    status: str

    @property
    def active(self) -> bool:
        """Whether this is experiment traffic (the experiment is running)."""
        return self.status == "running"

    def as_record(self) -> dict[str, str | int]:
        """The ``assignment`` field of an Experience record (Experience v3: with the
        configuration version and status that served the unit, so the experiments engine
        counts it under that status, not under the one current when it arrives)."""
        return {"experiment_id": self.experiment_id, "variant": self.variant, "unit_type": self.unit_type, "unit_id": self.unit_id,
                "config_version": self.config_version, "experiment_status": self.status}


def assign(config: Mapping[str, Any], unit_id: str) -> Assignment | None:
    """The assignment of ``unit_id`` under an ``ExperimentConfig`` record (see the module docstring)."""
    status = config.get("status")
    variants = config.get("variants") or ()
    if status == "running" or status in ("rolled_back", "concluded"):
        v = choose_variant(variants, unit_bucket(config.get("salt") or config["experiment_id"], unit_id))
    elif status == "paused":
        v = next((x for x in variants if x.get("is_control")), None)
    else:
        return None
    if v is None:
        return None
    return Assignment(config["experiment_id"], v["name"], v["model_version"], config.get("unit_type") or "user",
                      unit_id, int(config.get("config_version", 1)), str(status))
