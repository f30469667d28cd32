"""A local durable spool for events Kafka could not take.

Records are appended to segment files under a per-client directory; each record is
framed with its length and a CRC-32, so a write torn by a crash is detected and
dropped at replay instead of corrupting what follows. A client owns its directory
through an advisory lock; directories whose owner died are adopted and replayed by
the next client that starts on the same spool root.

The spool never raises because of I/O once it is open: a record that cannot be
written (a full disk, a directory turned read-only or immutable, a file-size limit)
is counted in :attr:`Spool.dropped` and reported at a bounded rate, and a partly
written frame is cut off so that the records after it stay readable. A directory
that is unusable when the spool opens is a :class:`~agentgym.producers.exceptions.ConfigError`
naming the path and the reason. Records that can never be delivered (larger than the
broker accepts) are moved aside into ``<root>/quarantine/`` by :meth:`Spool.quarantine`,
never replayed again, and counted.
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

from agentgym.producers.exceptions import ConfigError
from agentgym.producers.ratelog import RateLimitedLog

__all__ = ["Spool", "SpooledRecord", "read_segment", "QUARANTINE_DIR"]

log = logging.getLogger(__name__)
QUARANTINE_DIR = "quarantine"
"""Sub-directory of the spool root that holds records that can never be delivered."""

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
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "lock", os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise ConfigError(f"spool directory {self.root} is unusable: {exc.strerror or exc} (errno {exc.errno}); "
                              "give a writable spool_dir (AGENTGYM_SPOOL_DIR)") from exc
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._mutex = threading.Lock()
        self._seq = 0
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._ratelog = RateLimitedLog(log)
        self.spooled = 0  # records written since start
        self.dropped = 0  # records that could not be written (I/O errors)
        self.quarantined = 0  # records moved aside as undeliverable
        self.last_error: str | None = None

    # -- writing -------------------------------------------------------------
    def _segment_path(self, seq: int) -> Path:
        return self.dir / f"segment-{seq:012d}.log"

    def append(self, topic: str, key: bytes | None, value: bytes) -> bool:
        """Appends one record; returns False (and counts it in ``dropped``) if it could not be written."""
        frame = _frame(topic, key, value)
        with self._mutex:
            try:
                if self._fd is None or self._size >= self.segment_bytes:
                    self._roll_locked()
                self._write_locked(frame)
            except OSError as exc:
                self.dropped += 1
                self._io_failed_locked("append", exc)
                return False
            self._dirty = True
            self.spooled += 1
            return True

    def _write_locked(self, frame: bytes) -> None:
        assert self._fd is not None
        start = self._size
        view = memoryview(frame)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            # cut the partial frame off so the records after it stay readable; if even
            # that fails, the torn tail ends this segment and the next write rolls
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                self._close_fd_locked(sync=False)
            raise
        self._size = start + len(frame)

    def _io_failed_locked(self, what: str, exc: OSError) -> None:
        self.last_error = f"{what}: {exc.strerror or exc}"
        self._ratelog.log(logging.ERROR, what,
                          "agentgym spool %s: cannot write (%s); undeliverable events are dropped and counted "
                          "(%d so far: gym.stats['dropped'])", self.root, exc.strerror or exc, self.dropped)

    def _close_fd_locked(self, sync: bool = True) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if sync and self._dirty:
                os.fsync(fd)
        finally:
            self._dirty = False
            os.close(fd)

    def _roll_locked(self) -> None:
        self._close_fd_locked()
        self._seq += 1
        self._fd = os.open(self._segment_path(self._seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    def sync(self) -> None:
        """fsyncs what was appended since the last call (errors are logged, not raised)."""
        with self._mutex:
            if self._dirty and self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    self._io_failed_locked("fsync", exc)
                self._dirty = False

    def quarantine(self, topic: str, key: bytes | None, value: bytes, reason: str) -> bool:
        """Moves a record that can never be delivered to ``<root>/quarantine/``; returns whether it was kept there."""
        qdir = self.root / QUARANTINE_DIR
        with self._mutex:
            self.quarantined += 1
            try:
                qdir.mkdir(exist_ok=True)
                with open(qdir / f"quarantine-{self.dir.name}.log", "ab") as fh:
                    fh.write(_frame(topic, key, value))
                kept = True
            except OSError as exc:
                self.dropped += 1
                self._io_failed_locked("quarantine", exc)
                kept = False
        self._ratelog.log(logging.ERROR, "quarantine",
                          "agentgym: a %d-byte event for %s can never be delivered (%s); moved to %s (%d so far)",
                          len(value), topic, reason, qdir, self.quarantined)
        return kept

    # -- replay ---------------------------------------------------------------
    def pending(self) -> bool:
        return any(_s_iter(d) for d in self._replayable_dirs())

    def _replayable_dirs(self) -> Iterator[Path]:
        """This client's directory, then orphaned ones (whose owner's lock is free)."""
        yield self.dir
        try:
            others = sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.dir and p.name != QUARANTINE_DIR)
        except OSError:
            return
        for d in others:
            try:
                fd = os.open(d / "lock", os.O_CREAT | os.O_RDWR, 0o644)
            except OSError:
                continue  # unreadable or vanished: not ours to adopt
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
            try:
                self._close_fd_locked()
            except OSError as exc:
                self._io_failed_locked("fsync", exc)
            closed_upto = self._seq  # appends from now on go to later segments
        segments: list[Path] = []
        for d in self._replayable_dirs():
            if d == self.dir:
                # only closed segments: one opened by an append since is still being written
                segments.extend(p for p in _s_iter(d) if int(p.stem.split("-")[1]) <= closed_upto)
            else:
                segments.extend(_s_iter(d))
        return segments

    def close(self) -> None:
        """Closes the segment and releases the directory (removed when empty). Never raises."""
        with self._mutex:
            try:
                self._close_fd_locked()
            except OSError as exc:
                self._io_failed_locked("fsync", exc)
        empty = not _s_iter(self.dir)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
        except OSError:
            pass
        if empty:
            try:
                (self.dir / "lock").unlink(missing_ok=True)
                self.dir.rmdir()
            except OSError:
                pass


def _s_iter(d: Path) -> list[Path]:
    try:
        return sorted(p for p in d.glob("segment-*.log") if p.stat().st_size > 0)
    except OSError:
        return []
