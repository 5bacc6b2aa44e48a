"""A disk spool: append-only segment files of framed records plus an acknowledged position,
so a SIEM outage or a `kill -9` of the agent loses nothing (at-least-once).

A record is framed as ``<byte length> <bytes>``, which is RFC 6587 octet counting: for a
syslog output over TCP the spool's bytes are the wire bytes, so a batch is framed once (when
it is formatted), written with one write (fsync per batch), and sent from memory with one
``sendall``, with no per-record work after formatting. Other transports split the records.

The sender reads from the acknowledged position and moves it only after the receiver took
the bytes. When the spool exceeds ``max_bytes`` the oldest segment is dropped, and its
records are counted as lost. Each process writes to a new segment, so a record torn by a
crash is only ever at the end of a segment (it is skipped; everything before it is sent).
Segments of the older format (4-byte length prefix, ``*.seg``) are converted at start.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 << 20
RECENT_BYTES = 16 << 20  # what the sender may take from memory instead of reading the file back
SUFFIX = ".oc"  # octet-counted segments
_MAX_DIGITS = 10  # a record is shorter than 10 GB


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive records as framed in the spool (``parts``: the buffers they were appended
    in, each of a few hundred kB, so none is copied again), how many, and the position after them."""

    parts: list[bytes]
    count: int
    pos: tuple[int, int]

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)

    def records(self) -> list[bytes]:
        return [r for p in self.parts for r in split(p)]


def frame(texts: list[str]) -> bytes:
    """The framed bytes of a batch of messages (UTF-8; a lone surrogate becomes ``?``):
    one join and one encode; lengths from the text where it is ASCII (the common case)."""
    return "".join([f"{len(t) if t.isascii() else len(t.encode('utf-8', 'replace'))} {t}" for t in texts]).encode(
        "utf-8", "replace")


def frame_bytes(records: list[bytes]) -> bytes:
    return b"".join([b"%d %s" % (len(r), r) for r in records])


def _bounds(data: bytes, start: int, limit: int) -> Iterator[tuple[int, int]]:
    """Where the bytes of each whole record after ``start`` begin and where the record
    ends, for at most ``limit`` records; stops at a torn (incomplete) or malformed one."""
    n, i, end = 0, start, len(data)
    find = data.find
    while n < limit:
        sp = find(b" ", i, i + _MAX_DIGITS + 1)
        if sp <= i or not data[i:sp].isdigit():
            return
        nxt = sp + 1 + int(data[i:sp])
        if nxt > end:
            return
        yield sp + 1, nxt
        i = nxt
        n += 1


def scan(data: bytes, start: int, limit: int) -> tuple[int, int]:
    """How many whole records (at most ``limit``) follow ``start`` in ``data``, and where the
    last one ends."""
    n, last = 0, start
    for _, end in _bounds(data, start, limit):
        n, last = n + 1, end
    return n, last


