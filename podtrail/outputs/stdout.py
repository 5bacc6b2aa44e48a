"""JSON lines on stdout: the embedded default output (no SIEM needed).

Lines are formatted in the pipeline thread and written once per batch (``end_batch``) from
it, without waiting: a regular file takes the write at once; a pipe or socket is written
with ``RWF_NOWAIT`` (it takes what fits now). What would wait (a reader of the pipe that is
behind), and everything for a stream that cannot be written so (a terminal, an object with no
file descriptor), goes to a writer thread that waits for the reader; the pipeline writes
directly again once that thread has caught up. So order is kept, a slow reader never stalls
the pipeline, and lines are lost only when the writer thread's queue is full (counted).
Measured: one thread and its wake-ups fewer per batch (docs/BENCHMARKS.md, "Threads and the
auditd exec path").

Lines linger up to ``linger_s`` (or ``linger_lines``) before they are written: at 1,000 execs/s
the pipeline's batches are one or two events, and one write per batch cost more than formatting
the line (docs/BENCHMARKS.md, "Outputs, enrichment and delivery"). The pipeline ends a batch at
least every tick, so a line is out within ``linger_s`` plus a tick; ``close`` writes the rest.

With the native accelerator (``_jsonline.c``) a JSON line goes from the event straight into
one buffer kept between writes, and the list and dict values of the event's context entities
are rendered once per entity version; ``json_line`` stays the reference (and the path of any
event the accelerator declines), ``_PyLines`` the buffer's twin."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

import orjson

from podtrail import metrics, native
from podtrail.formatters.jsonenc import ascii_json, dumpb
from podtrail.inbox import Inbox
from podtrail.model.context import Entity, EventDict
from podtrail.model.event import Event

_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
# A pipe on stdout (a container runtime's log pipe) is grown to this (Linux's default limit for
# an unprivileged process, /proc/sys/fs/pipe-max-size): its default 64 KiB takes less than one
# linger's lines at 1,000 execs/s, so every write was split and the rest handed to the writer
# thread (one more thread wake-up per write); measured in docs/BENCHMARKS.md ("JSON lines").
PIPE_BYTES = 1 << 20
log = logging.getLogger(__name__)


def to_json_line(ev: Event) -> str:
    """One event, one line: flat canonical field names; non-ASCII escaped so no byte of an
    attacker-controlled value can split the line (orjson, see formatters/jsonenc.py)."""
    return json_line(ev).decode("ascii")


def json_line(ev: Event) -> bytes:
    """``to_json_line`` as the ASCII bytes a writer sends. The ancestry, most of a process
    event's line, is encoded once per ancestry list: the process stage shares one list among
    the events of a process and its siblings and makes a new one when an ancestor changes
    (a list on an event is never changed: it is part of the immutable process entity)."""
    doc = ev
    anc = ev.get("ancestors")
    if anc and type(anc) is list:
        hit = _ANC.get(id(anc))
        if hit is None or hit[0] is not anc:
            hit = _ancestry(anc)
        doc = dict(ev)
        doc["ancestors"] = hit[1]
    try:
        b = orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):  # what only the careful path takes (see dumpb)
        return dumpb(ev)
    return b if b.isascii() else ascii_json(b)


# id of an ancestry list -> (the list, kept alive so its id is not reused; its JSON text)
_ANC: dict[int, tuple[list[Any], orjson.Fragment]] = {}


def _ancestry(anc: list[Any]) -> tuple[list[Any], orjson.Fragment]:
    if len(_ANC) >= 1024:  # a few MB at most: the lists of the parents with recent children
        _ANC.clear()
    hit = _ANC[id(anc)] = (anc, orjson.Fragment(dumpb(anc)))
    return hit


_native = native.load("podtrail.outputs._jsonline")
if _native is not None:
    _native.configure(EventDict, Entity, orjson.dumps)


class _LineBuffer(Protocol):
    def add(self, ev: Event) -> bool: ...
    def extend(self, data: bytes) -> None: ...
    def __len__(self) -> int: ...
    def write(self, fd: int, flags: int = 0) -> int: ...
    def take(self) -> bytes: ...
    def clear(self) -> None: ...


class _PyLines(bytearray):
    """Lines not written yet, in one growing buffer: the pure-Python twin of
    ``_jsonline.Lines`` (which also formats: its ``add``). A bytearray, so appending stays C."""

    def add(self, ev: Event) -> bool:
        return False  # the caller formats

    def write(self, fd: int, flags: int = 0) -> int:
        """Write the start of the buffer (``pwritev`` with ``flags`` if any), drop what was written."""
        if not self:
            return 0
        n = os.pwritev(fd, [self], -1, flags) if flags else os.write(fd, self)
        del self[:n]
        return n

    def take(self) -> bytes:
        data = bytes(self)
        self.clear()
        return data


def _fd_of(stream: IO[str]) -> tuple[int, str]:
    """(descriptor or -1, how the pipeline may write it: "plain" (a regular file never waits
    for a reader), "nowait" (RWF_NOWAIT), or "" (only the writer thread may))."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return -1, ""
    if stat.S_ISREG(mode):
        return fd, "plain"
    if stat.S_ISFIFO(mode):
        _grow_pipe(fd)
    return fd, "nowait" if _NOWAIT else ""


