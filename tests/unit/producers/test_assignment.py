"""Deterministic assignment: stickiness, weights, statuses."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from agentgym.producers.assignment import Assignment, assign, choose_variant, unit_bucket


def _config(status: str = "running", weights: tuple[float, float] = (1.0, 1.0)) -> dict:
    return {
        "experiment_id": "exp1", "salt": "s4lt", "unit_type": "user", "status": status, "config_version": 3,
        "variants": [
            {"name": "control", "model_version": "v3", "weight": weights[0], "is_control": True},
            {"name": "treatment", "model_version": "v4", "weight": weights[1], "is_control": False},
        ],
    }


def test_bucket_is_uniform_in_unit_interval_and_stable() -> None:
    us = [unit_bucket("salt", f"user-{i}") for i in range(20000)]
    assert all(0.0 <= u < 1.0 for u in us)
    assert abs(sum(us) / len(us) - 0.5) < 0.01
    deciles = Counter(int(u * 10) for u in us)
    assert all(abs(c - 2000) < 200 for c in deciles.values())
    # a known value: BLAKE2b-64 of b"salt\x00user-0", so any change of the hashing is caught
    import hashlib
    assert unit_bucket("salt", "user-0") == int.from_bytes(hashlib.blake2b(b"salt\x00user-0", digest_size=8).digest(), "big") / 2**64


def test_assignment_is_sticky_across_processes() -> None:
    here = [assign(_config(), f"u{i}").variant for i in range(50)]  # type: ignore[union-attr]
    code = ("from producers.assignment import assign; import json, sys;"
            "c=json.loads(sys.argv[1]); print(','.join(assign(c, f'u{i}').variant for i in range(50)))")
    import json
    out = subprocess.run([sys.executable, "-c", code, json.dumps(_config())], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == here


@pytest.mark.parametrize(("weights", "share"), [((1, 1), 0.5), ((9, 1), 0.1), ((0.25, 0.75), 0.75), ((1, 0), 0.0)])
def test_weights_give_the_split(weights: tuple[float, float], share: float) -> None:
    n = 20000
    got = sum(assign(_config(weights=weights), f"u{i}").variant == "treatment" for i in range(n)) / n  # type: ignore[union-attr]
    assert abs(got - share) < 0.015


def test_ramp_up_only_moves_units_towards_the_growing_arm() -> None:
    before = {f"u{i}": assign(_config(weights=(0.9, 0.1)), f"u{i}").variant for i in range(5000)}  # type: ignore[union-attr]
    after = {u: assign(_config(weights=(0.5, 0.5)), u).variant for u in before}  # type: ignore[union-attr]
    assert all(after[u] == "treatment" for u, v in before.items() if v == "treatment")


@pytest.mark.parametrize(
    ("status", "weights", "expected"),
    [
        ("draft", (1, 1), None), ("stopped", (1, 1), None), ("paused", (1, 1), "control"),
        ("rolled_back", (1, 0), "control"), ("concluded", (0, 1), "treatment"), ("running", (0, 0), None),
    ],
)
def test_status_decides_routing(status: str, weights: tuple[float, float], expected: str | None) -> None:
    a = assign(_config(status, weights), "someone")
    assert (a.variant if a else None) == expected
    if a is not None:
        assert a.model_version == ("v3" if expected == "control" else "v4")
        assert a.active is (status == "running")
        # the configuration version and the status that served the unit travel with it (Experience v3)
        assert a.as_record() == {"experiment_id": "exp1", "variant": expected, "unit_type": "user", "unit_id": "someone",
                                 "config_version": 3, "experiment_status": status}


def test_choose_variant_edges() -> None:
    vs = [{"name": "a", "weight": 0.0}, {"name": "b", "weight": 1.0}, {"name": "c", "weight": 1.0}]
    assert choose_variant(vs, 0.0)["name"] == "b"  # type: ignore[index]
    assert choose_variant(vs, 0.999999999)["name"] == "c"  # type: ignore[index]
    assert choose_variant([{"name": "a", "weight": 0}], 0.3) is None
    assert isinstance(assign(_config(), "x"), Assignment)
