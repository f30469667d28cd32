"""Quality validation of every batch: schema, length, held-out leaks, duplicates; and the diversity score.

:class:`BatchValidator` checks each candidate in turn and keeps the first of
duplicates, rejecting with one reason (the first that applies, in this order):

=============================  ===============================================================
reason                         when
=============================  ===============================================================
``schema_invalid:<field>``     a field of the Scenario record is missing or of the wrong type
``too_long``                   the input exceeds ``max_prompt_chars``
``eval_leak_exact``            it equals a held-out evaluation prompt (normalised)
``eval_leak_near``             it nearly duplicates one (Jaccard >= ``leak_threshold``)
``duplicate_of_real_exact``    it equals a real input
``duplicate_of_real_near``     it nearly duplicates a real input (Jaccard >= ``near_threshold``)
``duplicate_exact``            it equals a scenario accepted before it
``duplicate_near``             it nearly duplicates one
=============================  ===============================================================

Inputs are compared without their system messages (:func:`~agentgym.trainers.synth.scenario.content_key`,
:func:`~agentgym.trainers.synth.scenario.scenario_text`); near duplicates with MinHash LSH
confirmed by exact shingle Jaccard (:class:`SignatureIndex`, the banding of
:class:`agentgym.processors.datasets.quality.NearDuplicateIndex` on signatures computed once per candidate).

Diversity (:func:`diversity`):

* **distinct-n** (Li et al., "A Diversity-Promoting Objective Function for Neural
  Conversation Models", NAACL 2016, §4.2 / Table 1): distinct word n-grams over all
  n-grams of the batch, for n = 1 and 2 (here divided by the n-gram count, the common
  reading that keeps the ratio in [0, 1]).
* **MinHash spread**: the mean estimated Jaccard *distance* between pairs of scenarios,
  ``1 - P[min h(A) = min h(B)]`` estimated by the share of equal MinHash components
  (Broder, "On the resemblance and containment of documents", 1997, Theorem 1); all
  pairs up to ``max_pairs``, else that many pairs sampled with a fixed seed.
* **score**: the mean of distinct-2 and the MinHash spread, in [0, 1].

Pure: no I/O.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agentgym.processors.datasets.quality import MinHasher, jaccard, normalize, shingles
from agentgym.trainers.synth.scenario import Message, Scenario, content_key, scenario_text, schema_problems

__all__ = ["ValidationConfig", "BatchValidator", "SignatureIndex", "Diversity", "diversity", "messages_of", "REASONS"]

REASONS = ("schema_invalid", "too_long", "eval_leak_exact", "eval_leak_near", "duplicate_of_real_exact",
           "duplicate_of_real_near", "duplicate_exact", "duplicate_near")


@dataclass(frozen=True)
class ValidationConfig:
    """Thresholds of :class:`BatchValidator` (defaults: :class:`agentgym.trainers.synth.settings.SynthSettings`).

    Attributes:
        near_threshold: Jaccard at or above which two inputs are near duplicates (1.0: exact only).
        leak_threshold: Jaccard at or above which an input leaks a held-out prompt (1.0: exact only).
        max_prompt_chars: longest input accepted, characters (all messages).
        k: shingle length, characters.
    """

    near_threshold: float = 0.9
    leak_threshold: float = 0.8
    max_prompt_chars: int = 16000
    k: int = 5


@dataclass
class _Signed:
    """A text's shingle set and MinHash signature, computed once per candidate."""

    shingles: set[int]
    signature: np.ndarray


class SignatureIndex:
    """Near-duplicate lookup on precomputed shingles and signatures.

    The same banded LSH with exact-Jaccard confirmation as
    :class:`agentgym.processors.datasets.quality.NearDuplicateIndex` (32 bands of 4 rows of the same
    :class:`~agentgym.processors.datasets.quality.MinHasher`), taking a candidate's shingles and
    signature instead of its text: one candidate is checked against three indexes
    (held-out prompts, real inputs, the batch) and shingling a 12,000-character edge
    case three times dominated the batch time. (``NearDuplicateIndex.find(text)``
    recomputes both on every call.)
    """

    def __init__(self, threshold: float, bands: int = 32, rows: int = 4) -> None:
        self.threshold = threshold
        self.bands, self.rows = bands, rows
        self._buckets: dict[tuple[int, bytes], list[int]] = {}
        self._sets: list[set[int]] = []

    def __len__(self) -> int:
        return len(self._sets)

    def _keys(self, sig: np.ndarray) -> list[tuple[int, bytes]]:
        return [(b, sig[b * self.rows:(b + 1) * self.rows].tobytes()) for b in range(self.bands)]

    def find(self, item: _Signed) -> int | None:
        """The index of an added text at or above the threshold, or None."""
        seen: set[int] = set()
        for key in self._keys(item.signature):
            for i in self._buckets.get(key, ()):
                if i not in seen:
                    seen.add(i)
                    if jaccard(item.shingles, self._sets[i]) >= self.threshold:
                        return i
        return None

    def add(self, item: _Signed) -> None:
        idx = len(self._sets)
        self._sets.append(item.shingles)
        for key in self._keys(item.signature):
            self._buckets.setdefault(key, []).append(idx)


