"""Every Kubernetes API call podtrail makes, in one place (deploy/kubernetes RBAC mirrors it):

- ``CoreV1Api.list_pod_for_all_namespaces`` (list and watch; fieldSelector spec.nodeName) -> pods: list, watch
- ``AppsV1Api.read_namespaced_replica_set`` -> replicasets: get (ReplicaSet -> Deployment)
- ``BatchV1Api.read_namespaced_job`` -> jobs: get (Job -> CronJob)

The watcher lists, then watches from the list's resourceVersion with bookmarks; a 410 Gone
(or any ERROR) relists; dropped streams resume from the last seen resourceVersion; API errors
back off exponentially (capped). It never blocks event processing: it runs in its own thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from podtrail.enrich.k8s.cache import PodCache
from podtrail.enrich.k8s.convert import pod_from_api
from podtrail.metrics import REGISTRY

log = logging.getLogger(__name__)

WATCH_RESTARTS = Counter("podtrail_k8s_watch_restarts_total", "Pod watch restarts, by reason.", ["reason"], registry=REGISTRY)
CACHE_PODS = Gauge("podtrail_k8s_cache_pods", "Pods in the cache (tombstones included).", registry=REGISTRY)

# (resource, verb) for every call above: tests compare this with the RBAC manifest.
API_CALLS: tuple[tuple[str, str, str], ...] = (
    ("", "pods", "list"), ("", "pods", "watch"), ("apps", "replicasets", "get"), ("batch", "jobs", "get"),
)


def load_client(kubeconfig: str = "") -> Any:
    """An ApiClient from in-cluster config, else the kubeconfig (path or default)."""
    from kubernetes import client, config

    if not kubeconfig:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig or None, client_configuration=cfg)
    return client.ApiClient(cfg)


class OwnerLookup:
    """ReplicaSet/Job -> their controller, cached (negative answers too, briefly)."""

    def __init__(self, api_client: Any, ttl_s: float = 300.0) -> None:
        from kubernetes import client

        self._apps = client.AppsV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._cache: dict[tuple[str, str, str], tuple[float, tuple[str, str] | None]] = {}
        self._ttl = ttl_s

    def for_namespace(self, ns: str) -> Callable[[str, str], tuple[str, str] | None]:
        return lambda kind, name: self.lookup(ns, kind, name)

    def lookup(self, ns: str, kind: str, name: str) -> tuple[str, str] | None:
        key = (ns, kind, name)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        obj: Any
        try:
            if kind == "ReplicaSet":
                obj = self._apps.read_namespaced_replica_set(name, ns, _request_timeout=5)
            elif kind == "Job":
                obj = self._batch.read_namespaced_job(name, ns, _request_timeout=5)
            else:
                return None
        except Exception:  # noqa: BLE001 - no RBAC, owner gone, API down: naming rules decide
            self._cache[key] = (now, None)
            return None
        out: tuple[str, str] = ("", "")
        for ref in (obj.metadata.owner_references if obj.metadata else None) or []:
            if ref.controller:
                out = (ref.kind, ref.name)
        self._cache[key] = (now, out)
        return out


class PodWatcher:
    def __init__(self, api_client: Any, cache: PodCache, node_name: str, *,
                 watch_timeout_s: int = 300, backoff_max_s: float = 30.0) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.owners = OwnerLookup(api_client)
        self.cache = cache
        self.selector = f"spec.nodeName={node_name}" if node_name else None
        self.watch_timeout_s = watch_timeout_s
        self.backoff_max_s = backoff_max_s
        self.rv = ""
        self.reachable = False
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _convert(self, pod: Any) -> Any:
        ns = pod.metadata.namespace or ""
        return pod_from_api(pod, self.owners.for_namespace(ns))

    def relist(self) -> None:
        kw: dict[str, Any] = {"_request_timeout": 30}
        if self.selector:
            kw["field_selector"] = self.selector
        lst: Any = self.core.list_pod_for_all_namespaces(**kw)
        self.cache.replace_all([self._convert(p) for p in lst.items])
        self.rv = lst.metadata.resource_version or ""
        self.reachable = True
        CACHE_PODS.set(self.cache.sizes()[0])

    def watch_once(self) -> str:
        """Stream watch events until the stream ends; returns why it ended."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        w = watch.Watch()
        kw: dict[str, Any] = {"resource_version": self.rv, "allow_watch_bookmarks": True,
                              "timeout_seconds": self.watch_timeout_s, "_request_timeout": self.watch_timeout_s + 30}
        if self.selector:
            kw["field_selector"] = self.selector
        try:
            for ev in w.stream(self.core.list_pod_for_all_namespaces, **kw):
                if self._stop.is_set():
                    w.stop()
                    return "stopped"
                typ, obj = ev["type"], ev["object"]
                rv = getattr(getattr(obj, "metadata", None), "resource_version", None)
                if typ == "BOOKMARK":
                    self.rv = rv or self.rv
                    continue
                if typ in ("ADDED", "MODIFIED"):
                    self.cache.upsert(self._convert(obj))
                elif typ == "DELETED":
                    self.cache.delete(obj.metadata.uid)
                self.rv = rv or self.rv
                CACHE_PODS.set(self.cache.sizes()[0])
        except ApiException as e:
            if e.status == 410:
                return "gone"
            raise
        return "ended"

    def run(self) -> None:
        backoff = 0.5
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self.relist()
                    need_list = False
                why = self.watch_once()
                backoff = 0.5
                if why == "gone":
                    need_list = True
                WATCH_RESTARTS.labels(why).inc()
            except Exception as e:  # noqa: BLE001 - API down, dropped connection, bad data
                self.reachable = False
                self.last_error = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                WATCH_RESTARTS.labels("error").inc()
                log.debug("pod watch failed: %s", self.last_error)
                self._stop.wait(backoff * (1 + random.random() * 0.2))
                backoff = min(backoff * 2, self.backoff_max_s)
                need_list = need_list or not self.rv
            self.cache.expire()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="podtrail-k8s-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
