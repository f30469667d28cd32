"""Producer benchmark (not a test): ``python -m agentgym.ops.bench.producer``.

Measures, against a real broker and in the same run, for ~1 KiB experiences:

* **raw**: confluent-kafka producing pre-serialized bytes of the same size — the ceiling;
* **hand**: the minimum a user could write instead — fastavro schemaless encoding of
  the same record plus a raw produce;
* **sdk**: ``AgentGym.record_experience`` (validation, ids, single-object framing,
  spool-on-failure), masking off;
* **sdk masked**: the same with masking at ingestion on, the defaults (the built-in detectors
  on input, output, steps, errors; docs/privacy.md): the realistic events hold no personal
  data, so this measures the pre-check every event pays;
* **sdk masked, PII**: the same with an email address and a phone number in every user message
  (the detectors run and replace them).

All use the same producer settings (idempotent, acks=all, lz4, linger 20 ms).
Also printed, in-process (no Kafka): the Avro encoding of that record alone by fastavro's
``schemaless_writer``, the generated Python encoder and the compiled one
(``schemas/fastencode.py``, ``schemas/_avroenc.c``), checked to write the same bytes.
Prints events/s (including the final flush) and the p50/p99 latency of the call
itself, and the ratios sdk/hand and sdk/raw. Targets (issue 2): sdk >= 0.9 x hand,
>= 50,000 events/s per process, p99 call < 50 us. Masking (issue 21): sdk masked >= 0.5 x sdk,
in the same run; the cost per event is the difference of the mean call times.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from fastavro import parse_schema, schemaless_writer

from agentgym.ops.kafka.broker import KafkaBroker, free_port
from agentgym.producers.admin import ensure_topics
from agentgym import AgentGym
from agentgym.schemas import default_schema_set
from agentgym.schemas.fastencode import NATIVE, compile_encoder

TOPIC = "gym-experiences-v1"
_CONF = {"enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 20,
         "batch.num.messages": 10000, "queue.buffering.max.messages": 500000, "queue.buffering.max.kbytes": 1048576}


def experience_kwargs(i: int) -> dict[str, Any]:
    """A realistic ~1 KiB run: a system and a user message, one tool step, an answer."""
    return {
        "input": [
            {"role": "system", "content": "You are a support agent for an online shop. Be brief and exact."},
            {"role": "user", "content": f"Hello, my order number {100000 + i} has not arrived yet. " * 8},
        ],
        "output": "I checked: your order shipped yesterday and should arrive within two working days. " * 3,
        "model_name": "llama-3.2-1b-instruct",
        "model_version": "v3",
        "latency_ms": 812.5,
        "steps": [{"name": "lookup_order", "kind": "tool", "input": '{"order": 100042}', "output": '{"status": "shipped"}', "latency_ms": 41.0}],
        "prompt_tokens": 180,
        "completion_tokens": 42,
        "cost_usd": 0.00031,
        "metadata": {"channel": "web", "locale": "en-GB"},
    }


def pii_kwargs(i: int) -> dict[str, Any]:
    """:func:`experience_kwargs` with an email address and a phone number in the user's message."""
    kw = experience_kwargs(i)
    user = dict(kw["input"][1], content=f"I am jane.doe{i}@example.com, call me on +44 20 7946 {i % 10000:04d}. "
                + kw["input"][1]["content"])
    return {**kw, "input": [kw["input"][0], user]}