def _grow_pipe(fd: int) -> None:
    """Grow the pipe to ``PIPE_BYTES`` (never shrink it); where the system refuses, it stays."""
    get, set_ = getattr(fcntl, "F_GETPIPE_SZ", None), getattr(fcntl, "F_SETPIPE_SZ", None)
    if get is None or set_ is None or not PIPE_BYTES:
        return
    try:
        if fcntl.fcntl(fd, get) < PIPE_BYTES:
            fcntl.fcntl(fd, set_, PIPE_BYTES)
    except OSError as e:  # EPERM beyond the limit, EBUSY: the pipe keeps its size
        log.debug("stdout: pipe stays at its size: %s", e)


class StdoutSink:
    def __init__(self, stream: IO[str] | None = None, max_queue: int = 65536,
                 formatter: Callable[[Event], str] = to_json_line, linger_s: float = 0.02,
                 linger_bytes: int = 1 << 16) -> None:
        self.name = "stdout"
        self._fmt = formatter
        # JSON lines are made as bytes (json_line) and kept as they are; other formats are text
        self._fmtb: Callable[[Event], bytes] | None = json_line if formatter is to_json_line else None
        self._stream = stream or sys.stdout
        self._enc = getattr(self._stream, "encoding", None) or "utf-8"
        # Lines not written yet, encoded, in one growing buffer: holding many separate line
        # objects until a write cost more than making them (measured)
        self._buf: _LineBuffer = _native.Lines() if _native is not None else _PyLines()
        # the accelerator's JSON line into the buffer (False: it declined; None: not this format)
        self._add: Callable[[Event], bool] | None = self._buf.add if self._fmtb is not None and _native else None
        self._n = 0  # lines in _buf
        self._linger = linger_s
        self._linger_bytes = linger_bytes
        self._since = 0.0  # when an end of batch first found lines waiting (0: none waiting)
        self._max = max_queue  # lines waiting for the writer thread
        self._queued = 0
        self._q: Inbox[tuple[bytes | str, int]] = Inbox(1 << 30)  # bounded by lines (self._max)
        self._mu = threading.Lock()  # the hand-over to and from the writer thread
        self._behind = False  # the writer thread has lines not yet written: hand over, keep order
        self._t: threading.Thread | None = None
        self._fd, self._direct = _fd_of(self._stream)
        self.handed_over = 0  # batches (or their rest) that went to the writer thread (tests, benchmarks)
        self.writes = 0  # writes from the pipeline thread and hand-overs (tests, benchmarks)
        self.on_closed: Callable[[str], None] | None = None  # the agent decides: stop, or go on without us
        self.closed = False
        if self._fd >= 0:
            try:
                self._stream.flush()  # anything printed before goes out before our lines
            except (OSError, ValueError):
                pass

    def submit(self, ev: Event) -> None:
        try:
            add = self._add
            if add is None or not add(ev):
                fmt = self._fmtb
                line = fmt(ev) if fmt is not None else self._fmt(ev).encode(self._enc, "backslashreplace")
                buf = self._buf
                buf.extend(line)
                buf.extend(b"\n")
        except Exception as e:  # a formatting bug loses this line only, counted; the other outputs still get the event
            self._format_failed(e)
            return
        self._n += 1

    def _format_failed(self, e: BaseException) -> None:
        log.error("stdout: cannot format an event", exc_info=e)
        metrics.dropped("stdout", "format_error")

    def fast_submit(self) -> tuple[object, ...] | None:
        """``submit`` in the pipeline's C chain (pipeline.Pipeline._fast_chain): the C line
        maker's ``add``, then ``_n``; what it declines, ``submit`` itself; what it raises,
        ``_format_failed``. None without the accelerator (or another format)."""
        if self._add is None:
            return None
        return ("lines", self._add, self, self._format_failed)

    def end_batch(self) -> None:
        """Write what waits once it has lingered ``linger_s`` or reached ``linger_bytes``."""
        if not self._n:
            return
        if self._linger > 0 and len(self._buf) < self._linger_bytes:
            now = time.monotonic()
            if not self._since:
                self._since = now
                return
            if now - self._since < self._linger:
                return
        self.flush()

    def flush(self) -> None:
        """Write (or hand over) every line waiting, now."""
        n_lines, buf = self._n, self._buf
        self._since = 0.0
        if not n_lines:
            return
        self._n = 0
        if self.closed:
            buf.clear()
            metrics.dropped("stdout", "closed", n_lines)
            return
        self.writes += 1
        if self._fd < 0:
            self._hand_over(buf.take().decode(self._enc), n_lines)
            return
        if self._direct and not self._behind:
            try:
                self._write_now(buf)
            except (BrokenPipeError, ValueError):
                buf.clear()
                self._closed(n_lines)
                return
            if not len(buf):
                return
            # the rest (from a partial line on) goes to the writer thread
        data = buf.take()
        self._hand_over(data, data.count(b"\n"))

    def _write_now(self, buf: _LineBuffer) -> int:
        """Bytes written (and dropped from ``buf``) without waiting (0: the reader is behind)."""
        if self._direct == "plain":
            return buf.write(self._fd)
        try:
            return buf.write(self._fd, _NOWAIT)
        except BlockingIOError:
            return 0
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            self._direct = ""  # this descriptor cannot be written without waiting (a terminal): the writer thread
            return 0

    def _hand_over(self, payload: bytes | str, n: int) -> None:
        with self._mu:
            if self._queued + n > self._max:
                metrics.dropped("stdout", "queue_full", n)
                return
            self._queued += n
            self._behind = True
            self.handed_over += 1
            self._q.put_nowait((payload, n))
            if self._t is None:
                self._t = threading.Thread(target=self._run, name="podtrail-stdout", daemon=True)
                self._t.start()

    def _run(self) -> None:
        while True:
            batch, closed = self._q.take(64, 1.0)
            for payload, n in batch:
                self._write_waiting(payload, n)
            with self._mu:
                self._queued -= sum(n for _, n in batch)
                if not self._q:
                    self._behind = False
            if closed:
                return

    def _write_waiting(self, payload: bytes | str, n: int) -> None:
        if self.closed:
            metrics.dropped("stdout", "closed", n)
            return
        try:
            if isinstance(payload, bytes):
                data = memoryview(payload)
                while data:
                    data = data[os.write(self._fd, data):]
            else:
                self._stream.write(payload)
                self._stream.flush()
        except (BrokenPipeError, ValueError):
            self._closed(n)

    def _closed(self, n: int) -> None:
        metrics.dropped("stdout", "closed", n)
        if self.closed:
            return
        self.closed = True
        if self._stream is sys.stdout:  # nothing reads it any more: the interpreter's last flush must not fail
            from podtrail.cli import _quiet_stdout

            _quiet_stdout()
        if self.on_closed is not None:
            self.on_closed(self.name)

    def close(self) -> None:
        self.flush()
        with self._mu:
            t = self._t
            if t is not None:
                self._q.close()
        if t is not None:
            t.join(10)


def build_stdout(spec: dict[str, Any]) -> StdoutSink:
    fmt = spec.get("format", "json")
    formats = {"json": to_json_line}
    from podtrail.formatters.cef import format_cef
    from podtrail.formatters.ecs_json import format_ecs
    from podtrail.formatters.leef import format_leef

    formats.update(ecs=format_ecs, cef=format_cef, leef=format_leef)
    if fmt not in formats:
        from podtrail.config import ConfigError

        raise ConfigError(f"outputs: stdout format {fmt!r} is not one of {', '.join(formats)}")
    return StdoutSink(formatter=formats[fmt])
