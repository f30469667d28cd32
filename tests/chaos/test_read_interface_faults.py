"""Hostile requests to the read-only HTTP interface of a real serving process."""

from __future__ import annotations

import gzip
import http.client
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import ROOT

pytestmark = pytest.mark.timeout(180)

_SERVE = """
import sys, time
from agentgym.processors.store import migrate, open_store
from agentgym.processors.store.http_server import serve_readonly
store = open_store("chdb://" + sys.argv[1])
migrate(store)
srv = serve_readonly(store, port=0)
print(srv.port, flush=True)
time.sleep(3600)
"""


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_gzip_bomb_is_refused_without_growing_the_server(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(tmp_path / "ch")], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        before = _rss_peak_kib(proc.pid)
        bomb = gzip.compress(b"\0" * (1024 * 1024 * 1024), 9)  # 1 GiB of zeros in about 1 MB
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/", body=bomb, headers={"Content-Encoding": "gzip"})
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        took = time.monotonic() - t0
        after = _rss_peak_kib(proc.pid)
        print(f"\ngzip bomb ({len(bomb)} bytes -> 1 GiB): HTTP {resp.status} in {took:.2f}s; "
              f"server peak RSS {before // 1024} -> {after // 1024} MiB")
        assert resp.status == 413 and "QUERY_IS_TOO_LARGE" in text
        assert after - before < 200 * 1024, "the bomb was inflated"
        # the server still answers
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/?query=SELECT%201")
        assert conn.getresponse().read() == b"1\n"
        conn.close()
    finally:
        proc.kill()
        proc.wait(30)
