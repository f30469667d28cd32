"""Data quality on the way into a dataset: scrubbing, duplicates, length limits, splits.

Pure functions and small classes: no Kafka, no ClickHouse, no files.

* :class:`Scrubber` replaces secrets and personal data (emails, phone numbers, API
  keys and other credentials, card numbers, IP addresses, and any extra regex) by a
  placeholder such as ``<EMAIL>``, counting what it replaced.
* :func:`exact_key` and :class:`NearDuplicateIndex` remove exact and near duplicates.
  Near duplicates are found with MinHash over character shingles and banded LSH
  (Broder, "On the resemblance and containment of documents", 1997; Leskovec,
  Rajaraman & Ullman, *Mining of Massive Datasets*, 3rd ed., §3.4), and every
  candidate pair is confirmed with the exact Jaccard similarity of its shingle sets,
  so the threshold is exact and LSH only saves comparisons.
* :func:`split_of` puts a prompt into ``train`` or ``eval`` from a hash of the prompt
  alone: the same prompt always lands in the same split, in this dataset and in every
  later one, so a held-out prompt is never trained on.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agentgym.processors.datasets.exceptions import ScrubberConfigError
from agentgym.producers.masking import BUILTIN_PATTERNS, Masker, MaskingConfigError

__all__ = [
    "BUILTIN_PATTERNS",
    "Scrubber",
    "normalize",
    "exact_key",
    "prompt_key",
    "shingles",
    "jaccard",
    "MinHasher",
    "NearDuplicateIndex",
    "LengthLimits",
    "split_of",
]

class Scrubber:
    """Replaces secrets and personal data in text: the ingestion masker's detectors
    (:class:`agentgym.producers.masking.Masker`), counting what it replaced.

    Args:
        enabled: names of built-in scrubbers (:data:`BUILTIN_PATTERNS`), in order.
        extra: more scrubbers, name -> regex; a match becomes ``<NAME>``.

    Raises:
        ScrubberConfigError: an unknown built-in name or an invalid extra regex.
    """

    def __init__(self, enabled: Sequence[str] = ("email", "phone", "api_key", "credit_card"),
                 extra: Mapping[str, str] | None = None) -> None:
        unknown = [n for n in enabled if n not in BUILTIN_PATTERNS]
        if unknown:
            raise ScrubberConfigError(f"unknown scrubber(s) {unknown}; known: {sorted(BUILTIN_PATTERNS)}")
        for name, pattern in (extra or {}).items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ScrubberConfigError(f"scrub pattern {name!r} is not a valid regex: {exc}") from None
        try:
            self._masker = Masker(enabled, extra)
        except MaskingConfigError as exc:
            raise ScrubberConfigError(str(exc)) from None

    @property
    def names(self) -> list[str]:
        return self._masker.names

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` with every match replaced, and how many matches each scrubber replaced."""
        return self._masker.scrub(text)


