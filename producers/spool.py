"""A local durable spool for events Kafka could not take.

Records are appended to segment files under a per-client directory; each record is
framed with its length and a CRC-32, so a write torn by a crash is detected and
dropped at replay instead of corrupting what follows. A client owns its directory
through an advisory lock; directories whose owner died are adopted and replayed by
the next client that starts on the same spool root.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Spool", "SpooledRecord"]

log = logging.getLogger(__name__)

_HEAD = struct.Struct(">IIiI")  # crc32, topic length, key length (-1: no key), value length
SpooledRecord = tuple[str, bytes | None, bytes]


def _frame(topic: str, key: bytes | None, value: bytes) -> bytes:
    t = topic.encode()
    klen = -1 if key is None else len(key)
    body = t + (key or b"") + value
    crc = zlib.crc32(struct.pack(">IiI", len(t), klen, len(value)) + body)
    return _HEAD.pack(crc, len(t), klen, len(value)) + body


def read_segment(path: Path) -> Iterator[SpooledRecord]:
    """Yields the intact records of one segment; stops at a torn or corrupt tail."""
    data = path.read_bytes()
    pos = 0
    while pos + _HEAD.size <= len(data):
        crc, tlen, klen, vlen = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
        end = start + tlen + max(klen, 0) + vlen
        if end > len(data) or zlib.crc32(struct.pack(">IiI", tlen, klen, vlen) + data[start:end]) != crc:
            log.warning("spool segment %s: torn or corrupt record at byte %d; %d bytes dropped", path, pos, len(data) - pos)
            return
        topic = data[start:start + tlen].decode()
        kstart = start + tlen
        key = None if klen < 0 else data[kstart:kstart + klen]
        vstart = kstart + max(klen, 0)
        yield topic, key, data[vstart:end]
        pos = end
    if pos != len(data):
        log.warning("spool segment %s: %d trailing bytes of a torn record dropped", path, len(data) - pos)


class Spool:
    """Append-only, crash-safe spool owned by one client.

    Args:
        root: the spool root; this client writes to ``root/<client id>``.
        segment_bytes: roll to a new segment file past this size.
    """

    def __init__(self, root: Path | str, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.segment_bytes = segment_bytes
        self.dir = self.root / uuid.uuid4().hex[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._mutex = threading.Lock()
        self._seq = 0
        self._fh = None
        self._dirty = False
        self.spooled = 0  # records written since start

    # -- writing -------------------------------------------------------------
    def _segment_path(self, seq: int) -> Path:
        return self.dir / f"segment-{seq:012d}.log"

    def append(self, topic: str, key: bytes | None, value: bytes) -> None:
        frame = _frame(topic, key, value)
        with self._mutex:
            if self._fh is None or self._fh.tell() >= self.segment_bytes:
                self._roll_locked()
            self._fh.write(frame)
            self._fh.flush()  # to the OS now; fsync in sync()
            self._dirty = True
            self.spooled += 1

    def _roll_locked(self) -> None:
        if self._fh is not None:
            os.fsync(self._fh.fileno())
            self._fh.close()
        self._seq += 1
        self._fh = open(self._segment_path(self._seq), "ab")

    def sync(self) -> None:
        """fsyncs what was appended since the last call."""
        with self._mutex:
            if self._dirty and self._fh is not None:
                os.fsync(self._fh.fileno())
                self._dirty = False

    # -- replay ---------------------------------------------------------------
    def pending(self) -> bool:
        return any(_s_iter(d) for d in self._replayable_dirs())

    def _replayable_dirs(self) -> Iterator[Path]:
        """This client's directory, then orphaned ones (whose owner's lock is free)."""
        yield self.dir
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.dir):
            fd = os.open(d / "lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live client owns it
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            yield d

    def take_segments(self) -> list[Path]:
        """Closes the current segment and returns every finished segment, oldest first.

        New appends go to a fresh segment, so replayed records that fail again are
        spooled anew instead of into the file being replayed.
        """
        with self._mutex:
            if self._fh is not None:
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None
                self._dirty = False
        segments: list[Path] = []
        for d in self._replayable_dirs():
            segments.extend(_s_iter(d))
        return segments

    def close(self) -> None:
        with self._mutex:
            if self._fh is not None:
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None
        empty = not any(_s_iter(self.dir))
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        if empty:
            (self.dir / "lock").unlink(missing_ok=True)
            try:
                self.dir.rmdir()
            except OSError:
                pass


def _s_iter(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("segment-*.log") if p.stat().st_size > 0) if d.exists() else []
