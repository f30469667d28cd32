"""From labelled runs to training examples: SFT examples and preference pairs.

Pure: takes :class:`LabelledRun` values (an experience joined with its latest
outcome), returns examples in the conversational *prompt-completion* form TRL reads
(``prompt``: the run's input messages; ``completion`` / ``chosen`` / ``rejected``: one
assistant message). The chat template is applied at training time with the base
model's own template (``agentgym.trainers.modeling``): a dataset does not know which model will
be trained on it.

What becomes what:

* **SFT**: a successful run (prompt -> its output); a failed run whose correction
  supplies the right output (prompt -> the correction).
* **Preference pairs** (same prompt): a failed run with a correction (chosen: the
  correction, rejected: the failed output); a failed run without one, when a
  successful run of the same agent had the same prompt (chosen: that output).

Quality (:mod:`agentgym.processors.datasets.quality`): secrets and personal data scrubbed,
length limits, exact then near duplicates removed (the first kept, in the order given:
callers pass the newest, most confident runs first), and the eval split chosen by a
hash of the prompt; a training example whose prompt nearly duplicates a held-out
prompt is dropped, so the held-out split shares no prompt with training, exact or near.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentgym.processors.datasets.quality import LengthLimits, NearDuplicateIndex, Scrubber, exact_key, normalize, prompt_key, split_of

__all__ = [
    "LabelledRun",
    "SftExample",
    "PreferencePair",
    "QualityConfig",
    "BuildResult",
    "build_examples",
    "prompt_text",
]

Split = Literal["train", "eval"]


@dataclass(frozen=True)
class LabelledRun:
    """One run and its latest outcome, as the builder reads them from ClickHouse.

    Attributes:
        messages: the run's input, ``[{"role": ..., "content": ...}, ...]``.
        output: what the agent answered (None when it produced nothing).
        label: ``success`` or ``failure`` (others are ignored).
        confidence: the label's confidence in [0, 1].
        corrected_output: the right output, when feedback supplied one.
        labelled_ms: when the outcome reached the store (Unix ms): the dataset watermark.
    """

    tenant_id: str
    agent_id: str
    trace_id: str
    messages: tuple[Mapping[str, str], ...]
    output: str | None
    label: str
    confidence: float
    labeller: str = ""
    labeller_version: str = ""
    corrected_output: str | None = None
    model_version: str = ""
    labelled_ms: int = 0


@dataclass
class SftExample:
    prompt: list[dict[str, str]]
    completion: str
    trace_id: str
    labeller_version: str
    source: Literal["success", "correction"]
    prompt_key: str
    split: Split = "train"

    def row(self) -> dict[str, Any]:
        """The Parquet row (TRL's conversational prompt-completion form plus lineage)."""
        return {
            "prompt": self.prompt,
            "completion": [{"role": "assistant", "content": self.completion}],
            "trace_id": self.trace_id,
            "labeller_version": self.labeller_version,
            "source": self.source,
            "prompt_key": self.prompt_key,
        }


@dataclass
class PreferencePair:
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    trace_id: str  # the failed run's trace
    chosen_trace_id: str  # the correction's (same trace) or the successful run's
    labeller_version: str
    source: Literal["correction", "success"]
    prompt_key: str
    split: Split = "train"

    def row(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
            "trace_id": self.trace_id,
            "chosen_trace_id": self.chosen_trace_id,
            "labeller_version": self.labeller_version,
            "source": self.source,
            "prompt_key": self.prompt_key,
        }


@dataclass(frozen=True)
class QualityConfig:
    """What :func:`build_examples` keeps (defaults: ``agentgym.processors.datasets.settings.DatasetSettings``)."""

    min_confidence: float = 0.7
    eval_fraction: float = 0.1
    near_duplicate_threshold: float = 0.9
    limits: LengthLimits = LengthLimits()
    split_salt: str = ""


@dataclass
class BuildResult:
    """Examples and what happened on the way.

    Attributes:
        dropped: reason -> count (``low_confidence``, ``no_output``, ``too_long``,
            ``too_short``, ``duplicate_exact``, ``duplicate_near``, ``eval_overlap``, ...).
        scrubbed: scrubber -> replacements made.
    """

    sft: list[SftExample] = field(default_factory=list)
    preference: list[PreferencePair] = field(default_factory=list)
    runs_read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    scrubbed: Counter[str] = field(default_factory=Counter)

    def trace_ids(self) -> list[str]:
        """Every trace an example came from, once, sorted."""
        ids = {e.trace_id for e in self.sft}
        for p in self.preference:
            ids.update((p.trace_id, p.chosen_trace_id))
        return sorted(ids)


def prompt_text(messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt as near-duplicate detection compares it: its turns without the system prompt.

    An agent sends the same (often long) system prompt with every request; left in,
    it would make every two prompts look alike.
    """
    turns = [m for m in messages if m["role"] != "system"] or list(messages)
    return "\n".join(f"{m['role']}: {m['content']}" for m in turns)


class _Dedup:
    """Exact then near-duplicate removal for one example kind."""

    def __init__(self, threshold: float) -> None:
        self.exact: set[str] = set()
        self.near = NearDuplicateIndex(threshold=threshold) if threshold < 1.0 else None

    def duplicate(self, key: str, text: str) -> str | None:
        if key in self.exact:
            return "duplicate_exact"
        if self.near is not None and self.near.add(key, text) is not None:
            return "duplicate_near"
        self.exact.add(key)
        return None


def build_examples(runs: Iterable[LabelledRun], config: QualityConfig, scrubber: Scrubber | None = None) -> BuildResult:
    """Builds SFT examples and preference pairs from labelled runs.

    Args:
        runs: newest and most trusted first (the first of duplicates is kept).
        config: thresholds and limits.
        scrubber: applied to every message, output and correction (None: no scrubbing).
    """
    out = BuildResult()
    scrub = scrubber.scrub if scrubber is not None else (lambda t: (t, {}))

    def clean(text: str) -> str:
        cleaned, counts = scrub(text)
        out.scrubbed.update(counts)
        return cleaned

    kept: list[tuple[LabelledRun, list[dict[str, str]], str | None, str | None]] = []
    for run in runs:
        out.runs_read += 1
        if run.label not in ("success", "failure"):
            out.dropped["unlabelled"] += 1
            continue
        if run.confidence < config.min_confidence:
            out.dropped["low_confidence"] += 1
            continue
        if not run.messages:
            out.dropped["no_prompt"] += 1
            continue
        prompt = [{"role": m["role"], "content": clean(m["content"])} for m in run.messages]
        output = clean(run.output) if run.output else None
        correction = clean(run.corrected_output) if run.corrected_output else None
        kept.append((run, prompt, output, correction))

    # successes by prompt, for pairs of failed runs that have no correction
    success_by_prompt: dict[str, tuple[LabelledRun, str]] = {}
    for run, prompt, output, _ in kept:
        if run.label == "success" and output:
            success_by_prompt.setdefault(prompt_key(prompt), (run, output))

    sft_dedup = _Dedup(config.near_duplicate_threshold)
    pair_dedup = _Dedup(config.near_duplicate_threshold)
    for run, prompt, output, correction in kept:
        pk = prompt_key(prompt)
        ptext = prompt_text(prompt)
        plen = sum(len(m["content"]) for m in prompt)
        if run.label == "success":
            target, source = output, "success"
        else:
            target, source = correction, "correction"
        if target is not None and normalize(target):
            why = config.limits.violation(plen, len(target)) or sft_dedup.duplicate(exact_key(pk, target), f"{ptext}\n{target}")
            if why:
                out.dropped[f"sft_{why}"] += 1
            else:
                out.sft.append(SftExample(prompt, target, run.trace_id, run.labeller_version, source, pk))  # type: ignore[arg-type]
        elif run.label == "success":
            out.dropped["no_output"] += 1

        if run.label != "failure" or not output:
            continue
        if correction is not None:
            chosen, chosen_trace, pair_source = correction, run.trace_id, "correction"
        elif pk in success_by_prompt:
            s_run, s_out = success_by_prompt[pk]
            chosen, chosen_trace, pair_source = s_out, s_run.trace_id, "success"
        else:
            continue
        if normalize(chosen) == normalize(output):
            out.dropped["pair_identical"] += 1
            continue
        why = config.limits.violation(plen, max(len(chosen), len(output))) or pair_dedup.duplicate(
            exact_key(pk, chosen, output), f"{ptext}\n{chosen}\n{output}")
        if why:
            out.dropped[f"pair_{why}"] += 1
            continue
        out.preference.append(PreferencePair(prompt, chosen, output, run.trace_id, chosen_trace, run.labeller_version,
                                             pair_source, pk))  # type: ignore[arg-type]

    _split(out.sft, config, out.dropped, "sft")
    _split(out.preference, config, out.dropped, "pair")
    return out


def _split(examples: list[Any], config: QualityConfig, dropped: Counter[str], kind: str) -> None:
    """Assigns splits by prompt hash, then drops training examples whose prompt nearly duplicates an eval prompt."""
    for e in examples:
        e.split = split_of(e.prompt_key, config.eval_fraction, config.split_salt)
    eval_keys = {e.prompt_key for e in examples if e.split == "eval"}
    if not eval_keys:
        return
    index = NearDuplicateIndex(threshold=config.near_duplicate_threshold) if config.near_duplicate_threshold < 1.0 else None
    if index is not None:
        for e in examples:
            if e.split == "eval":
                index.add(e.prompt_key, prompt_text(e.prompt))
    keep = []
    for e in examples:
        if e.split == "train" and index is not None and index.find(prompt_text(e.prompt)) is not None:
            dropped[f"{kind}_eval_overlap"] += 1
            continue
        keep.append(e)
    examples[:] = keep