class BatchValidator:
    """Accepts or rejects scenarios one by one; accepted ones join the duplicate index.

    Args:
        config: thresholds.
        real_inputs: the real runs' input messages (a scenario must not copy one).
        held_out: held-out evaluation prompts (a scenario must not leak one).
    """

    def __init__(self, config: ValidationConfig, real_inputs: Iterable[Sequence[Mapping[str, str]]] = (),
                 held_out: Iterable[Sequence[Mapping[str, str]]] = ()) -> None:
        self.config = config
        self.rejected: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.accepted = 0
        self._hasher = MinHasher(32 * 4, seed=1)
        self._held_keys: set[str] = set()
        self._held = SignatureIndex(config.leak_threshold) if config.leak_threshold < 1.0 else None
        for msgs in held_out:
            key = content_key(msgs)
            if key not in self._held_keys:
                self._held_keys.add(key)
                if self._held is not None:
                    self._held.add(self.signed(scenario_text(msgs)))
        self._real_keys: set[str] = set()
        self._real = SignatureIndex(config.near_threshold) if config.near_threshold < 1.0 else None
        for msgs in real_inputs:
            key = content_key(msgs)
            if key not in self._real_keys:
                self._real_keys.add(key)
                if self._real is not None:
                    self._real.add(self.signed(scenario_text(msgs)))
        self._keys: set[str] = set()
        self._batch = SignatureIndex(config.near_threshold) if config.near_threshold < 1.0 else None
        self.signatures: list[np.ndarray] = []  # of the accepted scenarios, in order (for the diversity score)

    def signed(self, text: str) -> _Signed:
        """The shingles and MinHash signature of a text."""
        s = shingles(text, self.config.k)
        return _Signed(s, self._hasher.signature(s))

    @property
    def held_out_count(self) -> int:
        """Distinct held-out prompts checked against."""
        return len(self._held_keys)

    @property
    def real_count(self) -> int:
        """Distinct real inputs checked against."""
        return len(self._real_keys)

    def _reason(self, s: Scenario) -> tuple[str | None, _Signed | None]:
        problems = schema_problems(s)
        if problems:
            return f"schema_invalid:{problems[0]}", None
        if sum(len(m["content"]) for m in s.messages) > self.config.max_prompt_chars:
            return "too_long", None
        key = content_key(s.messages)
        if key in self._held_keys:
            return "eval_leak_exact", None
        item = self.signed(scenario_text(s.messages))
        if self._held is not None and self._held.find(item) is not None:
            return "eval_leak_near", item
        if key in self._real_keys:
            return "duplicate_of_real_exact", item
        if self._real is not None and self._real.find(item) is not None:
            return "duplicate_of_real_near", item
        if key in self._keys:
            return "duplicate_exact", item
        if self._batch is not None and self._batch.find(item) is not None:
            return "duplicate_near", item
        return None, item

    def reason(self, s: Scenario) -> str | None:
        """Why ``s`` is rejected (None: accepted). Does not record anything."""
        return self._reason(s)[0]

    def check(self, s: Scenario) -> str | None:
        """Validates ``s``: returns the rejection reason, or None and adds it to the batch index."""
        why, item = self._reason(s)
        if why is not None:
            self.reject(why, s.text)
            return why
        assert item is not None
        self._keys.add(content_key(s.messages))
        if self._batch is not None:
            self._batch.add(item)
        self.signatures.append(item.signature)
        self.accepted += 1
        return None

    def reject(self, reason: str, text: str = "") -> None:
        """Records a rejection (also used for candidates that could not become a Scenario)."""
        self.rejected[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(text[:160])


@dataclass(frozen=True)
class Diversity:
    """Diversity of a set of texts (all in [0, 1]; higher is more diverse)."""

    n: int
    distinct_1: float
    distinct_2: float
    minhash_spread: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _distinct(token_lists: Sequence[list[str]], n: int) -> float:
    grams: Counter[tuple[str, ...]] = Counter()
    for toks in token_lists:
        grams.update(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def diversity(texts: Sequence[str], *, k: int = 5, num_perm: int = 64, max_pairs: int = 2000, seed: int = 0,
              signatures: Sequence[np.ndarray] | None = None) -> Diversity:
    """Distinct-1, distinct-2 and MinHash spread of ``texts`` (see the module docstring).

    Args:
        signatures: the texts' MinHash signatures when already computed (:attr:`BatchValidator.signatures`).

    Fewer than two texts have a spread of 0.
    """
    tokens = [normalize(t).split() for t in texts]
    d1, d2 = _distinct(tokens, 1), _distinct(tokens, 2)
    n = len(texts)
    spread = 0.0
    if n >= 2:
        if signatures is not None and len(signatures) == n:
            sigs = np.stack(list(signatures))
        else:
            hasher = MinHasher(num_perm, seed=1)
            sigs = np.stack([hasher.signature(shingles(t, k)) for t in texts])
        all_pairs = n * (n - 1) // 2
        if all_pairs <= max_pairs:
            i, j = np.triu_indices(n, 1)
        else:
            rng = random.Random(seed)
            pairs: set[tuple[int, int]] = set()
            while len(pairs) < max_pairs:
                a, b = rng.randrange(n), rng.randrange(n)
                if a != b:
                    pairs.add((min(a, b), max(a, b)))
            ordered = sorted(pairs)
            i = np.array([p[0] for p in ordered])
            j = np.array([p[1] for p in ordered])
        spread = float(1.0 - (sigs[i] == sigs[j]).mean())
    return Diversity(n=n, distinct_1=d1, distinct_2=d2, minhash_spread=spread, score=(d2 + spread) / 2)


def messages_of(rows: Iterable[Mapping[str, Any]]) -> list[list[Message]]:
    """The ``prompt`` messages of dataset rows (what held-out evaluation splits hold)."""
    return [[{"role": m["role"], "content": m["content"]} for m in r["prompt"]] for r in rows if r.get("prompt")]

