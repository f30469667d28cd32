"""A small synthetic agent for the fine-tuning tests: it is asked to shout words back.

``shout apple 12`` -> ``APPLE 12!``: a task a tiny byte-level model makes visible
progress on in a few dozen steps. Some runs fail (a wrong answer), some of those get a
correction, so both SFT examples and preference pairs come out.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from agentgym.schemas.codec import AvroCodec

__all__ = ["WORDS", "answer", "runs"]

WORDS = ("apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum", "kiwi", "melon", "olive", "onion")
_CODEC = AvroCodec()
START_MS = (int(time.time() * 1000) // 86_400_000 - 2) * 86_400_000
"""Midnight UTC two days before the session started: recent enough for every retention (the
platform's default keeps rows 365 days, and a worker drops rows older than that at insert),
and the same for every call in one session."""


def answer(word: str, n: int) -> str:
    return f"{word.upper()} {n}!"


def _decoded(name: str, record: dict[str, Any]) -> dict[str, Any]:
    return _CODEC.decode(_CODEC.encode(name, record)).record


def runs(tenant: str, agent: str, n: int, *, seed: int = 0, failure_every: int = 3, start_ms: int = START_MS
         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(experiences, outcomes): ``n`` labelled runs; every ``failure_every``-th fails, half of those corrected."""
    rng = random.Random(seed)
    experiences, outcomes = [], []
    for i in range(n):
        word, number = rng.choice(WORDS), rng.randint(1, 999)
        trace = f"{tenant}-{i}-{uuid.uuid4().hex[:6]}"
        failed = i % failure_every == failure_every - 1
        output = f"{word} {number}?" if failed else answer(word, number)
        experiences.append(_decoded("Experience", {
            "event_id": uuid.uuid4().hex, "tenant_id": tenant, "agent_id": agent, "trace_id": trace,
            "timestamp_ms": start_ms + i * 1000,
            "input": [{"role": "system", "content": "You shout."},
                      {"role": "user", "content": f"shout {word} {number}. my email is user{i}@example.com"}],
            "steps": [], "output": output, "model_name": "tiny", "model_version": "v0", "latency_ms": 10.0,
        }))
        outcomes.append(_decoded("Outcome", {
            "event_id": uuid.uuid4().hex, "tenant_id": tenant, "agent_id": agent, "trace_id": trace,
            "timestamp_ms": start_ms + i * 1000 + 500, "label": "failure" if failed else "success",
            "confidence": 0.95, "labeller": "rules", "labeller_version": "rules-2", "model_version": "v0",
            "corrected_output": answer(word, number) if failed and (i // failure_every) % 2 == 0 else None,
        }))
    return experiences, outcomes


def shout_dataset(home: Any, tenant: str = "acme", n: int = 96) -> Any:
    """A small SFT dataset of the shouting task (one eval row in eight) in ``<home>/datasets``, as ``ds-shout``."""
    from agentgym.processors.datasets.store import DatasetStore

    rng = random.Random(0)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for i in range(n):
        word, number = rng.choice(WORDS), rng.randint(1, 999)
        rows["eval" if i % 8 == 0 else "train"].append({
            "prompt": [{"role": "user", "content": f"shout {word} {number}"}],
            "completion": [{"role": "assistant", "content": answer(word, number)}],
            "trace_id": f"t{i}", "labeller_version": "rules-2", "source": "success", "prompt_key": f"k{i}",
        })
    return DatasetStore(f"{home}/datasets").write(dataset_id="ds-shout", tenant_id=tenant, agent_id="shouter",
                                                      kind="sft", created_ms=1, rows=rows)
