"""ClickHouse sink benchmark (not a test): ``python -m agentgym.ops.bench.sink``.

Against a real broker and the embedded ClickHouse engine, for ~1 KiB experiences
produced through the SDK, in the same run:

* **raw**: a plain confluent-kafka consumer loop doing the same decoding and batched
  inserts (bodies wrapped in an Avro container, ``INSERT ... SELECT ... FROM
  file(..., 'Avro')``, commit) and nothing else — the ceiling;
* **sink**: :class:`agentgym.processors.sink.ClickHouseSink` (framing checks, validation,
  dead letters, retries, commit after insert), as the Faust worker runs it.

Each reads all events from the topic's beginning under its own consumer group into
its own database of one engine. Prints events/s of both and the ratio (target: sink
>= 20,000 events/s per worker, >= 0.7 of raw), then the end-to-end latency from
``record_experience`` to the row being visible in ClickHouse (``inserted_at - ts``;
target p99 < 2 s) with the sink running and agents producing at a steady rate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer

from agentgym.ops.bench.producer import experience_kwargs
from agentgym.ops.kafka.broker import KafkaBroker, free_port
from agentgym.producers.admin import ensure_topics
from agentgym.processors.avro_batch import container, select_list
from agentgym.processors.sink import ClickHouseSink
from agentgym.processors.store import migrate, open_store
from agentgym import AgentGym
from agentgym.schemas import TOPICS, default_schema_set

TOPIC = TOPICS["experiences"].name


def produce(bootstrap: str, n: int, tenant: str) -> None:
    with AgentGym(bootstrap, tenant, "bench-agent", spool_dir=Path(tempfile.mkdtemp())) as gym:
        kw = [experience_kwargs(i) for i in range(1000)]
        for i in range(n):
            gym.record_experience(**kw[i % 1000])
        assert gym.flush(120) == 0


def raw_loop(bootstrap: str, store, n: int, batch: int) -> float:
    """The minimum consumer: consume, wrap bodies, insert, commit. Returns events/s."""
    writer = default_schema_set().latest("Experience")
    cols, exprs = select_list("Experience")
    path = Path(tempfile.mkdtemp()) / "batch.avro"
    sql = (f"INSERT INTO {store.database}.experiences ({', '.join(cols)}) "
           f"SELECT {', '.join(exprs)} FROM file('{path}', 'Avro')")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([TOPIC])
    done = 0
    t0 = None
    while done < n:
        msgs = c.consume(batch, 0.25)
        if not msgs:
            continue
        if t0 is None:
            t0 = time.perf_counter()  # from the first batch: group join is not throughput
        path.write_bytes(container(writer, [m.value()[10:] for m in msgs if m.error() is None]))
        store.command(sql)
        c.commit(asynchronous=False)
        done += len(msgs)
    dt = time.perf_counter() - t0
    c.close()
    return done / dt


def sink_loop(bootstrap: str, store, n: int, batch: int) -> float:
    sink = ClickHouseSink(bootstrap, store, group=f"sink-{uuid.uuid4().hex}", batch_size=batch, batch_ms=250,
                          specs=[TOPICS["experiences"]])
    while sink.process_batch() == 0:
        pass
    e0, t0 = sink.stats.events, time.perf_counter()
    while sink.stats.events < n:
        sink.process_batch()
    dt = time.perf_counter() - t0
    sink.close()
    return (sink.stats.events - e0) / dt


def e2e_latency(bootstrap: str, store, rate: int, seconds: float) -> dict[str, float]:
    """Sink running in its thread; agents produce ``rate`` runs/s; latency from ts to inserted_at."""
    # a new group starting at the end of the topic: only the probes count
    sink = ClickHouseSink(bootstrap, store, group=f"e2e-{uuid.uuid4().hex}", batch_ms=250, specs=[TOPICS["experiences"]],
                          consumer_config={"auto.offset.reset": "latest"})
    th = threading.Thread(target=sink.run, daemon=True)
    th.start()
    tenant = f"probe-{uuid.uuid4().hex[:8]}"
    time.sleep(5)  # group join
    n = int(rate * seconds)
    with AgentGym(bootstrap, tenant, "probe", spool_dir=Path(tempfile.mkdtemp())) as gym:
        kw = experience_kwargs(0)
        t0 = time.perf_counter()
        for i in range(n):
            gym.record_experience(**kw)
            lag = t0 + (i + 1) / rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
    deadline = time.monotonic() + 60
    q = f"SELECT count() FROM {store.database}.experiences WHERE tenant_id = '{tenant}'"
    while store.query(q).rows[0][0] < n and time.monotonic() < deadline:
        time.sleep(0.2)
    sink.stop()
    th.join(30)
    sink.close()
    row = store.query(
        f"SELECT count(), quantiles(0.5, 0.99)(dateDiff('millisecond', ts, inserted_at)), max(dateDiff('millisecond', ts, inserted_at)) "
        f"FROM {store.database}.experiences WHERE tenant_id = '{tenant}'"
    ).rows[0]
    return {"n": row[0], "p50_ms": row[1][0], "p99_ms": row[1][1], "max_ms": row[2], "sent": n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200_000, help="events to sink (default 200000)")
    ap.add_argument("--batch", type=int, default=5000, help="batch size (default 5000)")
    ap.add_argument("--rate", type=int, default=2000, help="runs/s during the latency probe (default 2000)")
    ap.add_argument("--seconds", type=float, default=10, help="length of the latency probe (default 10)")
    args = ap.parse_args(argv)
    broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="agentgym-bench-kafka-")), port=free_port(), controller_port=free_port(), heap="1g")
    print(f"starting a temporary Kafka broker on {broker.bootstrap_servers} ...", file=sys.stderr)
    broker.start()
    data = Path(tempfile.mkdtemp(prefix="agentgym-bench-chdb-"))
    try:
        ensure_topics(broker.bootstrap_servers)
        print(f"producing {args.n:,} experiences through the SDK ...", file=sys.stderr)
        produce(broker.bootstrap_servers, args.n, "bench")
        raw_store = open_store(f"chdb://{data}", database="bench_raw")
        migrate(raw_store)
        sink_store = open_store(f"chdb://{data}", database="bench_sink")
        migrate(sink_store)
        print("raw consumer loop ...", file=sys.stderr)
        raw = raw_loop(broker.bootstrap_servers, raw_store, args.n, args.batch)
        print("sink ...", file=sys.stderr)
        sink = sink_loop(broker.bootstrap_servers, sink_store, args.n, args.batch)
        stored = sink_store.query("SELECT count() FROM bench_sink.v_experiences").rows[0][0]
        print(f"end-to-end latency probe: {args.rate}/s for {args.seconds:.0f}s ...", file=sys.stderr)
        lat = e2e_latency(broker.bootstrap_servers, sink_store, args.rate, args.seconds)
        raw_store.close()
        sink_store.close()
    finally:
        broker.stop()
    print(f"\n{'':34} {'events/s':>10}")
    print(f"{'raw confluent-kafka loop':34} {raw:10,.0f}")
    print(f"{'ClickHouseSink':34} {sink:10,.0f}")
    print(f"\nsink / raw: {sink / raw:.2f}   (target >= 0.70)")
    print(f"sink events/s: {sink:,.0f}   (target >= 20,000 per worker)")
    print(f"rows visible after the sink: {stored:,} of {args.n:,} (exactly once: {stored == args.n})")
    print(f"end-to-end record_experience -> visible in ClickHouse over {lat['n']:,}/{lat['sent']:,} runs: "
          f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms   (target p99 < 2000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
