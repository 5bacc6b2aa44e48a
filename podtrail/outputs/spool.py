"""A disk spool: append-only segment files of length-prefixed records plus an acknowledged
position, so a SIEM outage or a `kill -9` of the agent loses nothing (at-least-once).

Every message is appended (and fsync'd per batch) before it is sent; the sender reads from
the acknowledged position and moves it only after the receiver took the bytes. When the spool
exceeds ``max_bytes`` the oldest segment is dropped, and its records are counted as lost.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
from collections import deque
from pathlib import Path

_LEN = struct.Struct(">I")
SEGMENT_BYTES = 8 << 20
RECENT_BYTES = 16 << 20  # what the sender may take from memory instead of reading the file back


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_bytes = max_bytes
        self._lock = threading.Condition()
        self.dropped = 0
        segs = self._segments()
        self._write_seg = segs[-1] if segs else 0
        self._wf = open(self._seg_path(self._write_seg), "ab")
        self._ack_seg, self._ack_off = self._load_ack()
        # Records appended by this process and not yet acknowledged, in order and contiguous
        # (a segment's last record is followed by the next segment's first), with their
        # positions: (segment, start offset, end offset, record). When the acknowledged
        # position is the first one's start, the sender takes records from here (the bytes
        # are on disk already), else it reads the file (after a restart, an outage longer
        # than RECENT_BYTES, or at a segment boundary).
        self._recent: deque[tuple[int, int, int, bytes]] = deque()
        self._recent_bytes = 0

    # -- files --------------------------------------------------------------------------------
    def _seg_path(self, n: int) -> Path:
        return self.dir / f"{n:012d}.seg"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.seg"))

    def _load_ack(self) -> tuple[int, int]:
        try:
            seg, off = (self.dir / "ack").read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            segs = self._segments()
            return (segs[0] if segs else 0), 0

    def _store_ack(self) -> None:
        tmp = self.dir / "ack.tmp"
        with open(tmp, "w") as f:
            f.write(f"{self._ack_seg} {self._ack_off}")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / "ack")

    # -- writing ------------------------------------------------------------------------------
    def append(self, records: list[bytes]) -> None:
        with self._lock:
            pack = _LEN.pack
            parts: list[bytes] = []
            for r in records:
                parts.append(pack(len(r)))
                parts.append(r)
            seg, off = self._write_seg, self._wf.tell()
            self._wf.write(b"".join(parts))
            self._wf.flush()
            os.fsync(self._wf.fileno())
            recent = self._recent
            for r in records:
                end = off + 4 + len(r)
                recent.append((seg, off, end, r))
                off = end
            self._recent_bytes += sum(map(len, records))
            while self._recent_bytes > RECENT_BYTES and recent:
                self._recent_bytes -= len(recent.popleft()[3])
            if self._wf.tell() >= SEGMENT_BYTES:
                self._wf.close()
                self._write_seg += 1
                self._wf = open(self._seg_path(self._write_seg), "ab")
            self._enforce_limit()
            self._lock.notify_all()

    def _enforce_limit(self) -> None:
        segs = self._segments()
        total = sum(self._seg_path(s).stat().st_size for s in segs)
        while total > self.max_bytes and len(segs) > 1:
            oldest = segs.pop(0)
            p = self._seg_path(oldest)
            size = p.stat().st_size
            start = self._ack_off if oldest == self._ack_seg else 0
            if oldest >= self._ack_seg:
                self.dropped += sum(1 for _ in self._records(oldest, start))
            p.unlink()
            while self._recent and self._recent[0][0] <= oldest:
                self._recent_bytes -= len(self._recent.popleft()[3])
            total -= size
            if self._ack_seg <= oldest:
                self._ack_seg, self._ack_off = segs[0], 0
                self._store_ack()

    # -- reading ------------------------------------------------------------------------------
    def _records(self, seg: int, off: int, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Records of segment ``seg`` from ``off`` (with the offset after each), at most
        ``limit``: read in 1 MiB chunks, so a sender taking 1,000 records never reads (and
        parses) the rest of an 8 MiB segment each time."""
        out: list[tuple[int, bytes]] = []
        try:
            f = open(self._seg_path(seg), "rb")
        except OSError:
            return out
        with f:
            f.seek(off)
            pos, rest = off, b""
            while limit is None or len(out) < limit:
                chunk = f.read(1 << 20)
                if not chunk:
                    break  # what is left in ``rest`` is a torn write at the end (crash mid-append): ignored
                data = rest + chunk if rest else chunk
                i, n_data = 0, len(data)
                while i + 4 <= n_data and (limit is None or len(out) < limit):
                    (n,) = _LEN.unpack_from(data, i)
                    if i + 4 + n > n_data:
                        break
                    out.append((pos + i + 4 + n, data[i + 4:i + 4 + n]))
                    i += 4 + n
                pos += i
                rest = data[i:]
        return out

    def pending(self, limit: int = 1000) -> tuple[list[bytes], tuple[int, int]]:
        """Up to ``limit`` unacknowledged records and the position after the last one."""
        with self._lock:
            seg, off = self._ack_seg, self._ack_off
            recent = self._recent
            if recent and recent[0][0] == seg and recent[0][1] == off:  # exactly here: nothing skipped
                # contiguous by construction (only its oldest are ever removed): take in order
                items = list(itertools.islice(recent, limit))
                last = items[-1]
                return [it[3] for it in items], (last[0], last[2])
            out: list[bytes] = []
            pos = (seg, off)
            for s in [x for x in self._segments() if x >= seg]:
                for end, rec in self._records(s, off if s == seg else 0, limit - len(out)):
                    out.append(rec)
                    pos = (s, end)
                    if len(out) >= limit:
                        return out, pos
            return out, pos

    def ack(self, pos: tuple[int, int]) -> None:
        with self._lock:
            self._ack_seg, self._ack_off = pos
            recent = self._recent
            while recent and (recent[0][0], recent[0][2]) <= pos:
                self._recent_bytes -= len(recent.popleft()[3])
            self._store_ack()
            for s in self._segments():  # fully sent segments other than the one being written
                if s < self._ack_seg and s != self._write_seg:
                    self._seg_path(s).unlink(missing_ok=True)

    def size_bytes(self) -> int:
        return sum(self._seg_path(s).stat().st_size for s in self._segments() if self._seg_path(s).exists())

    def wait(self, timeout: float) -> None:
        with self._lock:
            self._lock.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._wf.close()
