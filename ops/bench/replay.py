"""Labeller replay benchmark (not a test): ``python -m agentgym.ops.bench.replay [--runs N]``.

Starts a temporary Kafka broker, writes ``N`` runs of one agent (an experience each, one
feedback each: a 4-of-5 rating on two runs in three, a thumbs down on the third) and the
outcomes a live labeller with a buggy rule gave them (the rating in the neutral band:
``unknown``), then runs ``agentgym labeller replay`` with the fixed rule as a subprocess,
as a user would, and prints its output: records read per second, traces decided and
relabelled. Then the same command again (nothing to emit) and prints its time too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agentgym.ops.kafka.broker import KafkaBroker, free_port
from agentgym.producers.admin import ensure_topics
from agentgym.schemas.codec import AvroCodec


def produce(bootstrap: str, n: int, tenant: str) -> None:
    """``n`` runs, their feedback and their (buggy) outcomes, keyed by trace id."""
    from confluent_kafka import Producer

    codec = AvroCodec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4"})
    now = int(time.time() * 1000)
    for i in range(n):
        trace = f"{tenant}-{i}-{uuid.uuid4().hex[:8]}"
        ok = i % 3 != 2
        exp = {"event_id": uuid.uuid4().hex, "tenant_id": tenant, "agent_id": "bench-agent", "trace_id": trace,
               "timestamp_ms": now, "input": [{"role": "user", "content": f"where is order {i}?"}], "steps": [],
               "output": f"order {i} ships on Monday", "model_name": "m", "model_version": "v1", "latency_ms": 800.0}
        fb = {"event_id": uuid.uuid4().hex, "tenant_id": tenant, "agent_id": "bench-agent", "trace_id": trace,
              "timestamp_ms": now + 1, "kind": "rating" if ok else "thumbs", "source": "human",
              "rating": 4.0 if ok else None, "thumbs_up": None if ok else False}
        out = {"event_id": f"{trace}:outcome:0", "tenant_id": tenant, "agent_id": "bench-agent", "trace_id": trace,
               "timestamp_ms": now + 2, "label": "unknown" if ok else "failure", "confidence": 0.0 if ok else 0.95,
               "labeller": "fallback:unknown" if ok else "human", "labeller_version": "buggy", "model_version": "v1"}
        for topic, name, rec in (("gym-experiences-v1", "Experience", exp), ("gym-feedback-v1", "Feedback", fb),
                                 ("gym-outcomes-v1", "Outcome", out)):
            while True:
                try:
                    p.produce(topic, codec.encode(name, rec), trace.encode())
                    break
                except BufferError:
                    p.poll(0.1)
        p.poll(0)
    assert p.flush(120) == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30_000, help="runs to write and replay")
    args = ap.parse_args(argv)
    broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="agentgym-bench-kafka-")), port=free_port(), controller_port=free_port(), heap="1g")
    print(f"starting a temporary Kafka broker on {broker.bootstrap_servers} ...", file=sys.stderr)
    broker.start()
    try:
        ensure_topics(broker.bootstrap_servers)
        since = int(time.time() * 1000) - 1000
        t0 = time.monotonic()
        produce(broker.bootstrap_servers, args.runs, "bench")
        print(f"wrote {args.runs:,} runs ({3 * args.runs:,} records) in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        home = Path(tempfile.mkdtemp(prefix="agentgym-bench-home-"))
        rules = home / "rules.yaml"
        rules.write_text("default:\n  rating_success_at: 0.7\n")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")},
               "AGENTGYM_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "AGENTGYM_HOME": str(home)}
        cmd = [sys.executable, "-m", "agentgym.ops.cli", "labeller", "replay", "--since", str(since), "--rules", str(rules)]
        for what in ("first replay", "second replay (nothing to emit)"):
            t = time.monotonic()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            print(f"--- {what}: exit {done.returncode}, {time.monotonic() - t:.1f} s wall (Python start included)")
            print(done.stderr.rstrip())
            print(done.stdout.rstrip())
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
