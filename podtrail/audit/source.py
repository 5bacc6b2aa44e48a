"""The auditd source: the same events as eBPF, from an auditd plugin (stdin), the af_unix
dispatcher socket, or by following audit.log across rotation.

A reader thread only reads lines into a bounded queue, so auditd (which drops plugins that
stall) is never made to wait; what does not fit is counted. The source thread assembles
records into events and maps them; malformed records are counted and skipped. Container
context comes from the container stage's /proc/<pid>/cgroup fallback (these events have no
cgroup id), so it is done once, the same way for every source.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

from prometheus_client import Counter

from podtrail import metrics
from podtrail.audit.assemble import Assembler
from podtrail.audit.mapping import to_event
from podtrail.config import AuditConfig
from podtrail.metrics import REGISTRY
from podtrail.pipeline import Emit

log = logging.getLogger(__name__)

RECORDS = Counter("podtrail_audit_records_total", "Audit records read.", registry=REGISTRY)
MALFORMED = Counter("podtrail_audit_malformed_total", "Audit records that could not be parsed (skipped).", registry=REGISTRY)


def follow(path: str, stop: threading.Event, from_start: bool = False) -> Iterator[str]:
    """Lines appended to ``path``, across rotation (new inode) and truncation."""
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
        chunk = f.read(1 << 16)
        if chunk:
            pos += len(chunk)
            buf += chunk
            *lines, buf = buf.split("\n")  # not splitlines(): it also splits on 0x1D
            yield from lines
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


def _lines_from(stream: IO[str], stop: threading.Event) -> Iterator[str]:
    for line in stream:
        if stop.is_set():
            return
        yield line.rstrip("\n")


def _socket_lines(path: str, stop: threading.Event) -> Iterator[str]:
    while not stop.is_set():
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
        except OSError:
            stop.wait(1.0)
            continue
        with s, s.makefile("r", errors="surrogateescape", newline="") as f:
            yield from _lines_from(f, stop)


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
        self._q: queue.Queue[str] = queue.Queue(maxsize=queue_size)
        if parser == "auparse":
            from podtrail.audit.auparse_reader import AuparseAssembler

            self.assembler: Assembler | AuparseAssembler = AuparseAssembler(cfg.event_timeout_seconds)
        elif parser == "own":
            self.assembler = Assembler(cfg.event_timeout_seconds)
        else:
            from podtrail.config import ConfigError

            raise ConfigError(f"audit parser: own or auparse, not {parser!r}")

    def _lines(self, stop: threading.Event) -> Iterator[str]:
        if self.cfg.input == "plugin":
            return _lines_from(self._stdin or sys.stdin, stop)
        if self.cfg.input == "socket":
            return _socket_lines(self.cfg.socket_path, stop)
        return follow(self.cfg.path, stop)

    def _read(self, stop: threading.Event) -> None:
        for line in self._lines(stop):
            try:
                self._q.put_nowait(line)
            except queue.Full:
                metrics.dropped("auditd", "reader_queue_full")
        if self.cfg.input == "plugin":  # auditd closed our stdin: it is stopping us
            stop.set()

    def run(self, emit: Emit, stop: threading.Event) -> None:
        threading.Thread(target=self._read, args=(stop,), name="podtrail-audit-read", daemon=True).start()
        a = self.assembler
        seen_malformed = 0
        while not stop.is_set() or not self._q.empty():
            try:
                line = self._q.get(timeout=0.2)
            except queue.Empty:
                self._emit_all(a.tick(time.time()), emit)  # quiet input: complete timed-out events
                continue
            RECORDS.inc()
            self._emit_all(a.feed_line(line), emit)
            if a.malformed > seen_malformed:
                MALFORMED.inc(a.malformed - seen_malformed)
                metrics.dropped("auditd", "malformed_record", a.malformed - seen_malformed)
                seen_malformed = a.malformed
        self._emit_all(a.flush(), emit)

    @staticmethod
    def _emit_all(events: list, emit: Emit) -> None:
        for recs in events:
            try:
                ev = to_event(recs)
            except (ValueError, KeyError, IndexError):
                MALFORMED.inc()
                continue
            if ev is not None:
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
