"""Gateway benchmark (not a test): ``python -m agentgym.ops.bench.gateway``.

Measures, in one run, against a real broker (started here unless ``--bootstrap``):

* **bare**: an aiohttp handler that only parses the JSON body and answers 202, the
  ceiling for aiohttp on this machine (issue 15's baseline);
* **bare scanner**: the same on the gateway's own read path for hot requests (its
  compiled scanner, ``gateway/_httpscan.c``, on a bare asyncio protocol): what is left
  between it and the gateway is the gateway's work per request;
* **single**: ``POST /v1/experiences`` with one ~1 KiB event, authentication and the
  per-key token bucket on (the bucket is large enough never to refuse), through the
  whole path: key check, limits, validation, Avro encoding, produce;
* **batch**: ``POST /v1/experiences`` with 100 events per request (events/s);
* **assignment**: ``GET /v1/experiments/{id}/assignment`` throughput;
* **p99 at 2,000 requests/s** for single events and for the assignment, from an
  open-loop async client (requests are sent on a fixed schedule and timed from when
  they were due, so a stall is not hidden by waiting for it);
* **revocation**: seconds from ``revoke_key`` returning to the gateway refusing the key.

Each server is one process (``--workers`` to change); throughput comes from ``wrk``
(Debian package) when installed, else from an async client (slower: it shares the CPU).
On a shared machine throughput varies with the neighbours' load; the server's CPU time
per request (from ``/proc``) does not, and is printed beside it.
Targets (issue 15): single >= 10,000/s per process and >= 0.6 x bare; p99 < 5 ms at
2,000/s; batches >= 50,000 events/s; assignment p99 < 2 ms at 2,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentgym.gateway.keys import create_key, revoke_key
from agentgym.gateway.plans import set_plan
from agentgym.ops.bench.producer import experience_kwargs
from agentgym.ops.kafka.broker import KafkaBroker, free_port
from agentgym.ops.settings import StackSettings
from agentgym.producers.admin import ensure_topics
from agentgym.producers.records import RecordProducer

TENANT = "bench"

_BARE = """
import sys, orjson
from aiohttp import web
async def handle(request):
    orjson.loads(await request.read())
    return web.Response(body=b'{"accepted": 1}', status=202, content_type="application/json")
