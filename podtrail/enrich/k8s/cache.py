"""The pod cache: indexes by container id and pod UID, with tombstones for deleted pods.

Deleted pods stay resolvable for ``tombstone_s`` (late events from a pod that just ended,
CronJob pods that live seconds) and are then forgotten, so memory stays bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from podtrail.enrich.k8s.model import PodInfo


class PodCache:
    def __init__(self, tombstone_s: float = 600.0) -> None:
        self.tombstone_s = tombstone_s
        self._by_uid: dict[str, PodInfo] = {}
        self._by_cid: dict[str, PodInfo] = {}
        # The pod of a container id: the dict's own get (the Kubernetes stage asks for every
        # container event), valid because _by_cid is never replaced
        self.by_container: Callable[[str], PodInfo | None] = self._by_cid.get
        self._dead: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()
        self.synced = threading.Event()  # set after the first complete list

    def upsert(self, pod: PodInfo) -> None:
        with self._lock:
            old = self._by_uid.get(pod.uid)
            if old is not None:
                for cid in old.containers:
                    if cid not in pod.containers:
                        self._by_cid.pop(cid, None)
            self._by_uid[pod.uid] = pod
            for cid in pod.containers:
                self._by_cid[cid] = pod

    def delete(self, uid: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            pod = self._by_uid.get(uid)
            if pod is not None and pod.deleted_at is None:
                pod.deleted_at = now
                self._dead.append((now, uid))

    def replace_all(self, pods: list[PodInfo]) -> None:
        """After a (re)list: pods no longer present become tombstones, not holes."""
        seen = {p.uid for p in pods}
        for p in pods:
            self.upsert(p)
        for uid in [u for u, p in self._by_uid.items() if u not in seen and p.deleted_at is None]:
            self.delete(uid)
        self.synced.set()

    def expire(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        n = 0
        with self._lock:
            while self._dead and now - self._dead[0][0] >= self.tombstone_s:
                _, uid = self._dead.popleft()
                pod = self._by_uid.get(uid)
                if pod is not None and pod.deleted_at is not None and now - pod.deleted_at >= self.tombstone_s:
                    del self._by_uid[uid]
                    for cid in pod.containers:
                        if self._by_cid.get(cid) is pod:
                            del self._by_cid[cid]
                    n += 1
        return n

    def by_uid(self, uid: str) -> PodInfo | None:
        return self._by_uid.get(uid)

    def pods(self) -> list[PodInfo]:
        with self._lock:
            return list(self._by_uid.values())

    def sizes(self) -> tuple[int, int]:
        return len(self._by_uid), len(self._by_cid)
