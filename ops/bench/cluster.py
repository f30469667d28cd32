"""Producer throughput against a 3-broker cluster (not a test): ``python -m agentgym.ops.bench.cluster``.

Starts, in one run, a single broker and a local 3-broker KRaft cluster
(:class:`agentgym.ops.kafka.broker.KafkaCluster`, topics with 3 replicas and
``min.insync.replicas=2``), and measures for ~1 KiB experiences, interleaved:

* **sdk**: ``AgentGym.record_experience`` (idempotent, ``acks=all``, lz4, linger 20 ms),
  masking off, against one broker and against the cluster;
* **raw**: confluent-kafka producing pre-serialized bytes of the same size with the same
  settings (``acks=all``): the ceiling, against one broker and against the cluster;
* **raw acks=1** against the cluster: the leader alone acknowledges, which separates the
  cost of waiting for the followers from the cost of the cluster's extra work.

Events/s include the final flush, so they are acknowledged throughput; before each
measurement the brokers are left to go idle (followers done copying). Beside each figure:
the CPU seconds the brokers and this process spent per 100,000 events (``/proc``), and the
cores they kept busy together: on two cores the brokers and the producer share the
machine, and a cluster of three writes every byte three times (the leader's log, two
followers fetching and writing theirs), so it buys no throughput here, only tolerance of a
failed broker; other work on the machine shows as fewer busy cores than two.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from fastavro import parse_schema, schemaless_writer

from agentgym import AgentGym
from agentgym.ops.bench.producer import _CONF, _measure, _record_dict, experience_kwargs
from agentgym.ops.kafka.broker import KafkaBroker, KafkaCluster, free_port, free_ports
from agentgym.producers.admin import ensure_topics
from agentgym.schemas import default_schema_set

TOPIC = "gym-experiences-v1"


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (``/proc/<pid>/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
    return total / tick


def _quiesce(pids: list[int], idle_cores: float = 0.25, timeout_s: float = 10.0) -> None:
    """Waits until the brokers use less than ``idle_cores`` of CPU over half a second (followers
    that still copy the previous measurement's events would slow the next one down)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c0, t0 = _cpu_s(pids), time.monotonic()
        time.sleep(0.5)
        if (_cpu_s(pids) - c0) / (time.monotonic() - t0) < idle_cores:
            return
    print(f"  (the brokers did not go idle within {timeout_s:.0f}s; measuring anyway)", file=sys.stderr)


def _layout(bootstrap: str) -> str:
    md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(TOPIC, timeout=10)
    parts = md.topics[TOPIC].partitions.values()
    return (f"{len(md.brokers)} broker(s), {TOPIC}: {len(parts)} partitions, "
            f"replicas {sorted({len(p.replicas) for p in parts})}, in sync {sorted({len(p.isrs) for p in parts})}")


def _wait_in_sync(bootstrap: str, replicas: int, timeout_s: float = 60) -> None:
    """Waits until every partition of the topic has ``replicas`` in-sync replicas (new followers have joined)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        parts = admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions.values()
        if parts and all(len(p.isrs) == replicas for p in parts):
            return
        time.sleep(0.2)
    raise SystemExit(f"{TOPIC} did not get {replicas} in-sync replicas within {timeout_s:.0f}s")


def _variants(bootstrap: str, n: int, label: str, acks1: bool, spool: Path) -> list[tuple[str, Callable[[int], None], Callable[[], Any], Any]]:
    sv = default_schema_set().latest("Experience")
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(sv.raw), _record_dict(0))
    payload = b"\xc3\x01" + sv.fingerprint_bytes + buf.getvalue()
    keys = [f"{i:032x}" for i in range(n)]
    raw = Producer({"bootstrap.servers": bootstrap, **_CONF})
    out: list[tuple[str, Callable[[int], None], Callable[[], Any], Any]] = [
        (f"raw acks=all, {label}", lambda i: raw.produce(TOPIC, payload, keys[i]), lambda: raw.flush(120), raw)]
    if acks1:
        one = Producer({"bootstrap.servers": bootstrap, **_CONF, "enable.idempotence": False, "acks": 1})
        out.append((f"raw acks=1, {label}", lambda i: one.produce(TOPIC, payload, keys[i]), lambda: one.flush(120), one))
    gym = AgentGym(bootstrap, "bench", "bench-agent", spool_dir=spool, mask_enabled=False)
    kwargs = [experience_kwargs(i) for i in range(1000)]
    record = gym.record_experience
    out.append((f"sdk record_experience, {label}", lambda i: record(**kwargs[i % 1000]), lambda: gym.flush(120), gym))
    return out


def run(single: str, cluster: str, broker_pids: dict[str, list[int]], n: int, repeats: int,
        tmp: Path) -> list[dict[str, Any]]:
    variants = [(v, "single") for v in _variants(single, n, "1 broker", False, tmp / "spool-single")]
    variants += [(v, "cluster") for v in _variants(cluster, n, "3 brokers", True, tmp / "spool-cluster")]
    for (_, call, flush, _), _ in variants:  # warm up: connections, metadata, code paths
        for i in range(2000):
            call(i)
        flush()
    results: dict[str, list[dict[str, float]]] = {v[0][0]: [] for v in variants}
    for r in range(repeats):
        for (name, call, flush, _), which in variants:  # interleaved, so drift hits all alike
            _quiesce(broker_pids["single"] + broker_pids["cluster"])
            b0, c0 = _cpu_s(broker_pids[which]), time.process_time()
            m = _measure(name, n, call, flush)
            m["broker_cpu_s"] = (_cpu_s(broker_pids[which]) - b0) * 100_000 / n
            m["client_cpu_s"] = (time.process_time() - c0) * 100_000 / n
            results[name].append(m)
        print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr)
    for (_, _, _, client), _ in variants:
        if isinstance(client, AgentGym):
            client.close()
    return [{"name": name, **{k: statistics.median(x[k] for x in rs)
                              for k in ("events_per_s", "p99_us", "broker_cpu_s", "client_cpu_s")}}
            for name, rs in results.items()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="events per measurement (default 100000)")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per variant; medians reported (default 3)")
    ap.add_argument("--heap", default="512m", help="each broker's -Xmx (default 512m)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="agentgym-bench-cluster-"))
    single = KafkaBroker(tmp / "single", port=free_port(), controller_port=free_port(), heap=args.heap)
    ports = free_ports(6)
    cluster = KafkaCluster(tmp / "cluster", 3, ports=list(zip(ports[::2], ports[1::2])), heap=args.heap)
    try:
        print(f"starting a single broker and a 3-broker cluster under {tmp} ...", file=sys.stderr)
        single.start()
        cluster.start()
        ensure_topics(single.bootstrap_servers)
        ensure_topics(cluster.bootstrap_servers)
        _wait_in_sync(cluster.bootstrap_servers, 3)
        layouts = {"1 broker": _layout(single.bootstrap_servers), "3 brokers": _layout(cluster.bootstrap_servers)}
        pids = {"single": [single.status().pid or 0], "cluster": [st.pid or 0 for st in cluster.status()]}
        rows = run(single.bootstrap_servers, cluster.bootstrap_servers, pids, args.n, args.repeats, tmp)
    finally:
        single.stop()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for label, layout in layouts.items():
        print(f"{label}: {layout}")
    print(f"machine: {os.cpu_count()} CPU cores; {args.n:,} events of ~1 KiB per measurement, median of {args.repeats}")
    print(f"\n{'variant':34} {'events/s':>10} {'p99 call us':>12} {'broker CPU s':>13} {'client CPU s':>13} {'cores':>6}")
    print(f"{'':34} {'':>10} {'':>12} {'per 100k':>13} {'per 100k':>13} {'busy':>6}")
    for r in rows:
        busy = (r["broker_cpu_s"] + r["client_cpu_s"]) * r["events_per_s"] / 100_000  # CPU seconds per second
        print(f"{r['name']:34} {r['events_per_s']:10,.0f} {r['p99_us']:12.1f} {r['broker_cpu_s']:13.2f} "
              f"{r['client_cpu_s']:13.2f} {busy:6.2f}")
    by = {r["name"]: r for r in rows}
    sdk1, sdk3 = by["sdk record_experience, 1 broker"], by["sdk record_experience, 3 brokers"]
    raw1, raw3, one3 = by["raw acks=all, 1 broker"], by["raw acks=all, 3 brokers"], by["raw acks=1, 3 brokers"]
    print(f"\nsdk, 3 brokers / 1 broker:          {sdk3['events_per_s'] / sdk1['events_per_s']:.2f}")
    print(f"raw acks=all, 3 brokers / 1 broker: {raw3['events_per_s'] / raw1['events_per_s']:.2f}")
    print(f"raw on 3 brokers, acks=all / acks=1: {raw3['events_per_s'] / one3['events_per_s']:.2f}")
    print(f"broker CPU per event, 3 brokers / 1 broker (raw acks=all): {raw3['broker_cpu_s'] / raw1['broker_cpu_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