def normalize(text: str) -> str:
    """NFKC, lower case, whitespace collapsed: the form duplicates are compared in."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def prompt_key(messages: Sequence[Mapping[str, str]]) -> str:
    """A stable id of a prompt (its messages, normalised): equal prompts, equal keys."""
    return _digest(*(f"{m['role']}:{normalize(m['content'])}" for m in messages))


def exact_key(*texts: str) -> str:
    """A stable id of normalised texts (prompt and completion): exact duplicates share it."""
    return _digest(*(normalize(t) for t in texts))


def shingles(text: str, k: int = 5) -> set[int]:
    """The set of character k-shingles of the normalised text, as 32-bit CRCs."""
    t = normalize(text)
    if len(t) <= k:
        return {zlib.crc32(t.encode("utf-8"))}
    return {zlib.crc32(t[i:i + k].encode("utf-8")) for i in range(len(t) - k + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


_MERSENNE = np.uint64((1 << 31) - 1)


class MinHasher:
    """MinHash signatures with ``num_perm`` hash functions ``h(x) = (a x + b) mod p``.

    p = 2^31 - 1; shingles are 32-bit, so ``a x + b`` stays below 2^63 in uint64.
    Pr[min h(A) = min h(B)] = J(A, B) (Broder 1997, Theorem 1).
    """

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self._a = rng.integers(1, int(_MERSENNE), size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, int(_MERSENNE), size=num_perm, dtype=np.uint64)

    def signature(self, shingle_set: set[int]) -> np.ndarray:
        x = np.fromiter(shingle_set, dtype=np.uint64, count=len(shingle_set))
        return ((np.outer(x, self._a) + self._b) % _MERSENNE).min(axis=0)


@dataclass
class NearDuplicateIndex:
    """Finds near duplicates of texts already added.

    LSH with ``bands`` bands of ``rows`` rows: a pair with Jaccard ``s`` becomes a
    candidate with probability ``1 - (1 - s^rows)^bands`` (MMDS §3.4.2, the S-curve).
    The default 16 bands of 8 rows give 0.9999 at s = 0.9, 0.98 at s = 0.8 and 0.24 at
    s = 0.6: pairs at the usual thresholds are virtually never missed, while texts
    that merely share a template rarely collide (every collision costs an exact
    comparison). For thresholds below 0.8, 32 bands of 4 rows (0.99 at s = 0.6) are
    used. Candidates are confirmed with the exact Jaccard of their shingle sets.

    Attributes:
        threshold: Jaccard similarity at or above which two texts are near duplicates.
    """

    threshold: float = 0.9
    k: int = 5
    bands: int = 0  # 0: chosen from the threshold (see above)
    rows: int = 0
    seed: int = 1
    _hasher: MinHasher = field(init=False, repr=False)
    _buckets: dict[tuple[int, bytes], list[int]] = field(default_factory=dict, init=False, repr=False)
    _sets: list[set[int]] = field(default_factory=list, init=False, repr=False)
    _sigs: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _keys: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.bands and self.rows):
            self.bands, self.rows = (16, 8) if self.threshold >= 0.8 else (32, 4)
        self._hasher = MinHasher(self.bands * self.rows, self.seed)

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, text: str) -> str | None:
        """The key of an added text that ``text`` nearly duplicates, or None."""
        s = shingles(text, self.k)
        i = self._match(s, self._hasher.signature(s))
        return None if i is None else self._keys[i]

    def add(self, key: str, text: str) -> str | None:
        """Adds ``text`` unless it nearly duplicates an added one; returns that one's key, else None."""
        s = shingles(text, self.k)
        sig = self._hasher.signature(s)
        i = self._match(s, sig)
        if i is not None:
            return self._keys[i]
        idx = len(self._keys)
        self._keys.append(key)
        self._sets.append(s)
        self._sigs.append(sig)
        for band, b in self._bands(sig):
            self._buckets.setdefault((band, b), []).append(idx)
        return None

    # a candidate whose signatures agree on fewer than (threshold - this) of their
    # hashes is not compared exactly: at 128 hashes the estimate's standard error is
    # at most 0.045, so 0.2 is over four of them (a true match is skipped < 1e-5)
    _PREFILTER_SLACK = 0.2

    def _match(self, s: set[int], sig: np.ndarray) -> int | None:
        cands = self._candidates(sig)
        if not cands:
            return None
        agree = (np.stack([self._sigs[i] for i in cands]) == sig).mean(axis=1)
        for i, est in zip(cands, agree):
            if est >= self.threshold - self._PREFILTER_SLACK and jaccard(s, self._sets[i]) >= self.threshold:
                return i
        return None

    def _bands(self, sig: np.ndarray) -> Iterable[tuple[int, bytes]]:
        for band in range(self.bands):
            yield band, sig[band * self.rows:(band + 1) * self.rows].tobytes()

    def _candidates(self, sig: np.ndarray) -> list[int]:
        seen: set[int] = set()
        for key in self._bands(sig):
            bucket = self._buckets.get(key)
            if bucket:
                seen.update(bucket)
        return sorted(seen)  # oldest first: the first of several near duplicates is the one reported


@dataclass(frozen=True)
class LengthLimits:
    """Character limits of an example (tokens are limited again at training time)."""

    max_prompt_chars: int = 16000
    max_completion_chars: int = 8000
    min_completion_chars: int = 1

    def violation(self, prompt_chars: int, completion_chars: int) -> str | None:
        """``too_long`` or ``too_short`` when an example breaks a limit, else None."""
        if prompt_chars > self.max_prompt_chars or completion_chars > self.max_completion_chars:
            return "too_long"
        if completion_chars < self.min_completion_chars:
            return "too_short"
        return None


def split_of(key: str, eval_fraction: float, salt: str = "") -> str:
    """``eval`` for a stable ``eval_fraction`` of keys, ``train`` for the rest.

    Uses the first 64 bits of sha256(salt, key) as a uniform number in [0, 1).
    """
    if eval_fraction <= 0:
        return "train"
    u = int.from_bytes(hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()[:8], "big") / 2.0**64
    return "eval" if u < eval_fraction else "train"