app = web.Application()
app.router.add_post("/v1/experiences", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

# the same floor for the gateway's own read path: requests read by its compiled scanner, the JSON parsed, 202
_BARE_SCANNED = """
import asyncio, sys, orjson
from agentgym.gateway._httpscan import scan
ANSWER = b'HTTP/1.1 202 Accepted\\r\\nContent-Type: application/json\\r\\nContent-Length: 15\\r\\n\\r\\n{"accepted": 1}'
class Bare(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        data = self.buf + data if self.buf else data
        pos = 0
        while True:
            hit = scan(data, pos, 1 << 22)
            if not hit:
                break
            orjson.loads(data[hit[6]:hit[7]])
            self.transport.write(ANSWER)
            pos = hit[7]
        self.buf = data[pos:]
        if hit is None and self.buf:  # not a request it reads (the readiness probe): 404, closed
            self.transport.write(b"HTTP/1.1 404 Not Found\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
            self.transport.close()
async def main():
    server = await asyncio.get_running_loop().create_server(Bare, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


def _event(i: int) -> dict[str, Any]:
    e = experience_kwargs(i)
    e["agent_id"] = "bench-agent"
    return e


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def _process(args: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[int]:
    with open(log, "wb") as fh:
        p = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while _get(ready_url) != 200:
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{args[:4]} did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield p.pid
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


# -- load generators -------------------------------------------------------------
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _wrk(url: str, method: str, body: bytes | None, headers: dict[str, str], seconds: int, connections: int, tmp: Path) -> tuple[float, float]:
    """(requests/s, p99 seconds) from wrk; refuses a run with non-2xx answers."""
    script = tmp / f"wrk-{os.getpid()}-{time.monotonic_ns()}.lua"
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        (tmp / "body.json").write_bytes(body)
        lines.append(f'local f = io.open("{tmp / "body.json"}", "rb"); wrk.body = f:read("*a"); f:close()')
    for k, v in headers.items():
        lines.append(f'wrk.headers["{k}"] = "{v}"')
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw non-2xx answers:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    return rps, float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")  # type: ignore[union-attr]


async def _closed_loop(url: str, method: str, body: bytes | None, headers: dict[str, str], seconds: float, connections: int) -> tuple[float, float]:
    import aiohttp

    lat: list[float] = []
    stop = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            async with session.request(method, url, data=body, headers=headers) as r:
                await r.read()
                if r.status >= 300:
                    raise SystemExit(f"{url} answered {r.status}")
            lat.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        t0 = time.monotonic()
        await asyncio.gather(*(worker(s) for _ in range(connections)))
        elapsed = time.monotonic() - t0
    lat.sort()
    return len(lat) / elapsed, lat[int(0.99 * (len(lat) - 1))]


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the open-loop client: sends a prepared request, reads the
    answer's head and ``Content-Length`` body, calls back with the status. No parsing beyond that: the
    client's own cost per request is a few microseconds, so that the floor it measures is the machine's."""

    def __init__(self, done: Any) -> None:
        self.done = done
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end]
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            end = head_end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buf) < end:
                return
            status = int(head[9:12])
            self.buf = self.buf[end:]
            self.done(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport = None
            self.done(self, 0)


async def _open_loop(url: str, method: str, body: bytes | None, headers: dict[str, str], rate: float, seconds: float,
                     connections: int = 64) -> tuple[float, float, float]:
    """(achieved requests/s, p50, p99 seconds) at a fixed arrival rate, timed from when each request was due.

    A dispatcher sends each request when it is due on an idle keep-alive connection (of
    ``connections``), or queues it until one is idle: a slow answer delays what is due after it,
    and that wait is counted. The client is a bare asyncio protocol (aiohttp's client, used
    before, cost ~0.1 ms per request on this machine and was itself the p99's floor).
    """
    from urllib.parse import urlsplit

    u = urlsplit(url)
    target = u.path + (f"?{u.query}" if u.query else "")
    head = [f"{method} {target} HTTP/1.1", f"Host: {u.hostname}:{u.port}"] + [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        head.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    errors = 0
    idle: list[_Conn] = []
    waiting: list[float] = []  # due times of requests queued for a connection
    inflight: dict[_Conn, float] = {}
    n = int(rate * seconds)
    finished = loop.create_future()

    def send(conn: _Conn, due: float) -> None:
        inflight[conn] = due
        assert conn.transport is not None
        conn.transport.write(request)

    def done(conn: _Conn, status: int) -> None:
        nonlocal errors
        due = inflight.pop(conn, None)
        if due is not None:
            lat.append(time.perf_counter() - due)
            errors += not 200 <= status < 300
        if conn.transport is None:  # closed
            if due is None and not finished.done():
                finished.set_exception(SystemExit(f"{url}: a connection closed"))
        elif waiting:
            send(conn, waiting.pop(0))
        else:
            idle.append(conn)
        if len(lat) == n and not finished.done():
            finished.set_result(None)

    conns = []
    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: _Conn(done), u.hostname, u.port)
        conns.append(conn)
    for conn in conns:  # warm each connection once (not counted)
        inflight[conn] = 0.0
        conn.transport.write(request)  # type: ignore[union-attr]
    while len(idle) < connections:
        await asyncio.sleep(0.01)
    lat.clear()
    errors = 0
    start = time.perf_counter() + 0.05
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and start + i / rate <= now:
            due = start + i / rate
            if idle:
                send(idle.pop(), due)
            else:
                waiting.append(due)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    await asyncio.wait_for(finished, 60)
    elapsed = time.perf_counter() - start
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    if errors:
        raise SystemExit(f"{errors} non-2xx answers from {url}")
    lat.sort()
    return n / elapsed, lat[len(lat) // 2], lat[int(0.99 * (len(lat) - 1))]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _throughput(use_wrk: bool, url: str, method: str, body: bytes | None, headers: dict[str, str], seconds: int,
                connections: int, tmp: Path, pid: int) -> tuple[float, float, float]:
    """(requests/s, p99 s, server CPU microseconds per request): CPU per request does not
    depend on what else the machine runs, so it is the steadier figure on a shared machine."""
    cpu0 = _cpu_s(pid)
    if use_wrk:
        rps, p99 = _wrk(url, method, body, headers, seconds, connections, tmp)
    else:
        rps, p99 = asyncio.run(_closed_loop(url, method, body, headers, seconds, connections))
    return rps, p99, (_cpu_s(pid) - cpu0) / (rps * seconds) * 1e6


# -- the run -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=None, help="use this broker instead of starting one")
    ap.add_argument("--seconds", type=int, default=10, help="duration of each throughput run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=float, default=2000.0, help="arrival rate of the latency runs, requests/s")
    ap.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    ap.add_argument("--no-wrk", action="store_true", help="use the async client even if wrk is installed")
    args = ap.parse_args(argv)
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    tmp = Path(tempfile.mkdtemp(prefix="agentgym-bench-gateway-"))
    broker = None
    try:
        bootstrap = args.bootstrap
        if bootstrap is None:
            stack = StackSettings()
            broker = KafkaBroker(tmp / "kafka", port=free_port(), controller_port=free_port(), version=stack.kafka_version,
                                 jar_cache=stack.jar_cache)
            broker.start(wait_s=120, quiet=True)
            bootstrap = broker.bootstrap_servers
        ensure_topics(bootstrap)
        _run(args, bootstrap, use_wrk, tmp)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, bootstrap: str, use_wrk: bool, tmp: Path) -> None:
    set_plan(bootstrap, TENANT, "enterprise", rate_per_s=1e9, burst=1e9)  # the bucket runs but never refuses
    key, record = create_key(bootstrap, TENANT, ["ingest", "read"], "bench")
    experiment = f"bench-exp-{os.getpid()}"
    with RecordProducer(bootstrap) as p:
        p.send("experiments", {
            "event_id": os.urandom(8).hex(), "tenant_id": TENANT, "experiment_id": experiment, "agent_id": "bench-agent",
            "name": "bench", "salt": "s", "unit_type": "user",
            "variants": [{"name": "control", "model_version": "v1", "weight": 0.5, "is_control": True},
                         {"name": "candidate", "model_version": "v2", "weight": 0.5, "is_control": False}],
            "primary_metric": {"name": "success_rate", "kind": "proportion", "direction": "increase", "cap": None, "limit": None},
            "guardrails": [], "alpha": 0.05, "min_samples_per_arm": 100, "status": "running", "config_version": 1,
            "updated_ms": int(time.time() * 1000), "updated_by": "bench"})
    single = json.dumps(_event(0)).encode()
    batch = json.dumps({"events": [_event(i) for i in range(100)]}).encode()
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    gport, bport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    env.update({"AGENTGYM_BOOTSTRAP_SERVERS": bootstrap, "AGENTGYM_GATEWAY_SPOOL_DIR": str(tmp / "spool"),
                "AGENTGYM_GATEWAY_WORKERS": str(args.workers), "AGENTGYM_GATEWAY_MAX_BODY_BYTES": str(4 * 1024 * 1024),
                "AGENTGYM_HOME": str(tmp / "home")})
    gw = f"http://127.0.0.1:{gport}"
    print(f"load: {'wrk' if use_wrk else 'async client'}; {args.connections} connections, {args.seconds} s per run; "
          f"event {len(single)} bytes, batch {len(batch)} bytes; {os.cpu_count()} CPUs; gateway workers {args.workers}")
    with _bare(_BARE_SCANNED, env, bport, tmp) as pid:
        scan_rps, scan_p99, scan_cpu = _throughput(use_wrk, f"http://127.0.0.1:{bport}/v1/experiences", "POST", single,
                                                   {"Content-Type": "application/json"}, args.seconds, args.connections, tmp, pid)
    bport = free_port()
    with _bare(_BARE, env, bport, tmp) as pid:
        bare_rps, bare_p99, bare_cpu = _throughput(use_wrk, f"http://127.0.0.1:{bport}/v1/experiences", "POST", single,
                                                   {"Content-Type": "application/json"}, args.seconds, args.connections, tmp, pid)
        # the open-loop client's own floor on this machine (it shares the CPUs): a p99 below is not the gateway's
        bare_at_rate = asyncio.run(_open_loop(f"http://127.0.0.1:{bport}/v1/experiences", "POST", single,
                                              {"Content-Type": "application/json"}, args.rate, args.seconds))
    with _process([sys.executable, "-m", "agentgym.ops.cli", "gateway", "run", "--port", str(gport)], env, f"{gw}/readyz",
                  tmp / "gateway.log") as pid:
        assert _post(f"{gw}/v1/experiences", single, auth) == 202
        single_rps, single_p99, single_cpu = _throughput(use_wrk, f"{gw}/v1/experiences", "POST", single, auth, args.seconds,
                                                         args.connections, tmp, pid)
        batch_rps, batch_p99, batch_cpu = _throughput(use_wrk, f"{gw}/v1/experiences", "POST", batch, auth, args.seconds,
                                                      max(2, args.connections // 2), tmp, pid)
        assign_url = f"{gw}/v1/experiments/{experiment}/assignment?unit_id=user-42"
        assign_rps, assign_p99, assign_cpu = _throughput(use_wrk, assign_url, "GET", None, auth, args.seconds, args.connections, tmp, pid)
        at_rate = asyncio.run(_open_loop(f"{gw}/v1/experiences", "POST", single, auth, args.rate, args.seconds))
        assign_at_rate = asyncio.run(_open_loop(assign_url, "GET", None, auth, args.rate, args.seconds))
        revoke_s = _revocation(bootstrap, gw, single)
    one = args.workers == 1  # with several workers the CPU of the children is not counted
    ms = 1000.0
    def cpu(us: float, per: str = "req") -> str:
        return f"server CPU {us:7.1f} us/{per} (= {1e6 / us:>7,.0f}/s per core)" if one else ""

    print(f"bare aiohttp (parse JSON only)  {bare_rps:>10,.0f} req/s   p99 {bare_p99 * ms:6.2f} ms   {cpu(bare_cpu)}")
    print(f"bare scanner (parse JSON only)  {scan_rps:>10,.0f} req/s   p99 {scan_p99 * ms:6.2f} ms   {cpu(scan_cpu)}")
    print(f"gateway single event           {single_rps:>10,.0f} req/s   p99 {single_p99 * ms:6.2f} ms   {cpu(single_cpu)}")
    print(f"  ratio to bare aiohttp: {single_rps / bare_rps:.2f} x by throughput"
          + (f", {bare_cpu / single_cpu:.2f} x by CPU per request" if one else "") + "   [target >= 10,000/s, >= 0.6 x]")
    print(f"  ratio to the bare scanner: {single_rps / scan_rps:.2f} x by throughput"
          + (f", {scan_cpu / single_cpu:.2f} x by CPU per request" if one else "")
          + "   [what authentication, limits, validation, masking, encoding and produce cost on the same read path]")
    print(f"gateway batches of 100         {batch_rps * 100:>10,.0f} events/s ({batch_rps:,.0f} req/s, p99 {batch_p99 * ms:.2f} ms)   "
          f"{cpu(batch_cpu / 100, 'event')}   [target >= 50,000 events/s]")
    print(f"assignment                     {assign_rps:>10,.0f} req/s   p99 {assign_p99 * ms:6.2f} ms   {cpu(assign_cpu)}")
    print(f"bare aiohttp at {args.rate:,.0f}/s (open loop): achieved {bare_at_rate[0]:,.0f}/s, p50 {bare_at_rate[1] * ms:.2f} ms, "
          f"p99 {bare_at_rate[2] * ms:.2f} ms   [the client's and the machine's floor]")
    print(f"single event at {args.rate:,.0f}/s (open loop): achieved {at_rate[0]:,.0f}/s, p50 {at_rate[1] * ms:.2f} ms, "
          f"p99 {at_rate[2] * ms:.2f} ms   [target p99 < 5 ms]")
    print(f"assignment at {args.rate:,.0f}/s (open loop):   achieved {assign_at_rate[0]:,.0f}/s, p50 {assign_at_rate[1] * ms:.2f} ms, "
          f"p99 {assign_at_rate[2] * ms:.2f} ms   [target p99 < 2 ms]")
    print(f"revocation: the gateway refused the key {revoke_s:.2f} s after `revoke_key` was called   [target < 5 s]")


@contextmanager
def _bare(script: str, env: dict[str, str], port: int, tmp: Path) -> Iterator[int]:
    with open(tmp / "bare.log", "wb") as fh:
        p = subprocess.Popen([sys.executable, "-c", script, str(port)], env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while _get(f"http://127.0.0.1:{port}/") == 0:
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the bare server did not start:\n{(tmp / 'bare.log').read_text()}")
            time.sleep(0.1)
        yield p.pid
    finally:
        p.terminate()
        p.wait(10)


def _revocation(bootstrap: str, gw: str, body: bytes) -> float:
    key, record = create_key(bootstrap, TENANT, ["ingest"], "bench-revoke")
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 30
    while _post(f"{gw}/v1/experiences", body, headers) != 202:
        if time.monotonic() > deadline:
            raise SystemExit("the gateway never accepted the new key")
        time.sleep(0.01)
    t0 = time.monotonic()  # from the start of the revocation (it reads the keys topic, then writes the record)
    revoke_key(bootstrap, record["key_id"])
    while _post(f"{gw}/v1/experiences", body, headers) != 401:
        if time.monotonic() - t0 > 30:
            raise SystemExit("the gateway still accepts a key revoked 30 s ago")
        time.sleep(0.01)
    return time.monotonic() - t0


if __name__ == "__main__":
    main(sys.argv[1:])
