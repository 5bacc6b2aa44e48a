"""The user-space process table: who is whose parent, and what each process runs.

Seeded from /proc, kept current by fork/exec/exit events. Entries link to their parent
*object*, not a pid, so pid reuse can never splice two processes' ancestry together; the
key ``pid:start_ns`` names a process uniquely. Exited processes stay for a grace period so
late events (socket/file samples, queued events) still find their context.

With the eBPF source every fact arrives in the event (cwd, start time, parent, captured in the
kernel) and ``proc_fallback`` is off: after the start-up seed, the table never reads /proc
(a read there races with the process's exit and costs syscalls on the hot path).

Exited processes leave the cyclic garbage collector when the table starts keeping them
(``reap``'s first pass over them, ``podtrail.procs._retire``): the grace period would otherwise
keep ~6 tracked objects per exec (the Proc, its extra dict, its process entity with its values
and rendered fragments) in every collection, ~200,000 at 1,000 execs/s. None of them is part of
a reference cycle, so reference counting frees them as before when ``reap`` forgets them. Why
none is: a Proc refers to its parent Proc (made before it; the chain is checked to end), texts,
numbers and its ``extra`` dict, which holds only data and entities (never a Proc; the C
module checks each value, and anything else the collector tracks stays tracked, with what
holds it).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from podtrail import metrics, native
from podtrail.model.context import Entity, EntityKind

MAX_ANCESTORS = 5
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True, eq=False)
class Proc:
    """One process. ``parent`` is set when the entry is made and points to an older entry (or
    None); ``extra`` is the one dict of per-process memos (texts, numbers, tuples, lists and
    dicts of those, entities: never a Proc), so an exited entry can leave the cyclic collector
    (see the module docstring)."""

    pid: int
    start_ns: int
    parent: Proc | None = None
    ppid: int = 0
    path: str = ""
    cmdline: str = ""
    comm: str = ""
    cwd: str = ""
    uid: int = -1
    cgroup_id: int = 0
    exited_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # enrichers cache per-process facts here

    @property
    def key(self) -> str:
        return f"{self.pid}:{self.start_ns}"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start_ns since boot, comm) from /proc/<pid>/stat; None if gone."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    r = raw.rfind(b")")
    comm = raw[raw.find(b"(") + 1:r].decode("utf-8", "backslashreplace")
    rest = raw[r + 2:].split()
    return int(rest[1]), int(rest[19]) * (1_000_000_000 // _CLK_TCK), comm


def proc_facts(pid: int) -> tuple[str, str, str]:
    """(exe path, cmdline, cwd) of a live process, empty strings where unreadable."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    raw = _read(f"/proc/{pid}/cmdline") or b""
    cmd = " ".join(a.decode("utf-8", "backslashreplace") for a in raw.rstrip(b"\0").split(b"\0")) if raw else ""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    return exe, cmd, cwd


# The C module that untracks exited processes (None: they stay tracked; correct, only slower).
_retire = native.load("podtrail.procs._retire")
if _retire is not None:
    _retire.setup(Proc, (Entity, EntityKind))


def since_boot_ns(wall_ns: int) -> int:
    """A wall-clock time (an audit record's stamp) as ns since boot, the clock of ``start_ns``."""
    return wall_ns - (time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME))


