"""Real-looking runs of the demo's routing agent (ops/commands/demo.py), as mined SourceRuns."""

from __future__ import annotations

import json
import random

from agentgym.trainers.synth.scenario import SourceRun, ToolCall

__all__ = ["TOOLS", "demo_runs", "request_for"]

TOOLS = {"weather": ("get_weather", "city"), "order": ("lookup_order", "order_id"),
         "refund": ("create_refund", "order_id"), "faq": ("search_faq", "query")}
CITIES = ["Oslo", "Lisbon", "Nairobi", "Lima", "Osaka", "Toronto", "Cairo", "Hanoi"]
TOPICS = ["reset my password", "change my email", "export my data", "close my account"]


def request_for(intent: str, value: str, variant: int = 0) -> str:
    """A demo-style request; ``variant`` picks one of a few phrasings."""
    forms = {
        "weather": [f"What's the weather in {value}?", f"Is it raining in {value} today?"],
        "order": [f"Where is order {value}?", f"Has my order {value} shipped?"],
        "refund": [f"I want a refund for order {value}", f"Please refund order {value}"],
        "faq": [f"How do I {value}?", f"Help me {value} please"],
    }[intent]
    return forms[variant % len(forms)]


def demo_runs(n: int = 60, seed: int = 3, failure_rate: float = 0.25) -> list[SourceRun]:
    """``n`` runs: a random intent and value each; failed runs have a tool timeout (most on lookup_order)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        intent = rng.choice(list(TOOLS))
        tool, arg = TOOLS[intent]
        value = rng.choice(CITIES) if arg == "city" else rng.choice(TOPICS) if arg == "query" else str(rng.randint(1000, 9999))
        failed = rng.random() < (failure_rate * (2.5 if tool == "lookup_order" else 0.5))
        text = request_for(intent, value, rng.randrange(2))
        out.append(SourceRun(
            trace_id=f"t{i:04d}",
            messages=({"role": "system", "content": "You route requests to tools."}, {"role": "user", "content": text}),
            output=f"Done: {tool}({value})", status="ok", label="failure" if failed else "success",
            tool_calls=(ToolCall(tool, {arg: value}, json.dumps({arg: value}),
                                 "TimeoutError: tool did not answer" if failed else None),),
            model_version="base-v1", labeller_version="rules-1", ts_ms=1_700_000_000_000 + i,
        ))
    return out
