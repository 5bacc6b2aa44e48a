"""The process-table stage: keeps the table current and gives every event its ancestry."""

from __future__ import annotations

import os
import time
from collections import deque

from podtrail.model.context import PROCESS_CTX, put, share
from podtrail.model.event import Event
from podtrail.pipeline import Emit
from podtrail.procs.stdin import stdin_kind
from podtrail.procs.table import Proc, ProcessTable, since_boot_ns
from podtrail.procs.users import UserNames

ANCESTOR_CMDLINE_MAX = 512  # full command lines are on the parent; ancestors carry a prefix
# The names this stage fills from the table; an event carrying one of them itself (but ppid,
# which the kernel reports and the table overrides) takes the full path.
_FILLED = frozenset(PROCESS_CTX.names) - {"ppid"}


def _ancestor(p: Proc) -> dict[str, object]:
    """One dict per ancestor image, shared by every descendant's ancestry (extra is cleared
    when that ancestor execs, so a new image gets a new dict)."""
    a = p.extra.get("as_ancestor")
    if a is None:
        cmd = p.cmdline if len(p.cmdline) <= ANCESTOR_CMDLINE_MAX else p.cmdline[:ANCESTOR_CMDLINE_MAX] + "…"
        a = p.extra["as_ancestor"] = {"pid": p.pid, "path": p.path, "cmdline": cmd}
    return a


def _basis(p: Proc, parent: Proc, uid: object) -> tuple[object, ...]:
    """What the full path reads for a process's non-exec event (compared element by element,
    identity first: the same strings are the same objects until something changes)."""
    return (parent, parent.path, parent.cmdline, p.path, p.cmdline, p.cwd, uid, p.extra.get("uid"))


def _since_boot(ev: Event) -> int:
    """An event without the kernel's clock (auditd): its stamp as ns since boot."""
    t = ev.get("time_ns")
    return since_boot_ns(t) if isinstance(t, int) else 0


def _key(p: Proc) -> str:
    """``Proc.key`` made once per process (it formats a new string on every call)."""
    k = p.extra.get("key")
    if k is None:
        k = p.extra["key"] = p.key
    return k


