"""The auditd source: the same events as eBPF, from an auditd plugin (stdin), the af_unix
dispatcher socket, or by following audit.log across rotation.

A reader thread only reads into a bounded hand-over, so auditd (which drops plugins that
stall) is never made to wait; what does not fit is counted. It hands over a read's worth of
text at a time (one 64 KiB read, cut after its last "\\n"), and the source thread assembles
each in one call (one regex pass cuts it into records) and maps the events; malformed
records are counted and skipped. Container context comes from the container stage's
/proc/<pid>/cgroup fallback (these events have no cgroup id), so it is done once, the same
way for every source.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from prometheus_client import Counter

from podtrail import metrics
from podtrail.audit.assemble import Assembler
from podtrail.audit.mapping import to_event
from podtrail.audit.records import Record, types_of
from podtrail.config import AuditConfig
from podtrail.inbox import Inbox
from podtrail.metrics import REGISTRY
from podtrail.pipeline import Emit

log = logging.getLogger(__name__)

RECORDS = Counter("podtrail_audit_records_total", "Audit records read.", registry=REGISTRY)
MALFORMED = Counter("podtrail_audit_malformed_total", "Audit records that could not be parsed (skipped).", registry=REGISTRY)
INCOMPLETE = Counter("podtrail_audit_exec_without_execve_total",
                     "Successful execs that came without their EXECVE record (argv unknown): auditd lost records, "
                     "most often its dispatcher queue overflowing (raise q_depth in auditd.conf).", registry=REGISTRY)


READ = 1 << 16
# After a short read, let records gather for this long before reading again: auditd writes
# each record on its own (six per exec), and a read per record woke the source, pipeline and
# output threads once per record. 10 ms is 60 records (~21 KB) at 1,000 execs/s; the plugin
# pipe is grown to PIPE_SIZE so auditd does not find it full while we wait (measured: 50 ms
# pauses on the default 64 KiB pipe made auditd's dispatcher queue overflow and lose hundreds
# of execs at 1,000 execs/s), and a full read reads on at once.
LINGER_S = 0.01
PIPE_SIZE = 1 << 20


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> int:
    """Make a pipe's buffer ``size`` bytes (up to fs.pipe-max-size, 1 MiB by default); the
    size it has after, or 0 when ``fd`` is not a pipe."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        try:
            return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)  # refused: keep what it has
        except OSError:
            return 0


def follow_chunks(path: str, stop: threading.Event, from_start: bool = False) -> Iterator[str]:
    """Whole lines appended to ``path`` ("\\n"-separated, without the last "\\n"), a read's
    worth at a time, across rotation (new inode) and truncation."""
    f: IO[str] | None = None
    ino = -1
    pos = 0
    buf = ""
    while not stop.is_set():
        if f is None:
            try:
                f = open(path, errors="surrogateescape", newline="")
                st = os.fstat(f.fileno())
                ino = st.st_ino
                if not from_start and pos == 0:
                    f.seek(0, os.SEEK_END)
                from_start = True  # after a rotation, read the new file from its start
                pos = f.tell()
            except OSError:
                stop.wait(0.2)
                continue
        chunk = f.read(READ)
        if chunk:
            pos += len(chunk)
            buf += chunk
            cut = buf.rfind("\n")
            if cut != -1:
                text, buf = buf[:cut], buf[cut + 1:]
                yield text
            continue
        try:
            st = os.stat(path)
            if st.st_ino != ino or st.st_size < pos:
                f.close()
                f, pos = None, 0
                continue
        except OSError:
            pass
        stop.wait(0.1)


def follow(path: str, stop: threading.Event, from_start: bool = False) -> Iterator[str]:
    for text in follow_chunks(path, stop, from_start):
        yield from text.split("\n")  # not splitlines(): it also splits on 0x1D


def _read_chunks(read: Callable[[int], bytes], stop: threading.Event, linger: float = LINGER_S) -> Iterator[str]:
    """Complete lines of what ``read`` returns, one text per read, until EOF (then the rest)."""
    buf = b""
    while not stop.is_set():
        data = read(READ)
        if not data:
            break
        buf += data
        cut = buf.rfind(b"\n")
        if cut == -1:
            continue
        text, buf = buf[:cut].decode("utf-8", "surrogateescape"), buf[cut + 1:]
        yield text
        if len(data) < READ and linger:
            stop.wait(linger)
    if buf and not stop.is_set():
        yield buf.decode("utf-8", "surrogateescape")


