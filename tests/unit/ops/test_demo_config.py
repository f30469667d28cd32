"""The demo's presets (``--fast``, ``--scale``) and the simulated users' reactions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentgym.ops.demo.agents import FeedbackMix, RunResult, SimulatedUsers
from agentgym.ops.demo.loop import DemoConfig
from agentgym.ops.demo.task import Task


def test_presets_scale_the_run_and_explicit_options_win() -> None:
    full, fast = DemoConfig.preset(), DemoConfig.preset(fast=True)
    assert fast.users < full.users and fast.dataset_min_new < full.dataset_min_new and fast.heldout < full.heldout
    big = DemoConfig.preset(scale=2.0)
    assert big.users == 2 * full.users and big.dataset_min_new == 2 * full.dataset_min_new
    assert big.timeout_s == 2 * full.timeout_s
    tiny = DemoConfig.preset(fast=True, scale=0.01)
    assert tiny.users >= 20 and tiny.min_samples_per_arm >= 10  # floors keep a tiny run meaningful
    assert DemoConfig.preset(fast=True, users=99, seed=None).users == 99
    assert DemoConfig.preset(seed=None).seed == full.seed  # None means "not given"


class _Gym:
    def __init__(self) -> None:
        self.feedback: list[dict[str, Any]] = []

    def record_feedback(self, trace_id: str, **kw: Any) -> str:
        self.feedback.append({"trace_id": trace_id, **kw})
        return "id"


def _run(correct: bool, i: int) -> RunResult:
    task = Task("refund", f"Please refund order {10000 + i}", str(10000 + i))
    return RunResult(f"t{i}", f"u{i % 7}", task, "v1", None, task.expected if correct else "track_order(1)", correct, None, 0.0)


def test_users_react_to_the_truth_with_noise_and_correct_only_wrong_answers() -> None:
    gym = _Gym()
    users = SimulatedUsers(gym, seed=3, mix=FeedbackMix())
    for i in range(2000):
        users.react(_run(i % 2 == 0, i))
    by_trace = {f["trace_id"]: f for f in gym.feedback}
    good = [f for t, f in by_trace.items() if int(t[1:]) % 2 == 0]
    bad = [f for t, f in by_trace.items() if int(t[1:]) % 2 == 1]
    assert all("correction" not in f for f in good)  # nobody corrects a right answer
    corrections = [f for f in bad if "correction" in f]
    assert corrections and all(f["correction"].startswith("create_refund(") for f in corrections)
    up_good = Counter(f.get("thumbs_up") for f in good if "thumbs_up" in f)
    up_bad = Counter(f.get("thumbs_up") for f in bad if "thumbs_up" in f)
    assert up_good[True] > 5 * up_good[False] > 0  # mostly right, some noise
    assert up_bad[False] > 5 * up_bad[True] > 0
    assert users.counts["silence"] > len(gym.feedback) // 2  # most runs get no feedback
    assert sum(users.counts.values()) == 2000
