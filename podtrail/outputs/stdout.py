"""JSON lines on stdout: the embedded default output (no SIEM needed).

Lines are formatted in the pipeline thread and written once per batch (``end_batch``) from
it, without waiting: a regular file takes the write at once; a pipe or socket is written
with ``RWF_NOWAIT`` (it takes what fits now). What would wait (a reader of the pipe that is
behind), and everything for a stream that cannot be written so (a terminal, an object with no
file descriptor), goes to a writer thread that waits for the reader; the pipeline writes
directly again once that thread has caught up. So order is kept, a slow reader never stalls
the pipeline, and lines are lost only when the writer thread's queue is full (counted).
Measured: one thread and its wake-ups fewer per batch (docs/BENCHMARKS.md, "Threads and the
auditd exec path")."""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from podtrail import metrics
from podtrail.formatters.jsonenc import dumps
from podtrail.inbox import Inbox
from podtrail.model.event import Event

_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
log = logging.getLogger(__name__)


def to_json_line(ev: Event) -> str:
    """One event, one line: flat canonical field names; non-ASCII escaped so no byte of an
    attacker-controlled value can split the line (orjson, see formatters/jsonenc.py)."""
    return dumps(ev)


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
    return fd, "nowait" if _NOWAIT else ""


class StdoutSink:
    def __init__(self, stream: IO[str] | None = None, max_queue: int = 65536,
                 formatter: Callable[[Event], str] = to_json_line) -> None:
        self.name = "stdout"
        self._fmt = formatter
        self._stream = stream or sys.stdout
        self._enc = getattr(self._stream, "encoding", None) or "utf-8"
        self._lines: list[str] = []
        self._max = max_queue  # lines waiting for the writer thread
        self._queued = 0
        self._q: Inbox[tuple[bytes | str, int]] = Inbox(1 << 30)  # bounded by lines (self._max)
        self._mu = threading.Lock()  # the hand-over to and from the writer thread
        self._behind = False  # the writer thread has lines not yet written: hand over, keep order
        self._t: threading.Thread | None = None
        self._fd, self._direct = _fd_of(self._stream)
        self.handed_over = 0  # batches (or their rest) that went to the writer thread (tests, benchmarks)
        self.on_closed: Callable[[str], None] | None = None  # the agent decides: stop, or go on without us
        self.closed = False
        if self._fd >= 0:
            try:
                self._stream.flush()  # anything printed before goes out before our lines
            except (OSError, ValueError):
                pass

    def submit(self, ev: Event) -> None:
        try:
            self._lines.append(self._fmt(ev))
        except Exception:  # a formatting bug loses this line only, counted; the other outputs still get the event
            log.exception("stdout: cannot format an event")
            metrics.dropped("stdout", "format_error")

    def end_batch(self) -> None:
        lines = self._lines
        if not lines:
            return
        self._lines = []
        if self.closed:
            metrics.dropped("stdout", "closed", len(lines))
            return
        text = "\n".join(lines) + "\n"
        if self._fd < 0:
            self._hand_over(text, len(lines))
            return
        data = text.encode(self._enc, "backslashreplace")
        if self._direct and not self._behind:
            try:
                n = self._write_now(data)
            except (BrokenPipeError, ValueError):
                self._closed(len(lines))
                return
            if n == len(data):
                return
            data = data[n:]  # the rest (from a partial line on) goes to the writer thread
        self._hand_over(data, data.count(b"\n"))

    def _write_now(self, data: bytes) -> int:
        """Bytes written without waiting (0: the reader is behind)."""
        if self._direct == "plain":
            return os.write(self._fd, data)
        try:
            return os.pwritev(self._fd, [data], -1, _NOWAIT)
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
        self.end_batch()
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
