"""Paraphrasers: rule-based by default, a model from the registry when one is named.

A paraphraser rewrites a request *template* (``"Where is order {order_id}?"``) and must
keep every ``{slot}`` placeholder, so the paraphrase can be filled with the original or
new values and keeps its expected tool call. :class:`ModelParaphraser` checks what the
model wrote (not empty, not a copy, same placeholders, not runaway long) and falls back
to the rules otherwise, counting both; generation is greedy, so a seed still
reproduces a batch with the same model.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from agentgym.processors.datasets.quality import normalize
from agentgym.trainers.modeling import generate, load_for_inference
from agentgym.trainers.registry import ModelRegistry
from agentgym.trainers.synth.text import SYNONYMS, paraphrase_rules, placeholders

__all__ = ["Paraphraser", "RuleParaphraser", "ModelParaphraser", "PARAPHRASE_INSTRUCTION"]

PARAPHRASE_INSTRUCTION = (
    "Rewrite the user's request in different words with the same meaning. Keep every placeholder in curly braces, "
    "such as {order_id}, exactly as written. Answer with the rewritten request only."
)


@runtime_checkable
class Paraphraser(Protocol):
    """Rewrites a request template; ``stats`` counts what happened (reported with the batch)."""

    name: str
    stats: Counter[str]

    def paraphrase(self, text: str, rng: random.Random, protect: Sequence[str] = ()) -> str:
        """A paraphrase of ``text`` keeping its ``{slot}`` placeholders and the ``protect`` values."""
        ...


class RuleParaphraser:
    """Synonym swaps, reordering and framings (:func:`agentgym.trainers.synth.text.paraphrase_rules`).

    Args:
        synonyms: groups of interchangeable phrases (default: the built-in ones; a domain spec adds its own).
    """

    def __init__(self, synonyms: Sequence[Sequence[str]] = SYNONYMS) -> None:
        self.name = "rules"
        self.synonyms = [list(g) for g in synonyms]
        self.stats: Counter[str] = Counter()

    def paraphrase(self, text: str, rng: random.Random, protect: Sequence[str] = ()) -> str:
        self.stats["rules"] += 1
        return paraphrase_rules(text, rng, self.synonyms, protect)


class ModelParaphraser:
    """A language model rewrites the request; the rules step in when its answer is unusable.

    Args:
        generate: messages -> the model's reply (greedy), e.g. ``agentgym.trainers.modeling.generate`` bound to a model.
        name: reported name (``model:<model_version>``).
        fallback: used when the model's paraphrase is rejected.
        max_length_ratio: a paraphrase longer than this many times the request (plus 40 characters) is rejected.
    """

    def __init__(self, generate: Callable[[list[dict[str, str]]], str], name: str,
                 fallback: Paraphraser | None = None, max_length_ratio: float = 3.0) -> None:
        self.name = name
        self._generate = generate
        self.fallback = fallback or RuleParaphraser()
        self.max_length_ratio = max_length_ratio
        self.stats: Counter[str] = Counter()
        self.model: Any = None  # the loaded model, when built by from_registry

    def usable(self, source: str, candidate: str, protect: Sequence[str] = ()) -> str | None:
        """Why ``candidate`` is not a usable paraphrase of ``source`` (None: usable)."""
        if not candidate.strip():
            return "empty"
        if normalize(candidate) == normalize(source):
            return "unchanged"
        if sorted(placeholders(candidate)) != sorted(placeholders(source)):
            return "placeholders"
        if any(v and v.lower() not in candidate.lower() for v in protect):
            return "protected_value"
        if len(candidate) > self.max_length_ratio * len(source) + 40:
            return "too_long"
        return None

    def paraphrase(self, text: str, rng: random.Random, protect: Sequence[str] = ()) -> str:
        if not text.strip():
            return text
        messages = [{"role": "system", "content": PARAPHRASE_INSTRUCTION}, {"role": "user", "content": text}]
        try:
            out = self._generate(messages).strip().splitlines()
            candidate = out[0].strip() if out else ""
        except Exception as exc:  # a broken model must not end the batch: the rules take over
            self.stats[f"model_error:{type(exc).__name__}"] += 1
            candidate = ""
        why = self.usable(text, candidate, protect)
        if why is None:
            self.stats["model_accepted"] += 1
            return candidate
        self.stats[f"model_rejected:{why}"] += 1
        self.stats["fallback_rules"] += 1
        return self.fallback.paraphrase(text, rng, protect)

    @classmethod
    def from_registry(cls, model_version: str, bootstrap_servers: str, max_new_tokens: int = 64) -> "ModelParaphraser":
        """Loads ``model_version`` from the model registry (its base model and LoRA adapter).

        Raises:
            ModelVersionNotFoundError: no such version in the registry.
            RegistryError: the registry cannot be read.
        """
        registry = ModelRegistry(bootstrap_servers)
        try:
            mv = registry.get(model_version)
        finally:
            registry.close()
        model, tokenizer = load_for_inference(mv.base_model, mv.adapter_uri)

        def run(messages: list[dict[str, str]]) -> str:
            return generate(model, tokenizer, messages, max_new_tokens)

        paraphraser = cls(run, f"model:{model_version}")
        paraphraser.model = model
        return paraphraser