def _stream_chunks(stream: IO[str], stop: threading.Event) -> Iterator[str]:
    """A plugin's stdin: raw reads of its descriptor where it has one."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        fd = -1
    if fd >= 0:
        size = grow_pipe(fd)
        if size:
            log.debug("audit plugin pipe: %d bytes", size)
        yield from _read_chunks(lambda n: os.read(fd, n), stop)
        return
    for line in stream:
        if stop.is_set():
            return
        yield line.rstrip("\n")


def _socket_chunks(path: str, stop: threading.Event) -> Iterator[str]:
    while not stop.is_set():
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
        except OSError:
            stop.wait(1.0)
            continue
        with s:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PIPE_SIZE)  # room while we linger, as for the pipe
            except OSError:
                pass
            yield from _read_chunks(s.recv, stop)


class AuditSource:
    name = "auditd"

    def __init__(self, cfg: AuditConfig, stdin: IO[str] | None = None, queue_size: int = 100000,
                 parser: str = "own") -> None:
        """``parser``: "own" (podtrail's parser and assembler: measured faster here, see
        docs/BENCHMARKS.md) or "auparse" (libauparse through python3-audit)."""
        if cfg.input not in ("plugin", "socket", "log"):
            from podtrail.config import ConfigError

            raise ConfigError(f"audit.input: plugin, socket or log, not {cfg.input!r}")
        self.cfg = cfg
        self._stdin = stdin
        self._limit = queue_size  # lines waiting between the reader and the source thread
        self._pending = 0
        self._lock = threading.Lock()
        self._q: Inbox[tuple[str, int]] = Inbox(1 << 30)  # (text, lines): bounded by lines (self._limit), not reads
        if parser == "auparse":
            from podtrail.audit.auparse_reader import AuparseAssembler

            self.assembler: Assembler | AuparseAssembler = AuparseAssembler(cfg.event_timeout_seconds)
        elif parser == "own":
            self.assembler = Assembler(cfg.event_timeout_seconds)
        else:
            from podtrail.config import ConfigError

            raise ConfigError(f"audit parser: own or auparse, not {parser!r}")

    def _chunks(self, stop: threading.Event) -> Iterator[str]:
        if self.cfg.input == "plugin":
            return _stream_chunks(self._stdin or sys.stdin, stop)
        if self.cfg.input == "socket":
            return _socket_chunks(self.cfg.socket_path, stop)
        return follow_chunks(self.cfg.path, stop)

    def _read(self, stop: threading.Event) -> None:
        for text in self._chunks(stop):
            n = text.count("\n") + 1
            with self._lock:
                fits = self._pending + n <= self._limit
                if fits:
                    self._pending += n
            if fits:
                self._q.put_nowait((text, n))
            else:
                metrics.dropped("auditd", "reader_queue_full", n)
        if self.cfg.input == "plugin":  # auditd closed our stdin: it is stopping us
            stop.set()
            self._q.close()

    def run(self, emit: Emit, stop: threading.Event) -> None:
        threading.Thread(target=self._read, args=(stop,), name="podtrail-audit-read", daemon=True).start()
        a = self.assembler
        seen_malformed = 0
        last_input = time.monotonic()
        while not stop.is_set() or not self._q.empty():
            batch, _ = self._q.take(64, 0.2)
            if not batch:  # quiet input: complete events timed out in stream time
                self._emit_all(a.idle(time.monotonic() - last_input), emit)
                continue
            last_input = time.monotonic()
            for text, n in batch:
                with self._lock:
                    self._pending -= n
                RECORDS.inc(n)
                self._emit_all(a.feed_text(text, n), emit)
            if a.malformed > seen_malformed:
                MALFORMED.inc(a.malformed - seen_malformed)
                metrics.dropped("auditd", "malformed_record", a.malformed - seen_malformed)
                seen_malformed = a.malformed
        self._emit_all(a.flush(), emit)

    @staticmethod
    def _emit_all(events: Sequence[Sequence[Record]], emit: Emit) -> None:
        """Map all, then hand over all: the pipeline thread, woken by the first, finds the
        rest queued instead of waking (and being woken) once per event."""
        out = []
        for recs in events:
            try:
                ev = to_event(recs)
            except (ValueError, KeyError, IndexError):
                MALFORMED.inc()
                continue
            if ev is not None:
                out.append(ev)
                if ev.get("action") == "exec" and ev.get("result") == 0 and "EXECVE" not in types_of(recs):
                    INCOMPLETE.inc()  # the event still goes out (the exec happened), and the loss is visible
                    metrics.dropped("auditd", "execve_record_lost_by_auditd")
        for ev in out:
            emit(ev)


def build_audit_source(cfg: object) -> AuditSource:
    from podtrail.config import Config

    assert isinstance(cfg, Config)
    return AuditSource(cfg.audit)


def audit_available() -> tuple[bool, str]:
    import shutil

    if not shutil.which("auditd"):
        return False, "auditd is not installed"
    return True, "auditd is installed"
