"""File events from file.c: writes, creates, deletes, renames, chmods, truncates under the
watched prefixes, and reads of sensitive files, as normalized events.

The kernel filtered absolute paths already. What reaches this module and still needs work:
relative paths (resolved against ``/proc/<pid>/cwd`` or ``/proc/<pid>/fd/<dirfd>``, then
filtered like the kernel would have; when the process is already gone the event goes on with
``path_unresolved`` for ``podtrail.enrich.relpath`` to finish from the process table), reads in
a sensitive directory (the file-name pattern is applied here), ``/proc/*/environ`` of the
reader itself (not sensitive), and drift-only events (recorded for the drift tracker,
never reported).
"""

from __future__ import annotations

import os
import struct
import time
from typing import Final

from prometheus_client import Counter

from podtrail.bpf.netfile import (
    KF_CONTAINER,
    KF_DRIFT_ONLY,
    KF_RELATIVE,
    KF_TRUNCATED,
    SensitiveMatcher,
    WriteMatcher,
    text,
)
from podtrail.enrich.drift import CREATED, MODIFIED, DriftTracker
from podtrail.metrics import REGISTRY
from podtrail.model.event import Event, new_event
from podtrail.model.fields import Kind

PROGRAM: Final = "file.c"
ACTIONS: Final = {1: "write", 2: "create", 3: "read", 4: "unlink", 5: "rename", 6: "chmod", 7: "truncate"}
AT_FDCWD: Final = -100
_DRIFT_REASON: Final = {"create": CREATED, "write": MODIFIED, "chmod": MODIFIED, "truncate": MODIFIED}

# struct file_event_t in file.c; renames carry a second 256-byte path.
_EVENT = struct.Struct("<QQIIIIiiiIIHH16s256s")
_PATH2 = struct.Struct("<256s")

USER_FILTERED = Counter(
    "podtrail_file_user_filtered_total",
    "File samples the kernel had to pass (relative paths, sensitive directories) that user space dropped, by reason.",
    ["reason"], registry=REGISTRY,
)
_filtered = {r: USER_FILTERED.labels(r) for r in ("unwatched", "not_sensitive", "own_environ", "drift_only")}


def resolve(pid: int, dfd: int, path: str) -> tuple[str, bool]:
    """(absolute path, resolved?) for a path relative to ``dfd`` (or to the cwd)."""
    if path.startswith("/"):
        return path, True
    link = f"/proc/{pid}/cwd" if dfd == AT_FDCWD else f"/proc/{pid}/fd/{dfd}"
    try:
        base = os.readlink(link)
    except OSError:
        return path, False
    if not base.startswith("/"):
        return path, False
    return os.path.normpath(os.path.join(base, path)) if path else base, True


class FileDecoder:
    def __init__(self, writes: WriteMatcher, sensitive: SensitiveMatcher, drift: DriftTracker | None = None) -> None:
        self._writes = writes
        self._sensitive = sensitive
        self._drift = drift
        self._offset = time.time_ns() - time.monotonic_ns()

    def decode(self, raw: bytes) -> Event | None:
        (mono, cg, pid, tid, uid, gid, ret, dfd, dfd2, flags, mode, act, kf, comm, rawpath) = _EVENT.unpack_from(raw)
        action = ACTIONS.get(act)
        if action is None:
            return None
        path, resolved = text(rawpath), True
        old = None
        if kf & KF_RELATIVE:
            path, resolved = resolve(pid, dfd, path)
        if action == "rename" and len(raw) >= _EVENT.size + _PATH2.size:
            old = path
            path = text(_PATH2.unpack_from(raw, _EVENT.size)[0])
            if not path.startswith("/"):
                path, r2 = resolve(pid, dfd2, path)
                resolved = resolved and r2

        category = None
        if action == "read":
            if resolved:
                category = self._sensitive.category(path)
            else:  # reported with path_unresolved; RelativePathStage may resolve it later
                category = self._sensitive.category_of_name(path.rsplit("/", 1)[-1])
            if category is None:
                _filtered["not_sensitive"].inc()
                return None
            if category == "proc_environ" and path.split("/")[2] in (str(pid), str(tid), "self", "thread-self"):
                _filtered["own_environ"].inc()
                return None
        else:
            container = bool(kf & KF_CONTAINER)
            if container and ret >= 0 and self._drift is not None:
                self._note(cg, action, path, old, mono)
            if kf & KF_DRIFT_ONLY:
                _filtered["drift_only"].inc()
                return None
            if (kf & KF_RELATIVE or action == "rename") and resolved and not (
                self._writes.match(path) or (old is not None and self._writes.match(old))
            ):
                _filtered["unwatched"].inc()
                return None

        ev = new_event(
            Kind.FILE, action, time_ns=mono + self._offset,
            source="ebpf", mono_ns=mono, pid=pid, tid=tid, uid=uid, gid=gid, comm=text(comm),
            cgroup_id=cg, result=ret, target_path=path,
        )
        if action in ("write", "create", "read"):
            ev["flags"] = flags
            if ret >= 0:
                ev["fd"] = ret
        if action in ("create", "chmod"):
            ev["mode"] = mode
        if old is not None:
            ev["old_path"] = old
        if not resolved:
            ev["path_unresolved"] = True
        elif kf & KF_TRUNCATED:
            ev["path_unresolved"] = True  # cut at the in-kernel limit: not the full path
        if category:
            ev["sensitive"] = category
        return ev

    def _note(self, cg: int, action: str, path: str, old: str | None, mono: int) -> None:
        assert self._drift is not None
        if action == "rename" and old is not None:
            self._drift.rename(cg, old, path, mono)
        elif action == "unlink":
            self._drift.forget(cg, path)
        elif action == "chmod" or action in _DRIFT_REASON:
            self._drift.note(cg, path, _DRIFT_REASON[action], mono)
