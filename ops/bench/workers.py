"""Labeller throughput with one and with two Faust workers (not a test): ``python -m agentgym.ops.bench.workers``.

Against a temporary broker, in the same run:

* **raw**: plain confluent-kafka consumers doing the least a labeller must do per event
  (consume, decode the Avro body, join the trace's feedback to its run in a dict, keep the
  offsets), in one process and in two processes of one consumer group: what the cores
  allow without Faust;
* **labeller, 1 worker** and **labeller, 2 workers**: ``agentgym processors run`` with only
  the labeller (``AGENTGYM_PROCESSORS=labeller``), each run under a new application id.
  The workers are started and their group is stable before anything is produced; then N
  traces (an experience and a thumbs feedback each) are produced, and the time runs until
  the worker group has committed every input offset (Faust commits every second).

Then the changelog-backed state, measured for the memory-or-RocksDB decision: the bytes
of the ``labeller-traces`` changelog per partition after the run, and how long a new
worker under the same application id takes to restore it (from start to its
"N traces in state" line, and the restore alone as Faust reports it).

Prints events/s of each and the ratios. On the 2-core machine this project is built
on, two workers share two cores with the broker, so the gain is bounded: see the
README's *Scaling out* section for the figures and what they mean.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from agentgym import AgentGym
from agentgym.ops.kafka.broker import KafkaBroker, free_port
from agentgym.producers.admin import ensure_topics
from agentgym.schemas import AvroCodec
from agentgym.schemas.topics import TOPICS

INPUTS = (TOPICS["experiences"].name, TOPICS["feedback"].name)
ROOT = Path(__file__).resolve().parents[2]


def produce(bootstrap: str, traces: int, tenant: str) -> float:
    """N experiences and N feedback events through the SDK; returns when the first was sent."""
    with AgentGym(bootstrap, tenant, "bench-agent", spool_dir=Path(tempfile.mkdtemp()), mask_enabled=False) as gym:
        t0 = time.monotonic()
        for i in range(traces):
            trace = gym.record_experience(input=f"question {i}", output="answer", model_name="m", model_version="v1",
                                          latency_ms=100.0 + i % 50, prompt_tokens=20, completion_tokens=5)
            gym.record_feedback(trace, thumbs_up=i % 3 != 0)
        assert gym.flush(120) == 0
    return t0


def _raw_consumer(bootstrap: str, group: str, total: int, done: Any) -> None:
    codec = AvroCodec()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.subscribe(list(INPUTS))
    joined: dict[str, dict[str, Any]] = {}
    while done.value < total:
        msgs = c.consume(1000, 0.2)
        for m in msgs:
            if m.error() is not None:
                continue
            r = codec.decode(m.value()).record
            st = joined.setdefault(r["trace_id"], {})
            st["fb" if "thumbs_up" in r else "run"] = r
        if msgs:
            c.commit(asynchronous=True)
            with done.get_lock():
                done.value += sum(1 for m in msgs if m.error() is None)
    c.close()


def raw(bootstrap: str, total: int, processes: int) -> float:
    """events/s of ``processes`` raw consumers in one group, from the first event consumed."""
    done = mp.get_context("spawn").Value("q", 0)
    group = f"raw-{uuid.uuid4().hex}"
    procs = [mp.get_context("spawn").Process(target=_raw_consumer, args=(bootstrap, group, total, done)) for _ in range(processes)]
    for p in procs:
        p.start()
    while done.value == 0:
        time.sleep(0.01)
    t0 = time.monotonic()
    while done.value < total:
        time.sleep(0.01)
    dt = time.monotonic() - t0
    for p in procs:
        p.join(30)
    return total / dt


class Worker:
    """A labeller-only worker process (``faust -A agentgym.processors.app worker``)."""

    def __init__(self, bootstrap: str, app_id: str, home: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
        env.update({"AGENTGYM_BOOTSTRAP_SERVERS": bootstrap, "AGENTGYM_APP_ID": app_id, "AGENTGYM_HOME": str(home),
                    "AGENTGYM_PROCESSORS": "labeller", "AGENTGYM_FAUST_WEB_PORT": str(free_port()),
                    "AGENTGYM_LABELLER_QUIET_PERIOD_S": "1", "AGENTGYM_LABELLER_TICK_S": "0.5", "PYTHONUNBUFFERED": "1"})
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "agentgym.processors.app", "worker", "-l", "info"],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def group_stable(bootstrap: str, group: str, members: int) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(10)
    return desc.state.name == "STABLE" and len(desc.members) == members


def start_at_end(bootstrap: str, group: str) -> int:
    """Commits the input topics' end offsets for ``group`` (a new application starts after what is
    there: earlier runs' events are not this run's); returns their sum."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = []
        for t in INPUTS:
            for p in range(TOPICS["experiences"].partitions):
                parts.append(TopicPartition(t, p, c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]))
        c.commit(offsets=parts, asynchronous=False)
        return sum(tp.offset for tp in parts)
    finally:
        c.close()