def _record_dict(i: int, kw: dict[str, Any] | None = None) -> dict[str, Any]:
    """The same content as a schema-shaped dict, with fresh ids and timestamp: what a
    user writing it by hand must build per event."""
    kw = kw or experience_kwargs(i)
    step = dict(kw["steps"][0], step_id="0", error=None, prompt_tokens=0, completion_tokens=0)
    ids = os.urandom(32).hex()
    return {
        "event_id": ids[32:], "tenant_id": "bench", "agent_id": "bench-agent", "trace_id": ids[:32],
        "timestamp_ms": time.time_ns() // 1_000_000, "session_id": None, "user_id": None,
        "input": kw["input"], "steps": [step], "output": kw["output"], "model_name": kw["model_name"],
        "model_version": kw["model_version"], "assignment": None, "latency_ms": kw["latency_ms"],
        "prompt_tokens": kw["prompt_tokens"], "completion_tokens": kw["completion_tokens"], "cost_usd": kw["cost_usd"],
        "status": "ok", "error": None, "metadata": kw["metadata"], "sdk_version": "agentgym-py/0.1.0",
    }


def _measure(name: str, n: int, call: Callable[[int], None], flush: Callable[[], Any]) -> dict[str, float]:
    lat = [0] * n
    pc = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        t0 = pc()
        for i in range(n):
            s = pc()
            call(i)
            lat[i] = pc() - s
        flush()
        total_s = (pc() - t0) / 1e9
    finally:
        gc.enable()
    lat.sort()
    return {"name": name, "events_per_s": n / total_s, "p50_us": lat[n // 2] / 1000, "p99_us": lat[int(n * 0.99)] / 1000,
            "mean_us": sum(lat) / n / 1000}


def encoders(n: int = 20_000) -> list[tuple[str, float]]:
    """Microseconds per encode of one ~1 KiB Experience record: fastavro, the generated encoder, the compiled one."""
    sv = default_schema_set().latest("Experience")
    parsed = parse_schema(sv.raw)
    record = _record_dict(0)

    def fastavro_encode(r: dict[str, Any]) -> bytes:
        b = io.BytesIO()
        schemaless_writer(b, parsed, r)
        return b.getvalue()

    variants = [("fastavro schemaless_writer", fastavro_encode), ("generated (Python)", compile_encoder(sv.raw, native=False))]
    if NATIVE:
        variants.append(("compiled (schemas/_avroenc.c)", compile_encoder(sv.raw, native=True)))
    expected = fastavro_encode(record)
    out = []
    for name, encode in variants:
        assert encode(record) == expected, f"{name} wrote other bytes than fastavro"
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                encode(record)
            best = min(best, time.perf_counter() - t0)
        out.append((name, best / n * 1e6))
    return out


def run(bootstrap: str, n: int, repeats: int) -> list[dict[str, float]]:
    sv = default_schema_set().latest("Experience")
    parsed = parse_schema(sv.raw)
    header = b"\xc3\x01" + sv.fingerprint_bytes

    # (a) raw: pre-serialized bytes of the SDK's size
    buf = io.BytesIO()
    schemaless_writer(buf, parsed, _record_dict(0))
    payload = header + buf.getvalue()
    keys = [f"{i:032x}" for i in range(n)]
    raw = Producer({"bootstrap.servers": bootstrap, **_CONF})

    def raw_call(i: int) -> None:
        raw.produce(TOPIC, payload, keys[i])

    # (b) hand-written: build the record (ids, timestamp), fastavro's public
    # schemaless_writer, the single-object header, a raw produce
    hand = Producer({"bootstrap.servers": bootstrap, **_CONF})
    kwargs = [experience_kwargs(i) for i in range(min(n, 1000))]

    def hand_call(i: int) -> None:
        rec = _record_dict(i, kwargs[i % 1000])
        b = io.BytesIO()
        b.write(header)
        schemaless_writer(b, parsed, rec)
        hand.produce(TOPIC, b.getvalue(), rec["trace_id"])

    # (c) the SDK
    spool = Path(tempfile.mkdtemp(prefix="agentgym-bench-spool-"))
    gym = AgentGym(bootstrap, "bench", "bench-agent", spool_dir=spool, mask_enabled=False)
    record = gym.record_experience

    def sdk_call(i: int) -> None:
        record(**kwargs[i % 1000])

    masked = AgentGym(bootstrap, "bench", "bench-agent", spool_dir=Path(tempfile.mkdtemp(prefix="agentgym-bench-spool-")),
                      mask_enabled=True)
    record_masked = masked.record_experience
    pii = [pii_kwargs(i) for i in range(min(n, 1000))]

    def masked_call(i: int) -> None:
        record_masked(**kwargs[i % 1000])

    def pii_call(i: int) -> None:
        record_masked(**pii[i % 1000])

    variants = [("raw confluent-kafka, pre-serialized", raw_call, lambda: raw.flush(60)),
                ("hand: fastavro schemaless + produce", hand_call, lambda: hand.flush(60)),
                ("sdk: record_experience", sdk_call, lambda: gym.flush(60)),
                ("sdk masked (defaults)", masked_call, lambda: masked.flush(60)),
                ("sdk masked, PII in every event", pii_call, lambda: masked.flush(60))]
    # warm up every path once (connections, metadata, code paths)
    for _, call, flush in variants:
        for i in range(2000):
            call(i)
        flush()
    results: dict[str, list[dict[str, float]]] = {v[0]: [] for v in variants}
    for r in range(repeats):
        for name, call, flush in variants:  # interleaved, so drift hits all alike
            results[name].append(_measure(name, n, call, flush))
        print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr)
    gym.close()
    masked.close()
    out = []
    for name, rs in results.items():
        out.append({"name": name, **{k: statistics.median(x[k] for x in rs) for k in ("events_per_s", "p50_us", "p99_us", "mean_us")}})
    print(f"payload: {len(payload)} bytes per event (Avro single-object encoding)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap-servers", help="use this broker instead of starting a temporary one")
    ap.add_argument("-n", type=int, default=100_000, help="events per measurement (default 100000)")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per variant; medians reported (default 3)")
    args = ap.parse_args(argv)
    broker = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="agentgym-bench-kafka-")), port=free_port(), controller_port=free_port(), heap="1g")
        print(f"starting a temporary Kafka broker on {broker.bootstrap_servers} ...", file=sys.stderr)
        broker.start()
        bootstrap = broker.bootstrap_servers
    try:
        ensure_topics(bootstrap)
        rows = run(bootstrap, args.n, args.repeats)
    finally:
        if broker is not None:
            broker.stop()
    raw, hand, sdk, masked, pii = rows
    print(f"\n{'variant':40} {'events/s':>12} {'p50 us':>8} {'p99 us':>8} {'mean us':>8}")
    for r in rows:
        print(f"{r['name']:40} {r['events_per_s']:12,.0f} {r['p50_us']:8.1f} {r['p99_us']:8.1f} {r['mean_us']:8.1f}")
    ratio_hand = sdk["events_per_s"] / hand["events_per_s"]
    ratio_raw = sdk["events_per_s"] / raw["events_per_s"]
    print(f"\nsdk / hand-written: {ratio_hand:.2f}   (target >= 0.90)")
    print(f"sdk / raw ceiling:  {ratio_raw:.2f}")
    print(f"sdk events/s:       {sdk['events_per_s']:,.0f}   (target >= 50,000)")
    print(f"sdk p99 call:       {sdk['p99_us']:.1f} us   (target < 50 us)")
    print(f"\nmasked / sdk:       {masked['events_per_s'] / sdk['events_per_s']:.2f}   (target >= 0.50; masking on, defaults)")
    print(f"masking per event:  {masked['mean_us'] - sdk['mean_us']:.1f} us (mean call, masked - sdk)")
    print(f"masked PII / sdk:   {pii['events_per_s'] / sdk['events_per_s']:.2f}   "
          f"({pii['mean_us'] - sdk['mean_us']:.1f} us per event, two values replaced in each)")
    print("\nAvro encoding of one event, in-process (best of 3 x 20,000):")
    for name, us in encoders():
        print(f"  {name:36} {us:6.2f} us")
    if not NATIVE:
        print("  (the compiled encoder was not built: no C compiler when the package was installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
