"""uid -> user name, from the process's own root (a container's /etc/passwd differs from the host's).

With the eBPF source every exec carries its mount namespace (read in the kernel): names are
cached per mount namespace and read through a live process *of that namespace* that is not
the runtime's setup (whose root may still be the host's before pivot_root), so a container's
uid 1000 is never named after the host's account. The passwd file is read on a cache miss
only (once per namespace and TTL), never per event.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

MAX_CANDIDATES = 8  # live pids remembered per mount namespace
MAX_NAMESPACES = 4096


def parse_passwd(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.split("\n"):
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            out.setdefault(int(parts[2]), parts[0])
    return out


class UserNames:
    """One passwd map per mount namespace (eBPF) or per cgroup (auditd, no namespace known)."""

    def __init__(self, ttl_s: float = 300.0, proc: str = "/proc") -> None:
        self._maps: dict[tuple[str, int], tuple[float, dict[int, str]]] = {}
        self._pids: OrderedDict[int, list[int]] = OrderedDict()
        self._ttl = ttl_s
        self._proc = proc

    def note(self, pid: int, mnt_ns: int) -> None:
        """A workload process (not runtime setup) of ``mnt_ns``: a way into its root later."""
        pids = self._pids.setdefault(mnt_ns, [])
        self._pids.move_to_end(mnt_ns)
        if pid in pids:
            pids.remove(pid)
        pids.append(pid)
        del pids[:-MAX_CANDIDATES]
        while len(self._pids) > MAX_NAMESPACES:
            self._pids.popitem(last=False)

    def name(self, uid: int, pid: int, cgroup_id: int, mnt_ns: int | None = None, setup: bool = False) -> str:
        now = time.monotonic()
        key = ("mnt", mnt_ns) if mnt_ns else ("cgroup", cgroup_id)
        hit = self._maps.get(key)
        if hit is not None and now - hit[0] <= self._ttl:
            return hit[1].get(uid, "")
        m = self._read_ns(mnt_ns, pid, setup) if mnt_ns else (None if setup else self._read(pid))
        if m is None:  # nobody to read through now: keep what we had, cache nothing new
            return hit[1].get(uid, "") if hit is not None else ""
        self._maps[key] = (now, m)
        return m.get(uid, "")

    def _read(self, pid: int) -> dict[int, str] | None:
        try:
            with open(f"{self._proc}/{pid}/root/etc/passwd", errors="replace") as f:
                return parse_passwd(f.read(1 << 20))
        except OSError:
            return None

    def _read_ns(self, mnt_ns: int, pid: int, setup: bool) -> dict[int, str] | None:
        candidates = ([] if setup else [pid]) + list(reversed(self._pids.get(mnt_ns, []))) + [1]
        for c in candidates:
            try:
                if os.stat(f"{self._proc}/{c}/ns/mnt").st_ino != mnt_ns:
                    continue  # gone, or the pid was reused by another namespace's process
            except OSError:
                continue
            m = self._read(c)
            if m is not None:
                return m
        return None