def committed(bootstrap: str, group: str) -> int:
    """Input events the group has committed (the sum of the input partitions' committed offsets)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(t, p) for t in INPUTS for p in range(TOPICS["experiences"].partitions)]
        return sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


def labeller(bootstrap: str, workers: int, traces: int, base: Path) -> tuple[float, str]:
    """events/s of ``workers`` labeller workers over ``traces`` new traces; returns (rate, app id)."""
    app_id = f"bench-{workers}w-{uuid.uuid4().hex[:6]}"
    home = base / app_id
    home.mkdir(parents=True)
    before = start_at_end(bootstrap, app_id)
    procs = [Worker(bootstrap, app_id, home, home / f"worker-{i}.log") for i in range(workers)]
    try:
        _wait(lambda: all("Ready" in w.text() for w in procs), 180, "the workers")
        _wait(lambda: group_stable(bootstrap, app_id, workers), 120, "a stable group")
        t0 = produce(bootstrap, traces, f"bench-{uuid.uuid4().hex[:6]}")
        total = before + 2 * traces
        _wait(lambda: committed(bootstrap, app_id) >= total, 600, "every event committed")
        dt = time.monotonic() - t0
        if not group_stable(bootstrap, app_id, workers):
            print(f"  (warning: the group of {workers} was not stable at the end)", file=sys.stderr)
    finally:
        for w in procs:
            w.stop()
    return 2 * traces / dt, app_id


def changelog_bytes(data_dir: Path, app_id: str) -> dict[int, int]:
    """Bytes on disk of the labeller-traces changelog, per partition."""
    out: dict[int, int] = {}
    for d in data_dir.rglob(f"{app_id}-labeller-traces-changelog-*"):
        if d.is_dir():
            part = int(d.name.rsplit("-", 1)[1])
            out[part] = sum(f.stat().st_size for f in d.iterdir() if f.suffix == ".log")
    return out


def recovery(bootstrap: str, app_id: str, base: Path, traces: int) -> tuple[float, float | None]:
    """A new worker under ``app_id`` restores the traces table: (seconds to its 'N traces in state' line, Faust's restore time)."""
    home = base / f"{app_id}-recover"
    home.mkdir()
    t0 = time.monotonic()
    w = Worker(bootstrap, app_id, home, home / "worker.log")
    pat = re.compile(r"labeller: (\d+) traces in state")
    try:
        _wait(lambda: any(int(n) >= traces for n in pat.findall(w.text())), 300, "the restored state")
        dt = time.monotonic() - t0
    finally:
        w.stop()
    faust = None
    stamps = re.findall(r"^\[([0-9-]+ [0-9:,]+)\] .*?(Restoring state from changelog topics|Done reading from changelog topics)",
                        w.text(), re.M)
    for (start, what), (end, what2) in zip(stamps, stamps[1:]):
        if what.startswith("Restoring") and what2.startswith("Done"):
            fmt = "%Y-%m-%d %H:%M:%S,%f"
            faust = (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()
    return dt, faust


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20_000, help="traces per run (two events each; default 20000)")
    args = ap.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="agentgym-bench-kafka-"))
    broker = KafkaBroker(data, port=free_port(), controller_port=free_port(), heap="1g")
    print(f"starting a temporary Kafka broker on {broker.bootstrap_servers} ...", file=sys.stderr)
    broker.start()
    base = Path(tempfile.mkdtemp(prefix="agentgym-bench-workers-"))
    bootstrap = broker.bootstrap_servers
    try:
        ensure_topics(bootstrap)
        print(f"raw consumers over {2 * args.n:,} events ...", file=sys.stderr)
        produce(bootstrap, args.n, "bench-raw")
        raw1 = raw(bootstrap, 2 * args.n, 1)
        raw2 = raw(bootstrap, 2 * args.n, 2)
        print("labeller, 1 worker ...", file=sys.stderr)
        one, app1 = labeller(bootstrap, 1, args.n, base)
        print("labeller, 2 workers ...", file=sys.stderr)
        two, _ = labeller(bootstrap, 2, args.n, base)
        sizes = changelog_bytes(data, app1)
        print("restoring the 1-worker run's state in a new worker ...", file=sys.stderr)
        t_state, t_faust = recovery(bootstrap, app1, base, args.n)
    finally:
        broker.stop()
    load = os.getloadavg()
    print(f"\n{'':34} {'events/s':>10}")
    print(f"{'raw consumer, 1 process':34} {raw1:10,.0f}")
    print(f"{'raw consumers, 2 processes':34} {raw2:10,.0f}   ({raw2 / raw1:.2f}x)")
    print(f"{'labeller, 1 worker':34} {one:10,.0f}   ({one / raw1:.2f}x raw)")
    print(f"{'labeller, 2 workers':34} {two:10,.0f}   ({two / one:.2f}x 1 worker)")
    total = sum(sizes.values())
    print(f"\nlabeller-traces changelog after {args.n:,} traces: {total / 1e6:.1f} MB on disk "
          f"({total / max(args.n, 1):,.0f} bytes/trace before compaction), per partition "
          + ", ".join(f"{p}: {b / 1e6:.1f} MB" for p, b in sorted(sizes.items())))
    print(f"a new worker restored {args.n:,} traces from the changelog: ready with them {t_state:.1f}s after its start"
          + (f" (Faust's recovery: {t_faust:.1f}s)" if t_faust is not None else ""))
    print(f"cores: {os.cpu_count()}, load average at the end: {load[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
