"""Container drift: an exec of a binary that a process inside the same container created or
modified after the container started, or an exec from memfd or /dev/shm.

The file sensor notes every create/write/chmod/truncate/rename-to made by a container task
(keyed by the raw cgroup id both sensors carry, so no other stage has to run first); a write
by a task inside the container necessarily happened after it started. ``DriftStage`` checks
each exec against the notes of its cgroup and only flags notes older than the exec, so a
file written after the exec (notes arrive from another thread) never marks it.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from typing import Final

from prometheus_client import Counter

from podtrail.metrics import REGISTRY
from podtrail.model.event import Event
from podtrail.pipeline import Emit

CREATED: Final = "created_in_container"
MODIFIED: Final = "modified_in_container"
MEMFD: Final = "memfd"
DEV_SHM: Final = "dev_shm"

DRIFT_NOTES = Counter(
    "podtrail_drift_notes_total", "Container file changes recorded for drift detection.", registry=REGISTRY,
)
DRIFT_FLAGGED = Counter(
    "podtrail_drift_flagged_total", "Execs marked as drift, by reason.", ["reason"], registry=REGISTRY,
)
DRIFT_EVICTED = Counter(
    "podtrail_drift_evicted_total", "Drift notes forgotten to bound memory (oldest first).", registry=REGISTRY,
)

# fexecve() of a memfd shows up as an fd path; /proc/<pid>/exe then reads "/memfd:name (deleted)".
_FD_PATH = re.compile(r"^/(?:dev/fd|proc/(?:self|\d+)/fd)/\d+$")


class DriftTracker:
    """Per-cgroup record of paths changed from inside the container (bounded, LRU)."""

    def __init__(self, max_paths: int = 4096, max_cgroups: int = 4096) -> None:
        self._notes: OrderedDict[int, OrderedDict[str, tuple[int, str]]] = OrderedDict()
        self._max_paths = max_paths
        self._max_cgroups = max_cgroups
        self._lock = threading.Lock()

    def note(self, cgroup_id: int, path: str, reason: str, mono_ns: int) -> None:
        if not path:
            return
        with self._lock:
            paths = self._notes.get(cgroup_id)
            if paths is None:
                paths = self._notes[cgroup_id] = OrderedDict()
                if len(self._notes) > self._max_cgroups:
                    _, dropped = self._notes.popitem(last=False)
                    DRIFT_EVICTED.inc(len(dropped))
            else:
                self._notes.move_to_end(cgroup_id)
            old = paths.pop(path, None)
            # a file created then modified stays "created"
            if old is not None and old[1] == CREATED:
                reason = CREATED
            paths[path] = (mono_ns if old is None else old[0], reason)
            if len(paths) > self._max_paths:
                paths.popitem(last=False)
                DRIFT_EVICTED.inc()
        DRIFT_NOTES.inc()

    def forget(self, cgroup_id: int, path: str) -> None:
        """The file is gone (unlinked): a later exec of that path is of a new file."""
        with self._lock:
            paths = self._notes.get(cgroup_id)
            if paths is not None:
                paths.pop(path, None)

    def rename(self, cgroup_id: int, old: str, new: str, mono_ns: int) -> None:
        """rename(old, new): new is a file created in the container, whatever old was."""
        self.forget(cgroup_id, old)
        self.note(cgroup_id, new, CREATED, mono_ns)

    def check(self, cgroup_id: int, path: str, before_ns: int) -> str | None:
        """Reason if ``path`` (or a path ending with it: host vs container view) was changed in
        this cgroup before ``before_ns``."""
        with self._lock:
            paths = self._notes.get(cgroup_id)
            if not paths:
                return None
            hit = paths.get(path)
            if hit is None:
                for p, v in paths.items():
                    if path.endswith(p) and (len(path) == len(p) or p.startswith("/")):
                        hit = v
                        break
        if hit is None or hit[0] > before_ns:
            return None
        return hit[1]


def memory_exec_reason(path: str, exe_link: str = "") -> str | None:
    """memfd / dev_shm for execs that did not come from a regular file on disk."""
    for p in (path, exe_link):
        if p.startswith("/memfd:") or p.startswith("memfd:"):
            return MEMFD
        if p.startswith("/dev/shm/") or p.startswith("/run/shm/"):
            return DEV_SHM
    return None


class DriftStage:
    """Pipeline stage: sets ``drift``/``drift_reason`` on exec events (see module doc).
    Wire it anywhere after the process sensor; it needs only pid, path, cgroup_id, mono_ns."""

    def __init__(self, tracker: DriftTracker) -> None:
        self.tracker = tracker

    def process(self, ev: Event, out: Emit) -> None:
        if ev.get("event_type") == "process" and ev.get("action") == "exec":
            reason = self.reason(ev)
            if reason:
                ev["drift"] = True
                ev["drift_reason"] = reason
                DRIFT_FLAGGED.labels(reason).inc()
        out(ev)

    def tick(self, now: float, out: Emit) -> None:
        return None

    def reason(self, ev: Event) -> str | None:
        path = ev.get("path") or ""
        exe = ""
        if _FD_PATH.match(path) and ev.get("pid"):
            try:
                exe = os.readlink(f"/proc/{ev['pid']}/exe")
            except OSError:
                exe = ""
        r = memory_exec_reason(path, exe)
        if r:
            return r
        cg = ev.get("cgroup_id")
        if cg is None or not path:
            return None
        if not path.startswith("/") and ev.get("cwd"):
            path = ev["cwd"].rstrip("/") + "/" + path
        return self.tracker.check(cg, path, ev.get("mono_ns") or (1 << 63))
