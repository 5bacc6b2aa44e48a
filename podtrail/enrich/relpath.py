"""Finish relative file paths the file sensor could not resolve (the process exited before
its ``/proc/<pid>/cwd`` was read: ``cd /etc && cat shadow``).

Wire after the process-table stage: it uses the event's ``cwd`` when that stage knew it, else
the parent's current directory (a shell that ran ``cat`` usually still waits for it). Once
resolved, the same user-space filter as the decoder applies (watched prefix, sensitive
pattern); an event that stays unresolved goes on with ``path_unresolved=True``.
"""

from __future__ import annotations

import os

from podtrail.bpf.file import USER_FILTERED
from podtrail.bpf.netfile import SensitiveMatcher, WriteMatcher
from podtrail.model.event import Event
from podtrail.pipeline import Emit

_resolved_late = USER_FILTERED.labels("resolved_late_dropped")


class RelativePathStage:
    def __init__(self, writes: WriteMatcher, sensitive: SensitiveMatcher) -> None:
        self._writes = writes
        self._sensitive = sensitive

    def process(self, ev: Event, out: Emit) -> None:
        tp = ev.get("target_path") or ""
        if ev.get("event_type") != "file" or not ev.get("path_unresolved") or tp.startswith("/"):
            out(ev)
            return
        base = ev.get("cwd") or ""
        if not base.startswith("/") and ev.get("ppid"):
            try:
                base = os.readlink(f"/proc/{ev['ppid']}/cwd")
            except OSError:
                base = ""
        if not base.startswith("/"):
            out(ev)
            return
        path = os.path.normpath(os.path.join(base, tp))
        if ev.get("action") == "read":
            cat = self._sensitive.category(path)
            if cat is None:
                _resolved_late.inc()
                return
            ev["sensitive"] = cat
        elif not self._writes.match(path) and not self._writes.match(ev.get("old_path") or ""):
            _resolved_late.inc()
            return
        ev["target_path"] = path
        ev.pop("file_name", None)
        del ev["path_unresolved"]
        out(ev)

    def tick(self, now: float, out: Emit) -> None:
        return None
