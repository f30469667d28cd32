"""Labelled runs -> SFT examples and preference pairs: what is kept, what is dropped, how splits fall."""

from __future__ import annotations

from agentgym.processors.datasets.examples import LabelledRun, QualityConfig, build_examples, prompt_text
from agentgym.processors.datasets.quality import LengthLimits, NearDuplicateIndex, Scrubber


def run(trace: str, question: str, output: str | None, label: str, *, correction: str | None = None,
        confidence: float = 0.9, version: str = "rules-1") -> LabelledRun:
    return LabelledRun(
        tenant_id="t", agent_id="a", trace_id=trace,
        messages=({"role": "system", "content": "be brief"}, {"role": "user", "content": question}),
        output=output, label=label, confidence=confidence, labeller="rules", labeller_version=version,
        corrected_output=correction,
    )


NO_SPLIT = QualityConfig(eval_fraction=0.0)


def test_sft_examples_come_from_successes_and_corrections() -> None:
    runs = [
        run("s1", "where is order 1?", "It shipped.", "success"),
        run("f1", "where is order 2?", "No idea.", "failure", correction="It is in Berlin."),
        run("f2", "where is order 3?", "No idea.", "failure"),  # no correction: no SFT example
        run("u1", "where is order 4?", "Maybe.", "unknown"),
        run("l1", "where is order 5?", "It shipped.", "success", confidence=0.2),
    ]
    out = build_examples(runs, NO_SPLIT)
    assert [(e.trace_id, e.completion, e.source) for e in out.sft] == [
        ("s1", "It shipped.", "success"), ("f1", "It is in Berlin.", "correction")]
    assert out.sft[0].prompt == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "where is order 1?"}]
    assert out.sft[0].row()["completion"] == [{"role": "assistant", "content": "It shipped."}]
    assert out.dropped["unlabelled"] == 1 and out.dropped["low_confidence"] == 1
    assert out.runs_read == 5


def test_preference_pairs_share_the_prompt_chosen_is_right_rejected_is_the_failure() -> None:
    runs = [
        run("f1", "refund order 7", "Refunds are impossible.", "failure", correction="I have refunded order 7."),
        run("s2", "reset my password", "Use the reset link we emailed.", "success"),
        run("f2", "reset my password", "I cannot help.", "failure"),  # paired with the success s2
        run("f3", "cancel order 9", "Done?", "failure"),  # neither correction nor success: no pair
        run("f4", "track order 3", "In transit.", "failure", correction="in transit."),  # same text: no pair
    ]
    out = build_examples(runs, NO_SPLIT)
    pairs = {(p.trace_id, p.chosen_trace_id): p for p in out.preference}
    assert set(pairs) == {("f1", "f1"), ("f2", "s2")}
    assert (pairs[("f1", "f1")].chosen, pairs[("f1", "f1")].rejected, pairs[("f1", "f1")].source) == (
        "I have refunded order 7.", "Refunds are impossible.", "correction")
    p = pairs[("f2", "s2")]
    assert (p.chosen, p.rejected, p.source) == ("Use the reset link we emailed.", "I cannot help.", "success")
    assert p.row()["prompt"][-1]["content"] == "reset my password"
    assert out.dropped["pair_identical"] == 1
    assert out.trace_ids() == ["f1", "f2", "f4", "s2"]


def test_duplicates_are_removed_exact_and_near_keeping_the_first() -> None:
    base = "Your order ships from our Hamburg warehouse within two business days of payment."
    runs = [
        run("a", "when does my order ship?", base, "success"),
        run("b", "When does my order  ship?", base.upper(), "success"),  # exact after normalisation
        run("c", "when does my order ship?", base.replace("two", "2"), "success"),  # near duplicate
        run("d", "how do I return an item?", "Use the returns form.", "success"),
    ]
    out = build_examples(runs, QualityConfig(eval_fraction=0.0, near_duplicate_threshold=0.85))
    assert [e.trace_id for e in out.sft] == ["a", "d"]
    assert out.dropped["sft_duplicate_exact"] == 1 and out.dropped["sft_duplicate_near"] == 1
    # with near-duplicate detection off (threshold 1), only the exact copy goes
    out = build_examples(runs, QualityConfig(eval_fraction=0.0, near_duplicate_threshold=1.0))
    assert [e.trace_id for e in out.sft] == ["a", "c", "d"]


def test_scrubbing_and_length_limits_apply_to_every_text() -> None:
    runs = [
        run("a", "my email is bob@example.com, key sk-abcdefghijklmnopqrstuvwxyz", "Noted, bob@example.com.", "success"),
        run("b", "x" * 500, "ok", "success"),
        run("c", "short", "", "success"),
        run("d", "fine", "y" * 300, "failure", correction="z" * 300),
    ]
    cfg = QualityConfig(eval_fraction=0.0, limits=LengthLimits(max_prompt_chars=200, max_completion_chars=100))
    out = build_examples(runs, cfg, Scrubber())
    assert [e.trace_id for e in out.sft] == ["a"]
    assert out.sft[0].prompt[1]["content"] == "my email is <EMAIL>, key <API_KEY>"
    assert out.sft[0].completion == "Noted, <EMAIL>."
    assert out.scrubbed == {"email": 2, "api_key": 1}
    assert out.dropped["sft_too_long"] == 2 and out.dropped["no_output"] == 1
    assert out.dropped["pair_too_long"] == 1


def test_eval_split_never_shares_a_prompt_with_training_exact_or_near() -> None:
    runs = []
    for i in range(400):
        q = f"customer {i} asks: what is the status of parcel number {i * 7919 % 100003}?"
        runs.append(run(f"s{i}", q, f"Parcel {i} is on its way.", "success"))
        # the same prompt again with another answer, and a near copy of the prompt
        runs.append(run(f"t{i}", q, f"Parcel {i} arrives tomorrow.", "success"))
        runs.append(run(f"u{i}", q.replace("asks", "asks politely"), f"Parcel {i} left the depot.", "success"))
    cfg = QualityConfig(eval_fraction=0.2, near_duplicate_threshold=0.8)
    out = build_examples(runs, cfg)
    train = [e for e in out.sft if e.split == "train"]
    evals = [e for e in out.sft if e.split == "eval"]
    assert 40 < len({e.prompt_key for e in evals}) < 160 and train
    assert not {e.prompt_key for e in train} & {e.prompt_key for e in evals}
    index = NearDuplicateIndex(threshold=0.8)
    for e in evals:
        index.add(e.prompt_key, prompt_text(e.prompt))
    assert all(index.find(prompt_text(e.prompt)) is None for e in train)
    assert out.dropped["sft_eval_overlap"] > 0  # the near copies of held-out prompts left training
    # splits depend on the prompt only: rebuilding gives the same examples in the same splits
    again = build_examples(runs, cfg)
    assert [(e.trace_id, e.split) for e in again.sft] == [(e.trace_id, e.split) for e in out.sft]
