"""Pod metadata from the node alone, for when the API is unreachable or not configured.

The kubelet keeps ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/`` and symlinks
``/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`` to it: with the pod
UID (from the cgroup path) and the container id, that gives namespace, pod and container.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodePodInfo:
    namespace: str
    pod_name: str
    container_name: str


class PodLogs:
    def __init__(self, pods_dir: str = "/var/log/pods", containers_dir: str | None = None, rescan_s: float = 1.0) -> None:
        self.pods_dir = pods_dir
        self.containers_dir = containers_dir if containers_dir is not None else os.path.join(os.path.dirname(pods_dir.rstrip("/")), "containers")
        self._by_uid: dict[str, tuple[str, str, str]] = {}  # uid -> (namespace, pod, dir)
        self._rescan_s = rescan_s
        self._last = 0.0

    def _scan(self) -> None:
        self._last = time.monotonic()
        try:
            names = os.listdir(self.pods_dir)
        except OSError:
            return
        for n in names:
            parts = n.split("_")
            if len(parts) == 3:  # namespaces and pod names cannot contain "_"
                self._by_uid[parts[2]] = (parts[0], parts[1], os.path.join(self.pods_dir, n))

    def lookup(self, pod_uid: str, container_id: str) -> NodePodInfo | None:
        hit = self._by_uid.get(pod_uid)
        if hit is None and time.monotonic() - self._last >= self._rescan_s:
            self._scan()
            hit = self._by_uid.get(pod_uid)
        if hit is None:
            return None
        ns, pod, d = hit
        return NodePodInfo(ns, pod, self._container_name(ns, pod, d, container_id))

    def _container_name(self, ns: str, pod: str, d: str, cid: str) -> str:
        prefix = f"{pod}_{ns}_"
        suffix = f"-{cid}.log"
        try:
            for n in os.listdir(self.containers_dir):
                if n.startswith(prefix) and n.endswith(suffix):
                    return n[len(prefix):-len(suffix)]
        except OSError:
            pass
        try:
            subdirs = [s for s in os.listdir(d) if os.path.isdir(os.path.join(d, s))]
        except OSError:
            return ""
        return subdirs[0] if len(subdirs) == 1 else ""
