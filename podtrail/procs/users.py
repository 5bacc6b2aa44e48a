"""uid -> user name, from the process's own root (a container's /etc/passwd differs from the host's).

With the eBPF source every exec carries its mount namespace (read in the kernel): names are
cached per mount namespace and read through a live process *of that namespace* that is not
the runtime's setup (whose root may still be the host's before pivot_root), so a container's
uid 1000 is never named after the host's account. The passwd file is read on a cache miss
only (once per namespace and TTL), never per event; when no process seen there is alive any
more (a container started before the agent), /proc is searched for one, at most every 10 s.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

MAX_CANDIDATES = 8  # live pids remembered per mount namespace
MAX_NAMESPACES = 4096
SETUP_COMMS = (b"runc:[", b"crun\n", b"youki\n")  # as process.bpf.c's is_runtime
RESCAN_S = 10.0  # a namespace none of whose processes is alive is looked for again after this


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
        self._scanned: dict[int, float] = {}  # mnt_ns -> when /proc was last scanned for it

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
            m = self._read_if_in(c, mnt_ns)
            if m is not None:
                return m
        # Every process we saw there is gone (a container started before the agent, whose
        # short-lived processes exit at once): look for any live one, at most every RESCAN_S.
        now = time.monotonic()
        if now - self._scanned.get(mnt_ns, -RESCAN_S) < RESCAN_S:
            return None
        self._scanned[mnt_ns] = now
        try:
            pids = [int(d) for d in os.listdir(self._proc) if d.isdigit()]
        except OSError:
            return None
        for c in pids:
            if self._is_runtime_setup(c):
                continue  # its root may still be the host's (before pivot_root)
            m = self._read_if_in(c, mnt_ns)
            if m is not None:
                self.note(c, mnt_ns)
                return m
        return None

    def _is_runtime_setup(self, pid: int) -> bool:
        try:
            with open(f"{self._proc}/{pid}/comm", "rb") as f:
                return f.read().startswith(SETUP_COMMS)
        except OSError:
            return True

    def _read_if_in(self, pid: int, mnt_ns: int) -> dict[int, str] | None:
        try:
            if os.stat(f"{self._proc}/{pid}/ns/mnt").st_ino != mnt_ns:
                return None  # gone, or the pid was reused by another namespace's process
        except OSError:
            return None
        return self._read(pid)
