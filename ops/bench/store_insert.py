"""Benchmark (not a test): insert paths into the embedded ClickHouse store.

Prints rows/s for ~1 KiB Experience rows in batches, through

* ``store.insert`` — ``INSERT ... SETTINGS optimize_on_insert = 0 SELECT * FROM Python(batch)``
  (what :class:`~agentgym.processors.store.chdb_store.ChdbStore` uses),
* the same with ``optimize_on_insert = 1`` (ClickHouse's default: collapse duplicates
  inside the inserted block at insert time),
* chdb's streaming inserter fed the batch as an Arrow IPC stream (``FORMAT ArrowStream``),

and the cost of building the batch (:func:`agentgym.processors.store.rows.to_arrow`).

Run: ``python -m agentgym.ops.bench.store_insert --rows 20000 --repeats 5``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from agentgym.processors.store import migrate
from agentgym.processors.store.chdb_store import ChdbStore
from agentgym.processors.store.rows import COLUMNS, to_arrow

__all__ = ["main"]


def _experience(i: int, now_ms: int) -> dict[str, Any]:
    """A decoded-shape Experience of about 1 KiB (Avro-encoded ~990 bytes)."""
    return {
        "event_id": uuid.uuid4().hex, "tenant_id": "bench", "agent_id": f"agent-{i % 4}", "trace_id": uuid.uuid4().hex,
        "timestamp_ms": now_ms + i, "session_id": f"s{i % 100}", "user_id": None,
        "input": [{"role": "system", "content": "You are helpful. " * 8, "name": None, "tool_call_id": None},
                  {"role": "user", "content": "x" * 400, "name": None, "tool_call_id": None}],
        "steps": [{"step_id": "s1", "kind": "llm", "name": "chat", "input": None, "output": '{"a": 1}', "error": None,
                   "latency_ms": 12.5, "prompt_tokens": 10, "completion_tokens": 20},
                  {"step_id": "s2", "kind": "tool", "name": "search", "input": '{"q": "y"}', "output": None,
                   "error": None, "latency_ms": 3.0, "prompt_tokens": 0, "completion_tokens": 0}],
        "output": "y" * 200, "model_name": "llama", "model_version": f"v{i % 3}",
        "assignment": {"experiment_id": "e1", "variant": "a", "unit_type": "user", "unit_id": "u1"} if i % 2 else None,
        "latency_ms": 100.0 + i % 50, "prompt_tokens": 100, "completion_tokens": 50, "cost_usd": 0.001,
        "status": "ok", "error": None, "metadata": {"k": "v", "region": "eu"}, "sdk_version": "0.1.0",
    }


def _rate(fn: Callable[[], object], rows: int, repeats: int) -> tuple[float, float]:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(rows / (time.perf_counter() - start))
    return statistics.median(rates), max(rates)


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark and prints one line per insert path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per batch")
    parser.add_argument("--repeats", type=int, default=5, help="batches per path (median and best are printed)")
    args = parser.parse_args(argv)

    import pyarrow as pa

    records = [_experience(i, int(time.time() * 1000)) for i in range(args.rows)]
    with tempfile.TemporaryDirectory(prefix="agentgym-bench-") as tmp:
        store = ChdbStore(f"{tmp}/clickhouse")
        try:
            migrate(store)
            to_arrow("Experience", records[:100])  # warm up pyarrow's converters
            batch = to_arrow("Experience", records)
            cols = ", ".join(COLUMNS["Experience"])
            print(f"batch: {args.rows} rows, {batch.nbytes / args.rows:.0f} bytes/row in Arrow")
            med, best = _rate(lambda: to_arrow("Experience", records), args.rows, args.repeats)
            print(f"to_arrow (decoded records -> Arrow):              median {med:>10,.0f} rows/s   best {best:>10,.0f}")

            med, best = _rate(lambda: store.insert("experiences", batch), args.rows, args.repeats)
            print(f"store.insert: Python(batch), optimize_on_insert=0: median {med:>10,.0f} rows/s   best {best:>10,.0f}")

            def python_optimize() -> None:
                _agentgym_batch = batch  # noqa: F841 - read by name by chdb's Python() table function
                store.command(f"INSERT INTO experiences ({cols}) SELECT * FROM Python(_agentgym_batch)")

            med, best = _rate(python_optimize, args.rows, args.repeats)
            print(f"Python(batch), optimize_on_insert=1:             median {med:>10,.0f} rows/s   best {best:>10,.0f}")

            def arrow_stream() -> None:
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, batch.schema) as writer:
                    writer.write_table(batch)
                inserter = store._session.send_insert(
                    f"INSERT INTO experiences ({cols}) SETTINGS optimize_on_insert = 0", "ArrowStream"
                )
                inserter.append(memoryview(sink.getvalue()))
                inserter.finish()

            med, best = _rate(arrow_stream, args.rows, args.repeats)
            print(f"send_insert ArrowStream, optimize_on_insert=0:   median {med:>10,.0f} rows/s   best {best:>10,.0f}")
            visible = store.query("SELECT count() FROM v_experiences").scalar()
            print(f"distinct events visible through v_experiences: {visible} (expected {args.rows})")
        finally:
            store.close()


if __name__ == "__main__":
    main()
