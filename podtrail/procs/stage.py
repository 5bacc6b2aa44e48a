"""The process-table stage: keeps the table current and gives every event its ancestry.

Two short paths carry what a busy node sends most (issue 14: a short-lived child's exec, then
its exit): an exec whose facts all came with the event (eBPF) builds its fields and entity
from the parent's shared part (``_exec_short``), and a later event of a process whose entity
still holds reuses it (``_again``). Each gives exactly the general path's result (tested
against it); anything else takes the general path.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

from podtrail import native
from podtrail.model.context import PROCESS_CTX, SHARED_TEXT_MAX, Entity, EventDict, share, shared_text, whole
from podtrail.model.event import Event
from podtrail.pipeline import Emit
from podtrail.procs.stdin import stdin_kind
from podtrail.procs.table import _SAME_START, Proc, ProcessTable, since_boot_ns
from podtrail.procs.users import UserNames

ANCESTOR_CMDLINE_MAX = 512  # full command lines are on the parent; ancestors carry a prefix
# The names this stage fills from the table; an event carrying one of them itself (but ppid,
# which the kernel reports and the table overrides) takes the full path.
_FILLED = frozenset(PROCESS_CTX.names) - {"ppid"}
_FILLED_BUT_CWD = _FILLED - {"cwd"}  # a later event's own cwd is compared (the kernel sends one with an exit)
_ALL = len(PROCESS_CTX.names)
USER_MEMO_S = 1.0  # user names per (mount namespace, uid) kept this long over UserNames' own cache

# The two short paths in one C call (podtrail/procs/_short.c; this module's Python is its
# reference and the fallback): ``apply(stage, ev)`` is True when it did what ``_on_exec`` +
# ``_exec_short`` or ``on_exit`` + ``_again`` would, False when it touched nothing.
_short = native.load("podtrail.procs._short")
if _short is not None:
    _shape = whole(PROCESS_CTX, (None,) * _ALL)
    _short.setup(Proc, Entity, EventDict, PROCESS_CTX, _shape.names, _shape.keys, tuple(sorted(_FILLED_BUT_CWD)),
                 _SAME_START, SHARED_TEXT_MAX)


def _ancestor(p: Proc) -> dict[str, object]:
    """One dict per ancestor image, shared by every descendant's ancestry (extra is cleared
    when that ancestor execs, so a new image gets a new dict)."""
    a = p.extra.get("as_ancestor")
    if a is None:
        cmd = p.cmdline if len(p.cmdline) <= ANCESTOR_CMDLINE_MAX else p.cmdline[:ANCESTOR_CMDLINE_MAX] + "…"
        a = p.extra["as_ancestor"] = {"pid": p.pid, "path": p.path, "cmdline": cmd}
    return a


# The short paths attach the process entity as ``put`` would for the first stage
# that attaches anything (this one, in the agent), by one slot write, without put's look for
# what is attached already (reading an unset slot costs an exception). Should an event come
# through again, the entities other stages attached are dropped: consumers then render those
# fields from the event (correct, only slower), and those stages attach them again.


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
        self._names: dict[tuple[int, int], str] = {}  # (mnt_ns, uid) -> user name, see _name
        self._gen = 0  # of that memo, and of the last child's name kept on each parent
        self._names_until = time.monotonic() + USER_MEMO_S
        self._c = _short.apply if _short is not None else None  # None: the Python paths only

    def process(self, ev: Event, out: Emit) -> None:
        # Process events are never held: they are what the held events wait for.
        if ev.get("event_type") != "process" and (self._held or self._unknown(ev)):
            if len(self._held) < self.max_held:
                self._held.append((time.monotonic() + self.hold_s, ev))
                return
            self._release(float("inf"), out)  # full: flush the oldest first, order kept
        self.apply(ev)
        out(ev)

    def fast_step(self) -> tuple[object, ...] | None:
        """This stage in the pipeline's C chain (pipeline.Pipeline._fast_chain): ``process`` but
        its ``out`` call, in C (``_short.process``); None while the stage runs Python only."""
        if _short is None or self._c is not _short.apply:
            return None
        return ("step", _short.process, self, ())

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
        c = self._c
        if c is not None and c(self, ev):
            return
        pid = ev.get("pid")
        if not isinstance(pid, int):
            return
        t = self.table
        p: Proc | None
        if ev.get("event_type") != "process":
            p = t.get(pid)
            if p is not None and not self._again(ev, p):
                self._fill(ev, p, False, False)
            return
        action = ev.get("action")
        if action == "exec":
            if (ev.get("result") or 0) >= 0:
                p = self._on_exec(ev, pid)
                if p is None:  # handled by _exec_short
                    return
            else:
                if ev.get("fork_folded"):
                    # the kernel folded this child's fork into its first exec, and that failed (a
                    # PATH search): the child as its fork would have made it, then as any failed exec
                    self._forked(ev, pid)
                p = t.get(pid)
                if p is None:
                    return
            self._fill(ev, p, True, False)
        elif action == "fork":
            p = self._forked(ev, pid)
            pe = p.parent.extra if p.parent is not None else None
            if pe and "uid" in pe:  # same image, same root: the parent's user name (no passwd lookup)
                p.extra["user"], p.extra["uid"] = pe["user"], pe["uid"]
            self._fill(ev, p, False, True)
        else:
            p = t.on_exit(pid, time.monotonic()) if action == "exit" else t.get(pid)
            if p is not None and not self._again(ev, p):
                self._fill(ev, p, False, False)

    def _forked(self, ev: Event, pid: int) -> Proc:
        """The table after the fork this event reports (a fork, or an exec the fork was folded into)."""
        return self.table.on_fork(ev.get("ppid") or 0, pid, ev.get("mono_ns") or 0, time.monotonic(), ev.get("start_ns"),
                                  ev.get("cwd"))

    def _on_exec(self, ev: Event, pid: int) -> Proc | None:
        """The table after a successful exec, and the facts the event lacks (auditd's); then
        the event's context by ``_exec_short`` (None: done) or left to ``_fill`` (the process)."""
        t = self.table
        get = ev.get
        old = t.by_pid.get(pid)
        if old is not None and "as_ancestor" in old.extra:  # an ancestor's image changes
            self._epoch += 1
        path, cmd, cwd = get("path"), get("cmdline"), get("cwd")  # cwd: the sensor's own
        uid: Any = get("uid")
        p = t.on_exec(pid, path or "", cmd or "", get("comm") or "", -1 if uid is None and "uid" not in ev else uid,
                      get("cgroup_id") or 0, get("mono_ns") or _since_boot(ev), get("ppid"), cwd=cwd,
                      start_ns=get("start_ns"))
        mnt_ns = get("mnt_ns")
        if mnt_ns:
            p.extra["mnt_ns"] = mnt_ns
        if cmd is None and "cmdline" not in ev:  # exec began before the agent: argv from /proc
            cmd = ev["cmdline"] = p.cmdline = p.cmdline or ""
        if "stdin" not in ev:  # auditd: read at once (eBPF events carry it from the kernel)
            ev["stdin"] = stdin_kind(pid)
        rel = p.path
        if rel and rel[0] != "/" and isinstance(cwd, str) and cwd.startswith("/"):
            # exec through a relative path (./x, ../bin/x) from a source that reports it as given
            # (auditd; eBPF makes it absolute in the kernel): resolve it against the cwd the
            # source saw at exec (not /proc's: for a container process that is a host path)
            path = ev["path"] = p.path = os.path.normpath(os.path.join(cwd, rel))
        return None if self._exec_short(ev, p, uid, path, cmd, cwd, mnt_ns) else p

    def _exec_short(self, ev: Event, p: Proc, uid: object, path: object, cmd: object, cwd: object,
                    mnt_ns: int | None) -> bool:
        """``_fill`` for an exec that brought its own image, cwd, uid and mount namespace (what
        eBPF sends) of a process whose parent is in the table: the same fields and entity,
        with what siblings have in common kept on the parent (its own part: key, image and
        the ancestry above it; the last child's user name and image strings), and the
        entity made from the values just set instead of read back from the event (uid, path,
        cmd, cwd, mnt_ns: the event's, as _on_exec read them)."""
        parent = p.parent
        get = ev.get
        if (parent is None or type(uid) is not int or type(path) is not str or type(cmd) is not str
                or type(cwd) is not str or not cwd or not mnt_ns or "user" in ev or get("runtime_setup")):
            return False
        pext = parent.extra
        up = pext.get("as_parent")
        if up is None or up[0] != self._epoch:
            up = self._parent_part(p, parent)
        _, ppath, pcmd, pkey, anc = up
        if not (ppath and pcmd and anc):
            return False
        ext = p.extra
        key = ext["key"] = f"{p.pid}:{p.start_ns}"
        sib = pext.get("child")  # (memo generation, mnt_ns, uid, name, path, cmdline, cwd) of the last child
        if (sib is None or sib[0] != self._gen or sib[1] != mnt_ns or sib[2] != uid or sib[4] != path
                or sib[5] != cmd or sib[6] != cwd):
            name = self._name(uid, p.pid, get("cgroup_id") or p.cgroup_id, mnt_ns, False, True)
            if name:  # never an empty one (see _name); equal strings of siblings one object, as snapshot's
                sib = pext["child"] = (self._gen, mnt_ns, uid, name, shared_text(path), shared_text(cmd), shared_text(cwd))
        else:
            name = sib[3]
        ext["user"], ext["uid"] = name, uid
        ext["ancestors"] = anc
        ev["process_key"] = key
        if name:
            ev["user"] = name
        ppid = ev["ppid"] = parent.pid
        ev["parent_key"] = pkey
        ev["parent_path"] = ppath
        ev["parent_cmdline"] = pcmd
        ev["ancestors"] = anc
        if name and sib is not None:  # sib: this child's (found, or just made)
            ent = ext["ctx"] = whole(PROCESS_CTX, (key, ppid, pkey, sib[4], sib[5], sib[6], name, ppath, pcmd, anc))
            if type(ev) is EventDict:  # put(), as the first stage to attach anything (see the top)
                ev._ctx = (ent.keys, ent)
        else:  # no name for the uid: an entity without one
            ext["ctx"] = share(ev, PROCESS_CTX, None)
        return True

    def _fill(self, ev: Event, p: Proc, exec_: bool, fork: bool) -> None:
        """The general path: every field of the process context that the event lacks (its
        own image for an exec, the table's for any other event), then its entity."""
        ev["process_key"] = _key(p)
        if not exec_:
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
                name = self._name(uid, p.pid, ev.get("cgroup_id") or p.cgroup_id,
                                  ev.get("mnt_ns") or p.extra.get("mnt_ns"), setup, exec_)
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
            # Ancestry as of this process's fork/exec, computed once and shared by its events
            # (and by its siblings: see _parent_part).
            anc = p.extra.get("ancestors")
            if anc is None:
                anc = p.extra["ancestors"] = self._parent_part(p, parent)[4]
            if anc:
                ev["ancestors"] = anc
        elif p.ppid:
            ev["ppid"] = p.ppid
        # The process context as one shared entity: a new version per exec (on_exec clears
        # extra) or whenever a fact differs (a parent exec'd, cwd or user changed). Not for a
        # fork: the child's pre-exec context serves that one event (an exec usually follows).
        if not fork:
            p.extra["ctx"] = share(ev, PROCESS_CTX, p.extra.get("ctx"))

    def _parent_part(self, p: Proc, parent: Proc) -> tuple[int, str, str, str, list[dict[str, object]]]:
        """What every child of ``parent`` carries of it: (epoch, its path, command line, key,
        the ancestry above it), kept on the parent until it execs (its extra is cleared: nothing
        else changes its path or command line) or an ancestor's image changes (the epoch). A list built again keeps the old one's identity
        when its elements are the same images."""
        up = parent.extra.get("as_parent")
        if up is not None and up[0] == self._epoch:
            return up  # type: ignore[no-any-return]
        anc = [_ancestor(a) for a in self.table.ancestors(p)]
        if up is not None and up[4] == anc:  # element identity: the same images
            anc = up[4]
        up = parent.extra["as_parent"] = (self._epoch, parent.path, parent.cmdline, _key(parent), anc)
        return up  # type: ignore[no-any-return]

    def _name(self, uid: int, pid: int, cgroup_id: int, mnt_ns: int | None, setup: bool, exec_: bool) -> str:
        """The user name of ``uid`` in the process's root: UserNames' per-namespace map, and in
        front of it names per (mount namespace, uid) until the first tick ``USER_MEMO_S``
        after they were learned (the generation ``_gen``; the pipeline ticks every 0.1 s; a name never
        learned through the runtime's setup, never an empty one: the next process may be
        the way into a root that this one could not open). An exec that asks UserNames
        (a name not in the memo) notes its process as a way into that root later: at
        most once per second and uid, not at every exec."""
        if not mnt_ns or setup:
            return self.users.name(uid, pid, cgroup_id, mnt_ns, setup)
        memo = self._names
        k = (mnt_ns, uid)
        name = memo.get(k)
        if name is None:
            if exec_:
                self.users.note(pid, mnt_ns)
            name = self.users.name(uid, pid, cgroup_id, mnt_ns, False)
            if name:
                memo[k] = name
        return name

    def _again(self, ev: Event, p: Proc) -> bool:
        """``_fill`` for a process's later events (its sockets, files, exit) when its last
        entity holds all ten names and still is what ``_fill`` would give: the same process
        image, cwd (the event's own, or the table's), uid with its remembered name, parent
        image and ancestry, and the event carries none of the other names the table fills.
        The event then gets the entity's values, and the entity."""
        ext = p.extra
        ent = ext.get("ctx")
        parent = p.parent
        if ent is None or parent is None or len(ent.vals) != _ALL:
            return False
        key, ppid, pkey, path, cmd, cwd, user, ppath, pcmd, anc = ent.vals
        uid = ev.get("uid")
        own_cwd = ev.get("cwd")
        if (type(uid) is not int or ext.get("uid") != uid or ext.get("user") != user or not user
                or not path or p.path != path or not cmd or p.cmdline != cmd or not cwd or (own_cwd or p.cwd) != cwd
                or parent.pid != ppid or not ppath or parent.path != ppath or not pcmd or parent.cmdline != pcmd
                or not anc or ext.get("ancestors") is not anc or not ev.keys().isdisjoint(_FILLED_BUT_CWD)):
            return False
        ev["process_key"] = key
        ev["path"] = path
        ev["cmdline"] = cmd
        if not own_cwd:
            ev["cwd"] = cwd
        ev["user"] = user
        ev["ppid"] = ppid
        ev["parent_key"] = pkey
        ev["parent_path"] = ppath
        ev["parent_cmdline"] = pcmd
        ev["ancestors"] = anc
        if type(ev) is EventDict:  # put(), as the first stage to attach anything (see the top)
            ev._ctx = (ent.keys, ent)
        return True

    def tick(self, now: float, out: Emit) -> None:
        self._release(now, out)
        t = time.monotonic()
        if t >= self._names_until:  # the user names memo ends (see _name)
            self._names.clear()
            self._gen += 1
            self._names_until = t + USER_MEMO_S
        self.table.reap(now if now != float("inf") else time.monotonic())