def split(data: bytes) -> list[bytes]:
    """The records of framed bytes (whole records only)."""
    return [data[a:b] for a, b in _bounds(data, 0, 1 << 62)]


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_bytes = max_bytes
        self._lock = threading.Condition()
        self.dropped = 0
        # Batches appended by this process and not yet acknowledged, in order and contiguous
        # (a segment's last batch is followed by the next segment's first; a batch never spans
        # two segments): (segment, start offset, end offset, records, framed bytes). When the
        # acknowledged position is inside the first one, the sender takes the bytes from here
        # (they are on disk already), else it reads the file (after a restart, or an outage
        # longer than RECENT_BYTES).
        self._recent: deque[tuple[int, int, int, int, bytes]] = deque()
        self._recent_bytes = 0
        self._recent_records = 0
        self._ack_file = threading.Lock()  # the position file is written outside ``_lock``
        segs = self._segments()
        self._sizes = {s: self._seg_path(s).stat().st_size for s in segs}  # segment -> bytes on disk
        self._write_seg = segs[-1] + 1 if segs else 0  # never after a possibly torn tail
        self._wf = open(self._seg_path(self._write_seg), "ab")
        self._sizes[self._write_seg] = 0
        self._ack_seg, self._ack_off = self._load_ack()
        self._sent = (self._ack_seg, self._ack_off)  # what the sender took (sent, not yet confirmed)
        self._migrate()
        self._sent = (self._ack_seg, self._ack_off)

    # -- files --------------------------------------------------------------------------------
    def _seg_path(self, n: int) -> Path:
        return self.dir / f"{n:012d}{SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob(f"*{SUFFIX}"))

    def _load_ack(self) -> tuple[int, int]:
        try:
            seg, off = (self.dir / "pos").read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            segs = self._segments()
            return (segs[0] if segs else 0), 0

    def _store_ack(self) -> None:
        """Persist the acknowledged position (the latest one: callers need not hold ``_lock``)."""
        with self._ack_file:
            tmp = self.dir / "pos.tmp"
            with open(tmp, "w") as f:
                f.write(f"{self._ack_seg} {self._ack_off}")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / "pos")

    def _migrate(self) -> None:
        """Convert the unacknowledged records of older-format segments (``*.seg``, a 4-byte
        length before each record, position in ``ack``): appended here, then the old files
        removed. Interrupted, it starts again (records may then be sent twice, never lost)."""
        old = sorted(self.dir.glob("*.seg"))
        if not old:
            return
        if not (self.dir / "pos").exists():  # not converted yet (or interrupted): from the old position
            try:
                seg, off = ((self.dir / "ack").read_text().split() + ["", ""])[:2]
                ack_seg, ack_off = int(seg), int(off)
            except (OSError, ValueError):
                ack_seg, ack_off = int(old[0].stem), 0
            first = (self._write_seg, self._wf.tell())
            n = 0
            for p in old:
                if int(p.stem) < ack_seg:
                    continue
                recs = _old_records(p.read_bytes(), ack_off if int(p.stem) == ack_seg else 0)
                for i in range(0, len(recs), 4096):
                    self.append(recs[i:i + 4096])
                n += len(recs)
            self._ack_seg, self._ack_off = first
            self._store_ack()
            log.info("spool %s: converted %d unsent records of the older format", self.dir, n)
        for p in old:
            p.unlink(missing_ok=True)
        (self.dir / "ack").unlink(missing_ok=True)

    # -- writing ------------------------------------------------------------------------------
    def append(self, records: list[bytes]) -> None:
        if records:
            self.append_framed(frame_bytes(records), len(records))

    def append_framed(self, data: bytes, count: int) -> None:
        """Append ``count`` records already framed (``frame``): one write, one fsync. One
        thread appends; the file is written and synced outside the lock, so the sender takes
        and acknowledges meanwhile."""
        if not count:
            return
        seg, off = self._write_seg, self._wf.tell()
        self._wf.write(data)
        self._wf.flush()
        os.fsync(self._wf.fileno())
        end = off + len(data)
        with self._lock:
            recent = self._recent
            recent.append((seg, off, end, count, data))
            self._recent_bytes += len(data)
            self._recent_records += count
            while self._recent_bytes > RECENT_BYTES and recent:
                self._forget()
            self._sizes[seg] = end
            if end >= SEGMENT_BYTES:
                self._wf.close()
                self._write_seg += 1
                self._wf = open(self._seg_path(self._write_seg), "ab")
                self._sizes[self._write_seg] = 0
            moved = self._enforce_limit()
            self._lock.notify_all()
        if moved:
            self._store_ack()

    def _forget(self) -> None:
        b = self._recent.popleft()
        self._recent_bytes -= len(b[4])
        self._recent_records -= b[3]

    def _enforce_limit(self) -> bool:
        """Drop the oldest segments while over ``max_bytes``; whether the position moved."""
        moved = False
        sizes = self._sizes
        total = sum(sizes.values())
        while total > self.max_bytes and len(sizes) > 1:
            oldest = min(sizes)
            p = self._seg_path(oldest)
            start = self._ack_off if oldest == self._ack_seg else 0
            if oldest >= self._ack_seg:
                try:
                    self.dropped += scan(p.read_bytes(), start, 1 << 62)[0]
                except OSError:
                    pass
            p.unlink(missing_ok=True)
            total -= sizes.pop(oldest)
            while self._recent and self._recent[0][0] <= oldest:
                self._forget()
            if self._ack_seg <= oldest:
                self._ack_seg, self._ack_off = min(sizes), 0
                moved = True
        self._sent = max(self._sent, (self._ack_seg, self._ack_off))
        return moved

    # -- reading ------------------------------------------------------------------------------
    def _read(self, seg: int, off: int, limit: int) -> tuple[bytes, int, int]:
        """Whole records of segment ``seg`` from ``off``, at most ``limit``: their bytes, how
        many, and the offset after them. Read in 1 MiB chunks, so a sender taking 1,000
        records never reads (and scans) the rest of an 8 MiB segment each time."""
        try:
            f = open(self._seg_path(seg), "rb")
        except OSError:
            return b"", 0, off
        parts: list[bytes] = []
        n = 0
        with f:
            f.seek(off)
            rest = b""
            while n < limit:
                chunk = f.read(1 << 20)
                if not chunk:
                    break  # what is left in ``rest`` is a torn write at the end (crash mid-append): ignored
                data = rest + chunk if rest else chunk
                k, i = scan(data, 0, limit - n)
                parts.append(data[:i])
                n += k
                off += i
                rest = data[i:]
        return b"".join(parts), n, off

    def _take_recent(self, at: tuple[int, int], limit: int) -> Chunk | None:
        """From memory, when position ``at`` is inside a batch kept there."""
        recent = self._recent
        if not recent or at < (recent[0][0], recent[0][1]):
            return None
        parts: list[bytes] = []
        n = 0
        pos = at
        found = False
        for seg, start, end, count, data in recent:  # contiguous by construction: take in order
            if not found:
                if seg != at[0] or not start <= at[1] < end:
                    continue
                found = True
            if n >= limit:
                break
            skip = pos[1] - start if seg == pos[0] else 0
            if not skip and n + count <= limit:  # a whole batch: no scan at all
                parts.append(data)
                n += count
                pos = (seg, end)
                continue
            k, i = scan(data, skip, limit - n)
            parts.append(data[skip:i])
            n += k
            pos = (seg, start + i)
            if i < len(data):
                break
        return Chunk(parts, n, pos) if found else None

    def _take(self, at: tuple[int, int], limit: int) -> Chunk:
        with self._lock:
            c = self._take_recent(at, limit)
            if c is not None:
                return c
            seg, off = at
            parts: list[bytes] = []
            n = 0
            pos = at
            for s in sorted(x for x in self._sizes if x >= seg):
                data, k, end = self._read(s, off if s == seg else 0, limit - n)
                if k:
                    parts.append(data)
                    n += k
                    pos = (s, end)
                if n >= limit:
                    break
            return Chunk(parts, n, pos)

    def take(self, limit: int = 1000) -> Chunk:
        """Up to ``limit`` records after what was taken before (``sent``), framed, and the
        position after the last. ``rewind`` makes the unacknowledged ones due again."""
        return self._take(self._sent, limit)

    def sent(self, pos: tuple[int, int]) -> None:
        with self._lock:
            self._sent = max(self._sent, pos)

    def rewind(self) -> None:
        """Send again from the acknowledged position (the receiver may not have them)."""
        with self._lock:
            self._sent = (self._ack_seg, self._ack_off)

    def pending(self, limit: int = 1000) -> tuple[list[bytes], tuple[int, int]]:
        """Up to ``limit`` unacknowledged records and the position after the last one."""
        c = self._take((self._ack_seg, self._ack_off), limit)
        return c.records(), c.pos

    def unacknowledged(self) -> bool:
        return self._take((self._ack_seg, self._ack_off), 1).count > 0

    def ack(self, pos: tuple[int, int]) -> None:
        with self._lock:
            recent = self._recent
            ended = None
            while recent and (recent[0][0], recent[0][2]) <= pos:
                ended = recent[0][0], recent[0][2]
                self._forget()
            if ended == pos and recent and recent[0][0] > pos[0] and recent[0][1] == 0:
                pos = (recent[0][0], 0)  # the end of a full segment is the next one's start
            if pos < (self._ack_seg, self._ack_off):  # the limit dropped past it meanwhile
                return
            self._ack_seg, self._ack_off = pos
            self._sent = max(self._sent, pos)
            done = [s for s in self._sizes if s < pos[0] and s != self._write_seg]  # fully sent
            for s in done:
                del self._sizes[s]
        self._store_ack()
        for s in done:
            self._seg_path(s).unlink(missing_ok=True)

    def size_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def wait(self, timeout: float) -> None:
        with self._lock:
            self._lock.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._wf.close()


_LEN = struct.Struct(">I")


def _old_records(data: bytes, off: int) -> list[bytes]:
    """The whole records of an older-format segment from ``off`` (a torn tail is ignored)."""
    out: list[bytes] = []
    while off + 4 <= len(data):
        (n,) = _LEN.unpack_from(data, off)
        if off + 4 + n > len(data):
            break
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out
