"""Evented tables' storage: osquery's event semantics in memory.

Each kind keeps at most ``events_max`` events and none older than ``events_expiry`` (like
osquery's ``--events_max``/``--events_expiry``); what falls off is counted, never unbounded.
Events are stored as the pipeline made them (no copy); rows are built only when selected.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import Counter, Gauge

from podtrail.metrics import REGISTRY
from podtrail.model.event import Event
from podtrail.model.fields import Kind

EXPIRED = Counter("podtrail_table_events_expired_total", "Buffered events dropped by expiry or by the max count.", ["table_kind", "reason"], registry=REGISTRY)
BUFFERED = Gauge("podtrail_table_events_buffered", "Events held for the osquery evented tables.", ["table_kind"], registry=REGISTRY)


class EventBuffers:
    """A pipeline Sink: every process/socket/file/alert event, kept for the evented tables."""

    name = "tables"

    def __init__(self, events_max: int = 50000, expiry_s: float = 3600.0) -> None:
        self.max = events_max
        self.expiry_ns = int(expiry_s * 1e9)
        self._q: dict[str, deque[Event]] = {k.value: deque() for k in (Kind.PROCESS, Kind.SOCKET, Kind.FILE, Kind.ALERT)}
        self._lock = threading.Lock()

    def submit(self, ev: Event) -> None:
        q = self._q.get(ev.get("event_type", ""))
        if q is None:
            return
        with self._lock:
            q.append(ev)
            if len(q) > self.max:
                q.popleft()
                EXPIRED.labels(ev["event_type"], "max").inc()

    def expire(self, now_ns: int | None = None) -> None:
        cut = (time.time_ns() if now_ns is None else now_ns) - self.expiry_ns
        with self._lock:
            for kind, q in self._q.items():
                n = 0
                while q and q[0].get("time_ns", 0) < cut:
                    q.popleft()
                    n += 1
                if n:
                    EXPIRED.labels(kind, "expiry").inc(n)
                BUFFERED.labels(kind).set(len(q))

    def events(self, kind: Kind, since_s: float | None = None, until_s: float | None = None) -> list[Event]:
        """A snapshot, narrowed by time first (events are in arrival order, close to time order)."""
        self.expire()
        with self._lock:
            evs = list(self._q[kind.value])
        if since_s is not None:
            evs = [e for e in evs if e.get("time", 0) >= since_s]
        if until_s is not None:
            evs = [e for e in evs if e.get("time", 0) <= until_s]
        return evs

    def close(self) -> None:
        return None
