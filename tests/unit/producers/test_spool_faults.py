"""The spool when the disk says no: it never raises, counts what it could not keep,
and cuts a partly written record off so the records before and after stay readable.
The write failures are real (RLIMIT_FSIZE in a child process), not simulated."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agentgym.producers.exceptions import ConfigError
from agentgym.producers.ratelog import RateLimitedLog, RateLimitFilter
from agentgym.producers.spool import Spool, _frame, read_segment

_CHILD = """
import json, resource, signal, sys
from agentgym.producers.spool import Spool
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
spool = Spool(sys.argv[1])
results = [spool.append("t", str(i).encode(), bytes([65 + i]) * 1000) for i in range(5)]
spool.close()
print(json.dumps({"results": results, "spooled": spool.spooled, "dropped": spool.dropped, "error": spool.last_error}))
"""


def test_a_write_past_the_file_size_limit_is_counted_and_cut_off(tmp_path: Path) -> None:
    frame = len(_frame("t", b"0", b"A" * 1000))
    limit = 2 * frame + frame // 2  # the third record fits only half-way
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), str(limit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["results"] == [True, True, False, False, False]
    assert (out["spooled"], out["dropped"]) == (2, 3)
    assert "File too large" in out["error"]
    (seg,) = list(tmp_path.glob("*/segment-*.log"))
    assert seg.stat().st_size == 2 * frame, "the partial third record was cut off"
    assert [v for _, _, v in read_segment(seg)] == [b"A" * 1000, b"B" * 1000]


def test_an_unusable_root_is_a_config_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"not-a-dir.*is unusable: Not a directory"):
        Spool(blocker / "spool")


def test_quarantine_keeps_the_record_aside_and_it_is_never_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append("t", b"k1", b"ok")
    assert spool.quarantine("t", b"k2", b"too big", "Broker: Message size too large")
    assert spool.quarantined == 1
    values = [v for seg in spool.take_segments() for _, _, v in read_segment(seg)]
    assert values == [b"ok"]
    (q,) = list((tmp_path / "quarantine").glob("*.log"))
    assert list(read_segment(q)) == [("t", b"k2", b"too big")]
    spool.close()
    # a closed spool's directory is adopted by the next client; the quarantine is not
    adopted = [v for seg in Spool(tmp_path).take_segments() for _, _, v in read_segment(seg)]
    assert adopted == [b"ok"]


def test_rate_limited_log_says_once_then_counts_what_it_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("agentgym.test.ratelog")
    rl = RateLimitedLog(log, interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="agentgym.test.ratelog"):
        results = [rl.log(logging.WARNING, "disk", "disk full %d", i) for i in range(100)]
        rl.log(logging.WARNING, "other", "another kind")
    assert results == [True] + [False] * 99
    assert [r.getMessage() for r in caplog.records] == ["disk full 0", "another kind"]
    rl.reset("disk")
    rl.interval_s = 0
    with caplog.at_level(logging.WARNING, logger="agentgym.test.ratelog"):
        assert rl.log(logging.WARNING, "disk", "disk full again")


def test_rate_limit_filter_passes_one_line_per_kind() -> None:
    f = RateLimitFilter(interval_s=3600)

    def rec(fac: str, text: str) -> logging.LogRecord:
        return logging.LogRecord("agentgym.kafka", logging.ERROR, __file__, 1, "%s [%s] %s", (fac, "rdkafka", text), None)

    passed = [f.filter(rec("FAIL", f"Connect failed {i}")) for i in range(50)]
    assert passed == [True] + [False] * 49
    assert f.filter(rec("GETPID", "other"))
