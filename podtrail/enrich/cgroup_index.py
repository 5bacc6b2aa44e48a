"""cgroup v2 id -> cgroup path.

``bpf_get_current_cgroup_id()`` is the inode number of the task's cgroup directory under the
cgroup2 mount. The index is built by one walk of that mount and then kept current by the
process sensor's cgroup_mkdir/rmdir samples (same ordered ring buffer as the execs), with a
rate-limited rescan on a miss as a safety net. Removed cgroups linger briefly for late events.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where cgroup2 is mounted (``/sys/fs/cgroup`` on unified hosts, ``.../unified`` on hybrid)."""
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return None


class CgroupIndex:
    def __init__(self, root: str | None = None, rescan_interval_s: float = 1.0, linger_s: float = 60.0) -> None:
        self.root = root if root is not None else cgroup2_mount()
        self._paths: dict[int, str] = {}
        # The path of an id the index holds now (no rescan on a miss: for cache checks); the
        # dict's own get (this runs for every event), valid because _paths is never replaced
        self.known: Callable[[Any], str | None] = self._paths.get
        self._removed: deque[tuple[float, int]] = deque()
        self._rescan_interval = rescan_interval_s
        self._linger = linger_s
        self._last_scan = 0.0
        self._lock = threading.Lock()
        self.scans = 0
        if self.root:
            self.rescan()

    @property
    def usable(self) -> bool:
        return bool(self.root)

    def rescan(self) -> None:
        assert self.root is not None
        n = len(self.root)
        found: dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(self.root):
            try:
                found[os.stat(dirpath).st_ino] = dirpath[n:] or "/"
            except OSError:
                continue
        with self._lock:
            self._paths.update(found)
        self._last_scan = time.monotonic()
        self.scans += 1

    def learn(self, cgroup_id: int, path: str | None) -> None:
        """From the sensor: a cgroup made (path) or removed (None)."""
        if path is not None:
            self._paths[cgroup_id] = path
        else:
            now = time.monotonic()
            self._removed.append((now, cgroup_id))
            while self._removed and now - self._removed[0][0] > self._linger:
                _, cid = self._removed.popleft()
                self._paths.pop(cid, None)

    def path(self, cgroup_id: int) -> str | None:
        p = self._paths.get(cgroup_id)
        if p is None and self.root and time.monotonic() - self._last_scan >= self._rescan_interval:
            self.rescan()
            p = self._paths.get(cgroup_id)
        return p


    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths.values())

    def __len__(self) -> int:
        return len(self._paths)