_SAME_START = 2 * (1_000_000_000 // _CLK_TCK)


def same_start(a: int, b: int) -> bool:
    """Two start times of one process: /proc gives clock ticks (10 ms), the kernel ns."""
    return abs(a - b) <= _SAME_START


class ProcessTable:
    def __init__(self, exit_grace_s: float = 30.0, proc_fallback: bool = True, max_exited: int = 16384) -> None:
        self.by_pid: dict[int, Proc] = {}
        self.proc_fallback = proc_fallback
        self.grace = exit_grace_s
        # The grace period alone would make memory grow with the exit rate (an exec storm or a
        # fork bomb: ~1.2 KB per exited process, 30 s of them); beyond this many, the oldest go.
        self.max_exited = max_exited
        self._exited: deque[Proc] = deque()  # in the order they exited (exited_at set)
        self._kept = 0  # of those, how many reap has seen (and retired) already

    def __len__(self) -> int:
        return len(self.by_pid)

    # -- building ------------------------------------------------------------------------------
    def seed(self, proc_root: str = "/proc") -> int:
        """Load every live process (parents linked after all are read)."""
        pids = [int(d) for d in os.listdir(proc_root) if d.isdigit()]
        for pid in pids:
            self._load(pid, link=False)
        for p in self.by_pid.values():
            if p.parent is None and p.ppid:
                p.parent = self.by_pid.get(p.ppid)
        metrics.PROCESS_TABLE_SIZE.set(len(self.by_pid))
        return len(self.by_pid)

    def _load(self, pid: int, link: bool = True) -> Proc | None:
        st = proc_stat(pid)
        if st is None:
            return None
        ppid, start, comm = st
        exe, cmd, cwd = proc_facts(pid)
        p = Proc(pid, start, None, ppid, exe, cmd, comm, cwd)
        if link and ppid:
            p.parent = self.by_pid.get(ppid) or (self._load(ppid) if ppid != pid else None)
        self.by_pid[pid] = p
        return p

    def get(self, pid: int) -> Proc | None:
        """The process with this pid: from the table, else from /proc (started before us)."""
        p = self.by_pid.get(pid)
        if p is None and pid > 0 and self.proc_fallback:
            p = self._load(pid)
        return p

    def on_fork(self, ppid: int, pid: int, mono_ns: int, now: float, start_ns: int | None = None,
                cwd: str | None = None) -> Proc:
        parent = self.get(ppid)
        child = Proc(pid, start_ns if start_ns is not None else mono_ns, parent, ppid)
        if parent is not None:  # the child runs the parent's image until it execs
            child.path, child.cmdline, child.comm, child.cwd, child.uid = parent.path, parent.cmdline, parent.comm, parent.cwd, parent.uid
            child.cgroup_id = parent.cgroup_id
        if cwd is not None:  # the kernel's, at the fork (the parent may have changed directory)
            child.cwd = cwd
        self.by_pid[pid] = child
        return child

    def on_exec(self, pid: int, path: str, cmdline: str, comm: str, uid: int, cgroup_id: int, mono_ns: int,
                ppid: int | None = None, *, cwd: str | None = None, start_ns: int | None = None) -> Proc:
        """``cwd`` and ``start_ns`` come with eBPF events (read in the kernel at the exec); with
        them nothing is read from /proc, and a pid whose start time differs from the entry's is
        a new process (pid reuse after a missed exit), never merged into the old one. auditd's
        records carry ppid and cwd (and path, argv, comm, uid) but no start time: a process new
        to the table is not read from /proc either (it has usually exited by then); its key's
        start is ``mono_ns``, the exec's time since boot."""
        p = self.by_pid.get(pid)
        if p is not None and (p.exited_at is not None or start_ns is not None and abs(p.start_ns - start_ns) > _SAME_START):
            p = None  # gone, or a new process under a reused pid (see same_start)
        if p is None:
            if start_ns is None and self.proc_fallback and (ppid is None or cwd is None):
                p = self._load(pid) or Proc(pid, mono_ns)  # what /proc gives, but the start time
                if p.parent is None and ppid:  # gone already (auditd reports late): its parent from the record
                    p.ppid, p.parent = ppid, self.get(ppid)
                p.path, p.cmdline, p.comm, p.uid, p.cgroup_id = path, cmdline, comm, uid, cgroup_id
                p.extra.clear()
            else:  # the common case: a new process, everything known (one constructor call)
                p = Proc(pid, start_ns if start_ns is not None else mono_ns, self.get(ppid) if ppid else None, ppid or 0,
                         path, cmdline, comm, "", uid, cgroup_id)
            self.by_pid[pid] = p
        else:
            p.path, p.cmdline, p.comm, p.uid, p.cgroup_id = path, cmdline, comm, uid, cgroup_id
            p.extra.clear()
        if cwd is not None:
            p.cwd = cwd
        else:
            try:
                p.cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                pass  # already gone: keep the inherited cwd
        return p

    def on_exit(self, pid: int, now: float) -> Proc | None:
        p = self.by_pid.get(pid)
        if p is not None and p.exited_at is None:
            p.exited_at = now
            self._exited.append(p)
        return p

    def reap(self, now: float) -> int:
        """Forget processes that exited more than the grace period ago, and the oldest beyond
        ``max_exited`` (counted); those that exited since the last call leave the cyclic
        collector (see the module docstring)."""
        n = 0
        exited = self._exited
        new = len(exited) - self._kept  # only appended to since the last call
        if new > 0 and _retire is not None:
            _retire.retire(islice(reversed(exited), new))
        by_pid, grace, cap = self.by_pid, self.grace, self.max_exited
        evicted = 0  # forgotten within the grace period: more than ``cap`` had exited
        while exited:
            p = exited[0]
            if now - p.exited_at < grace:  # type: ignore[operator]
                if len(exited) <= cap:
                    break
                evicted += 1
            exited.popleft()
            if by_pid.get(p.pid) is p:
                del by_pid[p.pid]
                n += 1
        if evicted:
            metrics.EXITED_EVICTED.inc(evicted)
        self._kept = len(exited)
        metrics.PROCESS_TABLE_SIZE.set(len(self.by_pid))
        return n

    # -- reading -------------------------------------------------------------------------------
    @staticmethod
    def ancestors(p: Proc, n: int = MAX_ANCESTORS) -> list[Proc]:
        """Up to ``n`` ancestors above the parent, nearest first (cycle-safe)."""
        out: list[Proc] = []
        cur = p.parent.parent if p.parent is not None else None
        seen = {id(p)}
        while cur is not None and len(out) < n and id(cur) not in seen:
            seen.add(id(cur))
            out.append(cur)
            cur = cur.parent
        return out

    def snapshot(self) -> list[Proc]:
        """Live processes (for the osquery ``container_processes`` table)."""
        return [p for p in self.by_pid.values() if p.exited_at is None]
