"""Records and states for the labelling unit tests."""

from __future__ import annotations

import itertools
from typing import Any

from agentgym.processors.labelling.engine import LabellingEngine
from agentgym.processors.labelling.state import TraceState

_ids = itertools.count()


def experience(trace_id: str = "t1", **kw: Any) -> dict[str, Any]:
    """A decoded Experience record (the fields the labeller reads)."""
    rec: dict[str, Any] = {
        "event_id": f"e{next(_ids)}", "tenant_id": "acme", "agent_id": "bot", "trace_id": trace_id,
        "timestamp_ms": 1_700_000_000_000, "steps": [], "output": "an answer", "model_name": "m", "model_version": "v1",
        "assignment": None, "latency_ms": 1200.0, "prompt_tokens": 100, "completion_tokens": 50, "cost_usd": 0.001,
        "status": "ok", "error": None,
    }
    rec.update(kw)
    return rec


def feedback(trace_id: str = "t1", kind: str = "thumbs", source: str = "human", ts: int = 1_700_000_001_000, **kw: Any) -> dict[str, Any]:
    """A decoded Feedback record."""
    rec: dict[str, Any] = {
        "event_id": f"f{next(_ids)}", "tenant_id": "acme", "agent_id": "bot", "trace_id": trace_id, "timestamp_ms": ts,
        "kind": kind, "source": source, "rating": None, "rating_scale": 5.0, "thumbs_up": None, "comment": None,
        "correction": None, "signal": None, "value": None, "user_id": None, "metadata": {},
    }
    rec.update(kw)
    return rec


def state(engine: LabellingEngine | None = None, exp: dict[str, Any] | None = None, *fbs: dict[str, Any], now: int = 0) -> TraceState:
    """A trace state joined from an experience (None: none) and feedback records."""
    engine = engine or LabellingEngine()
    st = engine.ingest_experience(None, exp, 0, now) if exp is not None else None
    for f in fbs:
        st, _ = engine.ingest_feedback(st, f, 0, now)
    assert st is not None
    return st
