"""The durable spool: order, torn writes, adoption of a dead client's spool."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agentgym.producers.spool import Spool, read_segment


def test_append_and_read_back_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records = [("topic-a", f"k{i}".encode(), f"value-{i}".encode() * (i + 1)) for i in range(50)]
    records.append(("topic-b", None, b""))
    for r in records:
        spool.append(*r)
    segments = spool.take_segments()
    assert len(segments) == 1
    assert list(read_segment(segments[0])) == records
    assert spool.spooled == len(records)


def test_segments_roll_and_stay_ordered(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(30):
        spool.append("t", b"k", str(i).encode() * 20)
    segments = spool.take_segments()
    assert len(segments) > 1
    values = [v for seg in segments for _, _, v in read_segment(seg)]
    assert values == [str(i).encode() * 20 for i in range(30)]


def test_torn_tail_is_dropped_not_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append("t", b"k1", b"first")
    spool.append("t", b"k2", b"second")
    seg = spool.take_segments()[0]
    data = seg.read_bytes()
    seg.write_bytes(data[:-3])  # a crash in the middle of the last write
    assert list(read_segment(seg)) == [("t", b"k1", b"first")]


def test_corrupt_record_stops_the_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append("t", b"k1", b"first")
    spool.append("t", b"k2", b"second")
    seg = spool.take_segments()[0]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert list(read_segment(seg)) == [("t", b"k1", b"first")]


def test_a_dead_clients_spool_is_adopted_a_live_ones_is_not(tmp_path: Path) -> None:
    dead = Spool(tmp_path)
    dead.append("t", b"k", b"from-dead")
    dead.take_segments()  # closes its file
    # simulate the owner dying: release its lock without cleaning up
    fcntl.flock(dead._lock_fd, fcntl.LOCK_UN)
    os.close(dead._lock_fd)

    live = Spool(tmp_path)
    live.append("t", b"k", b"from-live")
    live.sync()

    me = Spool(tmp_path)
    me.append("t", b"k", b"mine")
    values = [v for s in me.take_segments() for _, _, v in read_segment(s)]
    assert b"from-dead" in values and b"mine" in values
    assert b"from-live" not in values
    assert values[0] == b"mine"  # own records first


def test_close_removes_an_empty_spool_dir(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    d = spool.dir
    spool.close()
    assert not d.exists()
    kept = Spool(tmp_path)
    kept.append("t", None, b"x")
    kept.close()
    assert kept.dir.exists() and list(kept.dir.glob("segment-*.log"))
