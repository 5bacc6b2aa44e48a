"""uid -> user name, from the process's own root (a container's /etc/passwd differs from the host's)."""

from __future__ import annotations

import time


def parse_passwd(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.split("\n"):
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            out.setdefault(int(parts[2]), parts[0])
    return out


class UserNames:
    """Caches one passwd map per root (keyed by cgroup id: one container, one root)."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self._maps: dict[int, tuple[float, dict[int, str]]] = {}
        self._ttl = ttl_s

    def name(self, uid: int, pid: int, cgroup_id: int) -> str:
        now = time.monotonic()
        hit = self._maps.get(cgroup_id)
        if hit is None or now - hit[0] > self._ttl:
            try:
                with open(f"/proc/{pid}/root/etc/passwd", errors="replace") as f:
                    m = parse_passwd(f.read(1 << 20))
            except OSError:
                if hit is not None:
                    return hit[1].get(uid, "")
                return ""
            hit = (now, m)
            self._maps[cgroup_id] = hit
        return hit[1].get(uid, "")
