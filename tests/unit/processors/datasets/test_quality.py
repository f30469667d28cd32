"""Data quality: scrubbing, exact and near-duplicate detection, length limits, splits."""

from __future__ import annotations

import random
import string

import pytest

from agentgym.processors.datasets.exceptions import ScrubberConfigError
from agentgym.processors.datasets.quality import (
    LengthLimits,
    MinHasher,
    NearDuplicateIndex,
    Scrubber,
    exact_key,
    jaccard,
    prompt_key,
    shingles,
    split_of,
)

# (text, expected scrubbed text, expected counts) -- the default scrubbers
SCRUB_CASES = [
    ("mail me at jane.doe+x@example.co.uk today", "mail me at <EMAIL> today", {"email": 1}),
    ("call +44 20 7946 0958 or (555) 123-4567", "call <PHONE> or <PHONE>", {"phone": 2}),
    ("phone: 555.123.4567", "phone: <PHONE>", {"phone": 1}),
    ("key sk-proj-abcdefghijklmnopqrstuvwx123", "key <API_KEY>", {"api_key": 1}),
    ("aws AKIAIOSFODNN7EXAMPLE here", "aws <API_KEY> here", {"api_key": 1}),
    ("token ghp_" + "a" * 36, "token <API_KEY>", {"api_key": 1}),
    ("Authorization: Bearer abcdefghijklmnop1234567890", "Authorization: Bearer <TOKEN>", {"api_key": 1}),
    ("password=hunter2hunter2 ok", "password=<SECRET> ok", {"api_key": 1}),
    ("api_key: 'Zx81-Qw92-Er73'", "api_key: <SECRET>", {"api_key": 1}),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----", "<PRIVATE_KEY>", {"api_key": 1}),
    ("card 4111 1111 1111 1111 thanks", "card <CARD> thanks", {"credit_card": 1}),
    # not personal data: left alone
    ("order 42 shipped on 2024-01-15, total 1234.50", "order 42 shipped on 2024-01-15, total 1234.50", {}),
    ("what is 12 + 30? 42", "what is 12 + 30? 42", {}),
    ("card 4111 1111 1111 1112 fails luhn", "card 4111 1111 1111 1112 fails luhn", {}),
    ("version 1.2.3.4 of the tool", "version 1.2.3.4 of the tool", {}),
]


@pytest.mark.parametrize(("text", "expected", "counts"), SCRUB_CASES)
def test_default_scrubbers(text: str, expected: str, counts: dict[str, int]) -> None:
    assert Scrubber().scrub(text) == (expected, counts)


def test_scrubbing_is_configurable() -> None:
    text = "write to a@b.io from 10.0.0.12, ticket TKT-99812"
    assert Scrubber(enabled=[]).scrub(text) == (text, {})
    assert Scrubber(enabled=["email"]).scrub(text)[0] == "write to <EMAIL> from 10.0.0.12, ticket TKT-99812"
    out, counts = Scrubber(enabled=["email", "ip_address"], extra={"ticket": r"TKT-\d+"}).scrub(text)
    assert out == "write to <EMAIL> from <IP>, ticket <TICKET>"
    assert counts == {"email": 1, "ip_address": 1, "ticket": 1}
    with pytest.raises(ScrubberConfigError, match="unknown scrubber"):
        Scrubber(enabled=["passport"])
    with pytest.raises(ScrubberConfigError, match="not a valid regex"):
        Scrubber(extra={"bad": "("})


def test_exact_keys_ignore_case_and_whitespace_only() -> None:
    assert exact_key("Hello  World", "OK") == exact_key("hello world", " ok ")
    assert exact_key("hello world", "ok") != exact_key("hello world", "ok!")
    assert exact_key("ab", "c") != exact_key("a", "bc")  # parts are delimited
    assert prompt_key([{"role": "user", "content": "Hi "}]) == prompt_key([{"role": "user", "content": "hi"}])
    assert prompt_key([{"role": "user", "content": "hi"}]) != prompt_key([{"role": "system", "content": "hi"}])


def _text(rng: random.Random, n: int = 60) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8))) for _ in range(n))


def test_minhash_estimates_jaccard() -> None:
    """Pr[min h(A) = min h(B)] = J(A, B): the signature agreement tracks the exact Jaccard."""
    rng = random.Random(3)
    hasher = MinHasher(num_perm=256, seed=7)
    for _ in range(20):
        a = _text(rng)
        words = a.split()
        for i in rng.sample(range(len(words)), rng.randint(0, 30)):
            words[i] = "zz" + words[i]
        b = " ".join(words)
        sa, sb = shingles(a), shingles(b)
        estimate = float((hasher.signature(sa) == hasher.signature(sb)).mean())
        assert abs(estimate - jaccard(sa, sb)) < 0.12  # ~4 standard errors at 256 permutations


def test_near_duplicates_are_found_and_distinct_texts_kept() -> None:
    rng = random.Random(11)
    index = NearDuplicateIndex(threshold=0.8)
    originals = [_text(rng) for _ in range(200)]
    for i, t in enumerate(originals):
        assert index.add(f"o{i}", t) is None, "distinct random texts are not near duplicates"
    # a copy with a few characters changed, and with different spacing and case, is found
    for i in range(0, 200, 10):
        t = originals[i]
        near = t[:50] + "X" + t[51:100] + t[100:].upper().replace(" ", "  ")
        assert jaccard(shingles(near), shingles(t)) >= 0.8
        assert index.add(f"n{i}", near) == f"o{i}"
        assert index.find(near) == f"o{i}"
    assert len(index) == 200


def test_length_limits() -> None:
    limits = LengthLimits(max_prompt_chars=10, max_completion_chars=5, min_completion_chars=2)
    assert limits.violation(10, 5) is None
    assert limits.violation(11, 3) == "too_long"
    assert limits.violation(3, 6) == "too_long"
    assert limits.violation(3, 1) == "too_short"


def test_split_is_a_stable_hash_of_the_prompt_with_the_requested_share() -> None:
    keys = [f"prompt-{i}" for i in range(20000)]
    splits = [split_of(k, 0.1) for k in keys]
    assert splits == [split_of(k, 0.1) for k in keys]  # deterministic
    share = splits.count("eval") / len(keys)
    assert 0.09 < share < 0.11
    assert all(split_of(k, 0.0) == "train" for k in keys[:100])
    # a larger fraction only moves prompts from train to eval, never back
    assert all(split_of(k, 0.2) == "eval" for k, s in zip(keys, splits) if s == "eval")
