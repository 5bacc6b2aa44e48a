"""Who held an IP address when: pod IPs and Service cluster IPs as time intervals.

Pod IPs are reused within minutes, so "which pod is 10.1.0.5" must be answered for the event's
time, not now. Each IP keeps its last ``per_ip`` holders; closed intervals older than
``retention_s`` are dropped, so memory is bounded by live objects plus recent history.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Holder:
    kind: str  # "pod" or "service"
    namespace: str
    name: str
    workload: str = ""  # "Kind/name" for pods


@dataclass(slots=True)
class Interval:
    start_ns: int
    end_ns: int | None
    holder: Holder


class IPHistory:
    def __init__(self, per_ip: int = 8, retention_s: float = 3600.0) -> None:
        self._by_ip: dict[str, deque[Interval]] = {}
        self._per_ip = per_ip
        self._retention_ns = int(retention_s * 1e9)
        self._lock = threading.Lock()

    def claim(self, ip: str, holder: Holder, now_ns: int | None = None) -> None:
        """``holder`` has ``ip`` from now on (closing whoever had it)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            q = self._by_ip.setdefault(ip, deque(maxlen=self._per_ip))
            if q and q[-1].end_ns is None:
                if q[-1].holder == holder:
                    return
                q[-1].end_ns = now_ns
            q.append(Interval(now_ns, None, holder))

    def release(self, ip: str, holder: Holder, now_ns: int | None = None) -> None:
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            q = self._by_ip.get(ip)
            if q and q[-1].end_ns is None and q[-1].holder == holder:
                q[-1].end_ns = now_ns

    def lookup(self, ip: str, at_ns: int) -> Holder | None:
        q = self._by_ip.get(ip)
        if not q:
            return None
        for iv in reversed(q):
            if iv.start_ns <= at_ns and (iv.end_ns is None or at_ns < iv.end_ns):
                return iv.holder
        # an event just before we first saw the holder (watch lag): the earliest holder still open
        first = q[0]
        if at_ns < first.start_ns and first.end_ns is None and first.start_ns - at_ns < 5_000_000_000:
            return first.holder
        return None

    def expire(self, now_ns: int | None = None) -> None:
        now_ns = time.time_ns() if now_ns is None else now_ns
        cut = now_ns - self._retention_ns
        with self._lock:
            for ip in list(self._by_ip):
                q = self._by_ip[ip]
                while q and q[0].end_ns is not None and q[0].end_ns < cut:
                    q.popleft()
                if not q:
                    del self._by_ip[ip]

    def __len__(self) -> int:
        return len(self._by_ip)
