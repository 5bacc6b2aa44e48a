"""The container-identity stage: cgroup -> runtime, container id, pod UID, QoS class.

eBPF events carry a cgroup v2 id (resolved through ``CgroupIndex``); events without one
(auditd) or hosts without a usable cgroup v2 fall back to ``/proc/<pid>/cgroup``. Which
method answered goes on the event (``container_id_method``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from podtrail import native
from podtrail.enrich.cgroup_index import CgroupIndex
from podtrail.enrich.cgroup_path import ContainerRef, parse_cgroup_path, parse_proc_cgroup
from podtrail.model.context import CONTAINER_CTX, Entity, put, share
from podtrail.model.event import Event
from podtrail.pipeline import Emit

_MAX_CACHE = 65536
PARENT_TTL_S = 1.0
# The names this stage fills; an event carrying one itself takes the full path.
_CTX_NAMES = frozenset(CONTAINER_CTX.names)
_FILLED = _CTX_NAMES - {"cgroup_id"}
_HOST = frozenset({"cgroup_id", "cgroup_path"})  # the context of a cgroup of no container
# The known-cgroup branch of ``apply`` in one C call (podtrail/enrich/_known.c; the branch
# below stays its reference and the fallback): True when done, False when nothing was touched.
_known = native.load("podtrail.enrich._known")
_FILLED_T = tuple(sorted(_FILLED))


@dataclass(slots=True)
class ContainerInfo:
    """A container seen on this node (for the osquery ``containers`` table)."""

    container_id: str
    runtime: str
    pod_uid: str
    qos_class: str
    cgroup_path: str
    first_seen: float
    last_seen: float


def read_proc_cgroup(pid: int) -> tuple[str, ContainerRef | None] | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return parse_proc_cgroup(f.read())
    except OSError:
        return None


class ContainerStage:
    def __init__(self, index: CgroupIndex | None = None, force_proc: bool = False) -> None:
        self.index = index if index is not None else CgroupIndex()
        self.force_proc = force_proc or not self.index.usable
        self._refs: dict[str, ContainerRef | None] = {}
        self._by_key: dict[str, tuple[str, ContainerRef | None]] = {}  # process_key -> /proc answer
        # parent process key -> (when read, its /proc answer): the answer for its children gone before they are read
        self._by_parent: dict[object, tuple[float, tuple[str, ContainerRef | None]]] = {}
        self.containers: dict[str, ContainerInfo] = {}
        self._ents: dict[str, Entity] = {}  # cgroup path -> the container context entity
        # cgroup id -> (its path in the index, the entity, the container, the entity's values,
        # whether it is a cgroup of no container): an event of a known cgroup is one dict
        # lookup and one identity check (the index may remap an id)
        self._by_cgroup: dict[int, tuple[str, Entity, ContainerInfo | None, dict[str, object], bool]] = {}
        self._c = _known.container if _known is not None else None  # None: the Python branch only

    def _parse(self, path: str) -> ContainerRef | None:
        if path in self._refs:
            return self._refs[path]
        if len(self._refs) >= _MAX_CACHE:
            self._refs.clear()
        ref = self._refs[path] = parse_cgroup_path(path)
        return ref

    def resolve(self, ev: Event) -> tuple[str, ContainerRef | None, str] | None:
        cg = ev.get("cgroup_id")
        if cg and not self.force_proc:
            path = self.index.path(cg)
            if path is not None:
                return path, self._parse(path), "cgroup_id"
        pid = ev.get("pid")
        if not isinstance(pid, int):
            return None
        key = ev.get("process_key") or str(pid)
        hit = self._by_key.get(key)
        if hit is None:
            hit = read_proc_cgroup(pid)
            if hit is None:  # already gone: its parent's container (processes rarely change cgroups)
                hit = self._parents(ev)
            if hit is None:
                return None
            if len(self._by_key) >= _MAX_CACHE:
                self._by_key.clear()
            self._by_key[key] = hit
        return hit[0], hit[1], "proc_cgroup"

    def _parents(self, ev: Event) -> tuple[str, ContainerRef | None] | None:
        """The parent's /proc answer, read once per parent and ``PARENT_TTL_S`` (an exec storm
        from one shell reads it once, not per exec; a parent that moves is seen within the TTL)."""
        ppid = ev.get("ppid")
        if not isinstance(ppid, int) or ppid <= 0:
            return None
        pkey = ev.get("parent_key") or ppid
        now = time.monotonic()
        got = self._by_parent.get(pkey)
        if got is not None and now - got[0] < PARENT_TTL_S:
            return got[1]
        hit = read_proc_cgroup(ppid)
        if hit is not None:
            if len(self._by_parent) >= _MAX_CACHE:
                self._by_parent.clear()
            self._by_parent[pkey] = (now, hit)
        return hit

    def apply(self, ev: Event) -> None:
        c = self._c
        if c is not None and c(self, ev, _FILLED_T):
            return
        cg = ev.get("cgroup_id")
        hit = self._by_cgroup.get(cg) if type(cg) is int else None  # never filled with force_proc
        # A known cgroup: the index still names the same path, and the event has none of the
        # names the full path would fill (its source set none). For a cgroup of no container
        # (the host's) the full path sets the path and attaches its entity whatever else the
        # event has: one comparison.
        if hit is not None and self.index.known(cg) is hit[0]:
            if hit[4]:
                ev["cgroup_path"] = hit[0]  # the entity's other value is the event's cgroup id
                put(ev, hit[1])
                return
            if ev.keys().isdisjoint(_FILLED):
                ev.update(hit[3])  # what the full path gives an event of this cgroup: the entity's values
                put(ev, hit[1])
                if hit[2] is not None:
                    hit[2].last_seen = time.time()
                return
        if not cg or type(cg) is not int or self.force_proc:
            self._apply(ev)
            return
        clean = ev.keys().isdisjoint(_FILLED)
        self._apply(ev)
        path = self.index.known(cg)
        got = self._ents.get(path) if path is not None else None
        # Remembered when the result came from this cgroup id alone: the event had none of the
        # names, the index answered, and the attached entity holds every name the path set.
        if clean and got is not None and path is not None and path == ev.get("cgroup_path") and ev.get("container_id_method") != "proc_cgroup" \
                and got.keys == _CTX_NAMES.intersection(ev):
            if len(self._by_cgroup) >= _MAX_CACHE:
                self._by_cgroup.clear()
            self._by_cgroup[cg] = (path, got, self.containers.get(ev.get("container_id") or ""), got.values, got.keys == _HOST)

    def _apply(self, ev: Event) -> None:
        r = self.resolve(ev)
        if r is None:
            return
        path, ref, method = r
        ev["cgroup_path"] = path
        if ref is None:
            self._share(ev, path)
            return
        ev["container_id"] = ref.container_id
        ev["container_runtime"] = ref.runtime
        ev["container_id_method"] = method
        if ref.pod_uid:
            ev["pod_uid"] = ref.pod_uid
        if ref.qos_class:
            ev["qos_class"] = ref.qos_class
        self._share(ev, path)
        now = time.time()
        info = self.containers.get(ref.container_id)
        if info is None:
            self.containers[ref.container_id] = ContainerInfo(ref.container_id, ref.runtime, ref.pod_uid, ref.qos_class, path, now, now)
        else:
            info.last_seen = now

    def _share(self, ev: Event, path: str) -> None:
        """Attach the container context entity (one per cgroup path while it matches)."""
        ents = self._ents
        ent = ents.get(path)
        new = share(ev, CONTAINER_CTX, ent)
        if new is not ent:
            if len(ents) >= _MAX_CACHE:
                ents.clear()
            ents[path] = new

    def process(self, ev: Event, out: Emit) -> None:
        self.apply(ev)
        out(ev)

    def fast_step(self) -> tuple[object, ...] | None:
        """This stage in the pipeline's C chain (pipeline.Pipeline._fast_chain): the known-cgroup
        branch in C; None while the stage runs Python only."""
        if _known is None or self._c is not _known.container:
            return None
        return ("step", _known.container, self, (_FILLED_T,))

    def tick(self, now: float, out: Emit) -> None:
        return None

    def scan(self) -> int:
        """Containers already running at start-up (from the cgroup tree, or /proc/*/cgroup
        without a usable cgroup v2), so the containers table and health's count have them
        before they do anything. Returns how many were found."""
        paths = set(self.index.paths()) if not self.force_proc else set()
        if self.force_proc:
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                hit = read_proc_cgroup(int(pid))
                if hit is not None:
                    paths.add(hit[0])
        now = time.time()
        found = 0
        for path in sorted(paths, key=len):  # a container's own directory before its sub-cgroups
            ref = self._parse(path)
            if ref is None or ref.container_id in self.containers:
                continue
            self.containers[ref.container_id] = ContainerInfo(ref.container_id, ref.runtime, ref.pod_uid,
                                                              ref.qos_class, path, now, now)
            found += 1
        return found

    def snapshot(self) -> list[ContainerInfo]:
        return list(self.containers.values())
