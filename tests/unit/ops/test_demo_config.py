"""The demo's presets (``--fast``, ``--scale``) and the simulated users' reactions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentgym.ops.demo.agents import FeedbackMix, RunResult, SimulatedUsers
from agentgym.ops.demo.loop import DemoConfig
from agentgym.ops.demo.task import Task


def test_presets_scale_the_run_and_explicit_options_win() -> None:
    # without an audit sample (its floor on users is tested below)
    full, fast = DemoConfig.preset(audit_rate=0.0), DemoConfig.preset(fast=True, audit_rate=0.0)
    assert fast.users < full.users and fast.dataset_min_new < full.dataset_min_new and fast.heldout < full.heldout
    assert fast.idle_while_training and not full.idle_while_training  # only --fast stops the traffic while a job trains
    big = DemoConfig.preset(scale=2.0, audit_rate=0.0)
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


def test_an_audit_sample_gets_the_users_it_needs_and_too_few_are_refused_by_name() -> None:
    from agentgym.ops.demo.loop import audit_shortfall

    fast = DemoConfig.preset(fast=True)
    assert fast.audit_rate == 0.2 and fast.review_error == 0.03
    # ~1.6 x the engine's 30 audited units per arm, at weight 0.5
    assert fast.users * 0.5 * fast.audit_rate >= 1.6 * 30 and audit_shortfall(fast) is None
    plain = DemoConfig.preset(fast=True, audit_rate=0.0)
    assert plain.users == fast.users and audit_shortfall(plain) is None  # 1,000 users are more than 0.2 needs
    # a smaller rate needs more units: 1.6 x 30 / (0.05 x 0.5) = 1,920
    assert DemoConfig.preset(fast=True, audit_rate=0.05).users == 1920 > fast.users
    problem = audit_shortfall(DemoConfig.preset(fast=True, users=100))
    assert problem is not None and "--users 100" in problem and "--audit-rate" in problem
    assert "--audit-rate" in (audit_shortfall(DemoConfig.preset(audit_rate=1.0)) or "")
    assert "--review-error" in (audit_shortfall(DemoConfig.preset(review_error=0.5)) or "")


def test_reviewers_label_the_queues_audit_runs_once_with_the_truth_and_their_error_rate() -> None:
    from agentgym.processors.experiments import ExperimentConfig, MetricSpec, VariantSpec
    from agentgym.processors.experiments.engine import in_audit_sample
    from agentgym.ops.demo.reviewers import SimulatedReviewers

    cfg = ExperimentConfig(
        experiment_id="exp-1", tenant_id="demo", agent_id="router",
        variants=(VariantSpec("control", "v1", 0.5, True), VariantSpec("treatment", "v2", 0.5)),
        primary_metric=MetricSpec.of("success_rate"), status="running", audit_rate=0.2).validate()
    rows = [(f"user-{i}", f"t{i}") for i in range(2000)]
    calls: list[dict[str, Any]] = []

    def query(sql: str, **params: Any) -> list[tuple[Any, ...]]:
        calls.append(params)
        assert "pv_experiences" in sql and "pv_feedback" in sql  # the annotation queue's own query
        return rows

    gym = _Gym()
    truth = {f"t{i}": i % 3 != 0 for i in range(2000)}
    reviewers = SimulatedReviewers(gym, query, error_rate=0.1, seed=1)
    posted = reviewers.review(cfg, truth)
    sampled = {t for u, t in rows if in_audit_sample(cfg, u)}
    assert posted == len(sampled) == reviewers.posted and 300 < posted < 500  # ~20% of 2,000 units
    assert {f["trace_id"] for f in gym.feedback} == sampled  # only the audit sample, each once
    assert calls[0] == {"tenant": "demo", "experiment_id": "exp-1", "limit": 5000}
    for f in gym.feedback:
        assert f["source"] == "human" and f["metadata"]["audit"] == "true" and f["metadata"]["experiment_id"] == "exp-1"
    wrong = sum(f["thumbs_up"] != truth[f["trace_id"]] for f in gym.feedback)
    assert wrong == reviewers.wrong and 0.04 * posted < wrong < 0.18 * posted
    assert reviewers.review(cfg, truth) == 0 and len(gym.feedback) == posted  # posted runs are not labelled again
    assert reviewers.review(replace_rate(cfg, 0.0), truth) == 0


def replace_rate(cfg: Any, rate: float) -> Any:
    from dataclasses import replace

    return replace(cfg, audit_rate=rate)
