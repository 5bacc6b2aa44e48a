"""File events from file.bpf.c: writes, creates, deletes, renames, chmods, truncates under the
watched prefixes, and reads of sensitive files, as normalized events.

The kernel filtered and resolved the paths already: a relative path arrives joined to the cwd
(or dirfd) the task had at the syscall, as seen inside its own root, and a successful write open
names the file its fd refers to. What is left here is pure: "." and ".." of a joined path are
folded and the user-space filter applied again to the folded path, the file-name pattern of a
sensitive directory is applied, and reads of the reader's own ``/proc/*/environ`` are dropped.
A path the kernel could not fully walk (``KF_PATH_CUT``) or had to cut is reported with
``path_unresolved``. Drift is not decided here: the kernel records it (include/drift.h).
"""

from __future__ import annotations

import posixpath
import struct
import time
from typing import Final

from prometheus_client import Counter

from podtrail.bpf.netfile import (
    KF_PATH_CUT,
    KF_RELATIVE,
    KF_TRUNCATED,
    SensitiveMatcher,
    WriteMatcher,
    is_runtime_setup,
    text,
)
from podtrail.metrics import REGISTRY
from podtrail.model.event import Event, new_event
from podtrail.model.fields import Kind

PROGRAM: Final = "file"
ACTIONS: Final = {1: "write", 2: "create", 3: "read", 4: "unlink", 5: "rename", 6: "chmod", 7: "truncate"}
PATHBUF: Final = 512  # nf_pathwalk.h NFP_BUF

# struct file_event_t in file.bpf.c up to the first path; renames carry a second path.
_EVENT = struct.Struct(f"<QQQQIIIIiiiIIHHI16s{PATHBUF}s")
_PATH2_OFFSET: Final = _EVENT.size  # path2 follows path; the C struct's 4 padding bytes are at its end
_PATH2 = struct.Struct(f"<{PATHBUF}s")

USER_FILTERED = Counter(
    "podtrail_file_user_filtered_total",
    "File samples the kernel passed that user space dropped (a joined path with '..' outside the watched prefixes, a name pattern in a sensitive directory), by reason.",
    ["reason"], registry=REGISTRY,
)
_filtered = {r: USER_FILTERED.labels(r) for r in ("unwatched", "not_sensitive", "own_environ")}


def fold(path: str) -> str:
    """'.' and '..' of a path the kernel joined (``/tmp/./a/../f`` → ``/tmp/f``); pure."""
    return posixpath.normpath(path) if path.startswith("/") else path


class FileDecoder:
    def __init__(self, writes: WriteMatcher, sensitive: SensitiveMatcher) -> None:
        self._writes = writes
        self._sensitive = sensitive
        self._offset = time.time_ns() - time.monotonic_ns()

    def decode(self, raw: bytes) -> Event | None:
        (mono, cg, _dev, _ino, pid, tid, uid, gid, ret, _dfd, _dfd2, flags, mode, act, kf, _pf, comm,
         rawpath) = _EVENT.unpack_from(raw)
        action = ACTIONS.get(act)
        if action is None:
            return None
        path = text(rawpath)
        if kf & KF_RELATIVE:
            path = fold(path)
        old = None
        if action == "rename" and len(raw) >= _PATH2_OFFSET + _PATH2.size:
            old = path
            path = fold(text(_PATH2.unpack_from(raw, _PATH2_OFFSET)[0]))
        unresolved = bool(kf & (KF_PATH_CUT | KF_TRUNCATED)) or not path.startswith("/")

        category = None
        if action == "read":
            category = self._sensitive.category(path)
            if category is None and unresolved:  # matched in the kernel on its file name
                category = self._sensitive.category_of_name(path.rsplit("/", 1)[-1])
            if category is None:
                _filtered["not_sensitive"].inc()
                return None
            if category == "proc_environ" and path.split("/")[2] in (str(pid), str(tid), "self", "thread-self"):
                _filtered["own_environ"].inc()
                return None
        elif (kf & KF_RELATIVE or action == "rename") and not unresolved and not (
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
        if unresolved:
            ev["path_unresolved"] = True
        if category:
            ev["sensitive"] = category
        if is_runtime_setup(ev["comm"]):
            ev["runtime_setup"] = True
        return ev
