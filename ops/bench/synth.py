"""Benchmark (not a test): synthetic scenario generation on demo-like traffic.

Seeds an embedded ClickHouse store (a temporary directory) with runs of the demo's
routing agent (``agentgym demo``: four tools, one argument each, ~15 % tool timeouts)
through the store's insert path, then runs ``agentgym synth generate``'s service on
it -- mining, generation, validation, writing the dataset -- for each ``--n``, with and
without the shipped ``tool_routing`` spec. Prints scenarios/s (accepted / batch time,
generation plus validation), the end-to-end time including mining and writing,
rejections, and the diversity of the scenarios next to that of the real inputs.

Run: ``python -m agentgym.ops.bench.synth --runs 2000 --n 200 1000 5000``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.datasets.store import DatasetStore
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.rows import insert_records
from agentgym.schemas.codec import AvroCodec
from agentgym.trainers.synth.service import SynthRequest, SynthService
from agentgym.trainers.synth.settings import SynthSettings

__all__ = ["main"]

_TOOLS = {"weather": ("get_weather", "city"), "order": ("lookup_order", "order_id"),
          "refund": ("create_refund", "order_id"), "faq": ("search_faq", "query")}
_CITIES = ["Oslo", "Lisbon", "Nairobi", "Lima", "Osaka", "Toronto", "Cairo", "Hanoi", "Quito", "Perth"]
_TOPICS = ["reset my password", "change my email", "export my data", "close my account", "update my address"]
_FORMS = {
    "weather": ["What's the weather in {v}?", "Is it raining in {v} today?", "Forecast for {v} please"],
    "order": ["Where is order {v}?", "Has my order {v} shipped?", "Track order {v} for me"],
    "refund": ["I want a refund for order {v}", "Please refund order {v}", "Order {v} arrived broken, refund it"],
    "faq": ["How do I {v}?", "Help me {v} please", "I can't {v}, what do I do?"],
}


def _records(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    exps, outs = [], []
    for i in range(n):
        intent = rng.choice(list(_TOOLS))
        tool, arg = _TOOLS[intent]
        value = rng.choice(_CITIES) if arg == "city" else rng.choice(_TOPICS) if arg == "query" else str(rng.randint(1000, 9999))
        failed = rng.random() < 0.15
        text = rng.choice(_FORMS[intent]).format(v=value)
        trace = uuid.uuid4().hex
        ts = now - 1000 * (n - i)
        exps.append({
            "event_id": uuid.uuid4().hex, "tenant_id": "bench", "agent_id": "support", "trace_id": trace, "timestamp_ms": ts,
            "session_id": None, "user_id": f"user-{i % 50}",
            "input": [{"role": "user", "content": text, "name": None, "tool_call_id": None}],
            "steps": [{"step_id": "0", "kind": "llm", "name": "route", "input": text, "output": json.dumps({"tool": tool, arg: value}),
                       "error": None, "latency_ms": 20.0, "prompt_tokens": 50, "completion_tokens": 10},
                      {"step_id": "1", "kind": "tool", "name": tool, "input": json.dumps({arg: value}),
                       "output": None if failed else '{"ok": true}',
                       "error": "TimeoutError: tool did not answer" if failed else None,
                       "latency_ms": 30.0, "prompt_tokens": 0, "completion_tokens": 0}],
            "output": f"Done: {tool}({value})", "model_name": "tiny-llama", "model_version": "base-v1", "assignment": None,
            "latency_ms": 60.0, "prompt_tokens": 50, "completion_tokens": 10, "cost_usd": 0.0001, "status": "ok",
            "error": None, "metadata": {}, "sdk_version": "bench",
        })
        outs.append({
            "event_id": uuid.uuid4().hex, "tenant_id": "bench", "agent_id": "support", "trace_id": trace, "timestamp_ms": ts + 5,
            "label": "failure" if failed else "success", "confidence": 0.9, "labeller": "rules", "labeller_version": "rules-1",
            "reasons": [], "revision": 0, "model_version": "base-v1", "experiment_id": None, "variant": None,
            "unit_id": None, "corrected_output": None,
        })
    return exps, outs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="real runs seeded")
    parser.add_argument("--n", type=int, nargs="+", default=[200, 1000, 5000], help="batch sizes")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    codec = AvroCodec()
    with tempfile.TemporaryDirectory(prefix="agentgym-synth-bench-") as tmp:
        store = open_store(f"chdb://{Path(tmp) / 'ch'}")
        migrate(store)
        exps, outs = _records(args.runs, args.seed)
        insert_records(store, "Experience", [codec.decode(codec.encode("Experience", e)).record for e in exps])
        insert_records(store, "Outcome", [codec.decode(codec.encode("Outcome", o)).record for o in outs])
        ds = DatasetSettings(dataset_store=str(Path(tmp) / "datasets"))
        svc = SynthService(store, DatasetStore(ds.dataset_store), SynthSettings(), ds)
        print(f"{args.runs} real runs seeded; real-input diversity computed per batch")
        for specs in ((), ("tool_routing",)):
            for n in args.n:
                start = time.perf_counter()
                out = svc.run(SynthRequest(agent_id="support", n=n, tenant_id="bench", seed=args.seed, specs=specs))
                wall = time.perf_counter() - start
                r = out.report
                d, rd = r.diversity, r.real_diversity
                print(f"n={n:<5} spec={'tool_routing' if specs else '-':<12} accepted {r.accepted:>5} of {r.candidates:>5} "
                      f"candidates  {r.timing['scenarios_per_s']:>7.0f} scenarios/s (batch {r.timing['total_s']:.2f}s, "
                      f"end to end {wall:.2f}s)  diversity {d['score']:.3f} (d1 {d['distinct_1']:.3f} d2 {d['distinct_2']:.3f} "
                      f"spread {d['minhash_spread']:.3f}) vs real {rd.get('score', 0):.3f}  rejected {r.rejected}")
        store.close()


if __name__ == "__main__":
    main()