class ProcessStage:
    """Socket and file samples come from other ring buffers than fork/exec, so one may arrive
    before the process it belongs to is in the table (a short-lived ``cp`` is gone from /proc
    by then). Such events wait up to ``hold_s`` for the process sensor to catch up."""

    def __init__(self, table: ProcessTable, users: UserNames | None = None,
                 hold_s: float = 0.5, max_held: int = 10000) -> None:
        self.table = table
        self.users = users or UserNames()
        self.hold_s = hold_s
        self.max_held = max_held
        self._held: deque[tuple[float, Event]] = deque()
        # Bumped when a process that is some process's ancestor execs: the ancestry lists
        # cached on parents are then built again (the walk up the table costs more than the
        # rest of an exec's context).
        self._epoch = 0

    def process(self, ev: Event, out: Emit) -> None:
        # Process events are never held: they are what the held events wait for.
        if ev.get("event_type") != "process" and (self._held or self._unknown(ev)):
            if len(self._held) < self.max_held:
                self._held.append((time.monotonic() + self.hold_s, ev))
                return
            self._release(float("inf"), out)  # full: flush the oldest first, order kept
        self.apply(ev)
        out(ev)

    def _unknown(self, ev: Event) -> bool:
        pid = ev.get("pid")
        return isinstance(pid, int) and self.table.get(pid) is None

    def _release(self, now: float, out: Emit) -> None:
        held = self._held
        while held:
            deadline, ev = held[0]
            if now < deadline and self._unknown(ev):
                break
            held.popleft()
            self.apply(ev)
            out(ev)

    def apply(self, ev: Event) -> None:
        t = self.table
        pid = ev.get("pid")
        if not isinstance(pid, int):
            return
        action = ev.get("action")
        src_cwd = ev.get("cwd")  # what the sensor itself reported, before the table fills it in
        p: Proc | None
        if ev.get("event_type") == "process":
            if action == "exec" and ev.get("fork_folded") and (ev.get("result") or 0) < 0:
                # the kernel folded this child's fork into its first exec, and that failed (a
                # PATH search): the child as its fork would have made it, then as below
                t.on_fork(ev.get("ppid") or 0, pid, ev.get("mono_ns") or 0, time.monotonic(), ev.get("start_ns"), src_cwd)
            if action == "fork":
                p = t.on_fork(ev.get("ppid") or 0, pid, ev.get("mono_ns") or 0, time.monotonic(), ev.get("start_ns"),
                              ev.get("cwd"))
                pe = p.parent.extra if p.parent is not None else None
                if pe and "uid" in pe:  # same image, same root: the parent's user name (no passwd lookup)
                    p.extra["user"], p.extra["uid"] = pe["user"], pe["uid"]
            elif action == "exec" and (ev.get("result") or 0) >= 0:
                old = t.by_pid.get(pid)
                if old is not None and "as_ancestor" in old.extra:  # an ancestor's image changes
                    self._epoch += 1
                p = t.on_exec(pid, ev.get("path") or "", ev.get("cmdline") or "", ev.get("comm") or "",
                              ev.get("uid", -1), ev.get("cgroup_id") or 0, ev.get("mono_ns") or _since_boot(ev), ev.get("ppid"),
                              cwd=ev.get("cwd"), start_ns=ev.get("start_ns"))
                mnt_ns = ev.get("mnt_ns")
                if mnt_ns:
                    p.extra["mnt_ns"] = mnt_ns
                    if not ev.get("runtime_setup"):
                        self.users.note(pid, mnt_ns)
                if "cmdline" not in ev:  # exec began before the agent: argv from /proc
                    ev["cmdline"] = p.cmdline = p.cmdline or ""
                if "stdin" not in ev:  # auditd: read at once (eBPF events carry it from the kernel)
                    ev["stdin"] = stdin_kind(pid)
                rel, cwd = p.path, src_cwd
                if rel and not rel.startswith("/") and isinstance(cwd, str) and cwd.startswith("/"):
                    # exec through a relative path (./x, ../bin/x) from a source that reports it as given
                    # (auditd; eBPF makes it absolute in the kernel): resolve it against the cwd the
                    # source saw at exec (not /proc's: for a container process that is a host path)
                    ev["path"] = p.path = os.path.normpath(os.path.join(cwd, rel))
            elif action == "exit":
                p = t.on_exit(pid, time.monotonic())
                if p is not None and self._again(ev, p):
                    return
            else:
                p = t.get(pid)
        else:
            p = t.get(pid)
            if p is not None and self._again(ev, p):
                return
        if p is None:
            return
        ev["process_key"] = _key(p)
        if ev.get("event_type") != "process" or action != "exec":
            # socket/file events, fork and exit: the process's own facts from the table
            if p.path and not ev.get("path"):
                ev["path"] = p.path
            if p.cmdline and not ev.get("cmdline"):
                ev["cmdline"] = p.cmdline
        if p.cwd and not ev.get("cwd"):
            ev["cwd"] = p.cwd
        uid = ev.get("uid")
        if isinstance(uid, int) and "user" not in ev:
            name = p.extra.get("user")
            if name is None or p.extra.get("uid") != uid:
                setup = bool(ev.get("runtime_setup"))
                name = self.users.name(uid, pid, ev.get("cgroup_id") or p.cgroup_id,
                                       ev.get("mnt_ns") or p.extra.get("mnt_ns"), setup)
                if not setup:  # never remember a name learned through the runtime's setup
                    p.extra["user"], p.extra["uid"] = name, uid
            if name:
                ev["user"] = name
        parent = p.parent
        if parent is not None:
            ev["ppid"] = parent.pid
            ev["parent_key"] = _key(parent)
            if parent.path:
                ev["parent_path"] = parent.path
            if parent.cmdline:
                ev["parent_cmdline"] = parent.cmdline
            # Ancestry as of this process's fork/exec, computed once and shared by its events;
            # siblings share one list, kept on the parent until an ancestor's image changes.
            anc = p.extra.get("ancestors")
            if anc is None:
                shared = parent.extra.get("children_ancestors")
                if shared is not None and shared[0] == self._epoch:
                    anc = shared[1]
                else:
                    anc = [_ancestor(a) for a in t.ancestors(p)]
                    if shared is not None and shared[1] == anc:  # element identity: the same images
                        anc = shared[1]
                    parent.extra["children_ancestors"] = (self._epoch, anc)
                p.extra["ancestors"] = anc
            if anc:
                ev["ancestors"] = anc
        elif p.ppid:
            ev["ppid"] = p.ppid
        # The process context as one shared entity: a new version per exec (on_exec clears
        # extra) or whenever a fact differs (a parent exec'd, cwd or user changed). Not for a
        # fork: the child's pre-exec context serves that one event (an exec usually follows).
        if action != "fork" or ev.get("event_type") != "process":
            ent = p.extra["ctx"] = share(ev, PROCESS_CTX, p.extra.get("ctx"))
            if parent is not None and (action != "exec" or ev.get("event_type") != "process") \
                    and (not isinstance(uid, int) or p.extra.get("uid") == uid):  # user name from the cache
                p.extra["again"] = (_basis(p, parent, uid), ent, ent.values)

    def _again(self, ev: Event, p: Proc) -> bool:
        """The short path of a process's later events (its sockets, files, exit): when
        everything the full path reads is as it was for the previous such event (the same
        parent image, uid and cached user name, the process's own facts) and the event carries
        none of the names the table fills, the result is that event's: its entity's values
        (exactly what the full path set) and the entity."""
        again = p.extra.get("again")
        parent = p.parent
        if again is None or parent is None or again[0] != _basis(p, parent, ev.get("uid")) or not ev.keys().isdisjoint(_FILLED):
            return False
        ev.update(again[2])
        put(ev, again[1])
        return True

    def tick(self, now: float, out: Emit) -> None:
        self._release(now, out)
        self.table.reap(now if now != float("inf") else time.monotonic())
