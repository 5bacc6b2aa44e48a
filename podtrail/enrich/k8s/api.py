"""Every Kubernetes API call podtrail makes, in one place (deploy/kubernetes RBAC mirrors it):

- ``CoreV1Api.list_pod_for_all_namespaces`` (list and watch; fieldSelector spec.nodeName) -> pods: list, watch
- ``AppsV1Api.read_namespaced_replica_set`` -> replicasets: get (ReplicaSet -> Deployment)
- ``BatchV1Api.read_namespaced_job`` -> jobs: get (Job -> CronJob)
- ``CoreV1Api.list_service_for_all_namespaces`` (list and watch) -> services: list, watch

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
from podtrail.enrich.k8s.iphistory import Holder, IPHistory
from podtrail.enrich.k8s.model import PodInfo
from podtrail.metrics import REGISTRY

log = logging.getLogger(__name__)

WATCH_RESTARTS = Counter("podtrail_k8s_watch_restarts_total", "Pod watch restarts, by reason.", ["reason"], registry=REGISTRY)
CACHE_PODS = Gauge("podtrail_k8s_cache_pods", "Pods in the cache (tombstones included).", registry=REGISTRY)

# (resource, verb) for every call above: tests compare this with the RBAC manifest.
API_CALLS: tuple[tuple[str, str, str], ...] = (
    ("", "pods", "list"), ("", "pods", "watch"), ("", "services", "list"), ("", "services", "watch"),
    ("apps", "replicasets", "get"), ("batch", "jobs", "get"),
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


class ListWatcher:
    """list, then watch from the list's resourceVersion (bookmarks on); 410 Gone -> relist;
    a dropped stream resumes from the last resourceVersion; errors back off (capped)."""

    name = "objects"

    def __init__(self, list_call: Callable[..., Any], selector: str | None, *, watch_timeout_s: int = 300,
                 backoff_max_s: float = 30.0) -> None:
        self.list_call = list_call
        self.selector = selector
        self.watch_timeout_s = watch_timeout_s
        self.backoff_max_s = backoff_max_s
        self.rv = ""
        self.reachable = False
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_list(self, items: list[Any]) -> None:
        raise NotImplementedError

    def on_event(self, typ: str, obj: Any) -> None:
        raise NotImplementedError

    def relist(self) -> None:
        kw: dict[str, Any] = {"_request_timeout": 30}
        if self.selector:
            kw["field_selector"] = self.selector
        lst: Any = self.list_call(**kw)
        self.on_list(list(lst.items))
        self.rv = lst.metadata.resource_version or ""
        self.reachable = True
        self.last_error = ""

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
            for ev in w.stream(self.list_call, **kw):
                if self._stop.is_set():
                    w.stop()
                    return "stopped"
                typ, obj = ev["type"], ev["object"]
                rv = getattr(getattr(obj, "metadata", None), "resource_version", None)
                if typ != "BOOKMARK":
                    self.on_event(typ, obj)
                self.rv = rv or self.rv
        except ApiException as e:
            if e.status == 410:
                return "gone"
            raise
        return "ended"

    def housekeeping(self) -> None:
        return None

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
                log.debug("%s watch failed: %s", self.name, self.last_error)
                self._stop.wait(backoff * (1 + random.random() * 0.2))
                backoff = min(backoff * 2, self.backoff_max_s)
                need_list = need_list or not self.rv
            self.housekeeping()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"podtrail-k8s-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _holder(pod: PodInfo) -> Holder:
    wl = f"{pod.workload_kind}/{pod.workload_name}" if pod.workload_kind else ""
    return Holder("pod", pod.namespace, pod.name, wl)


class PodWatcher(ListWatcher):
    """Pods on this node -> the pod cache (and their IPs -> the IP history)."""

    name = "pods"

    def __init__(self, api_client: Any, cache: PodCache, node_name: str, ips: IPHistory | None = None, **kw: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.owners = OwnerLookup(api_client)
        self.cache = cache
        self.ips = ips
        super().__init__(self.core.list_pod_for_all_namespaces, f"spec.nodeName={node_name}" if node_name else None, **kw)

    def _convert(self, pod: Any) -> PodInfo:
        ns = pod.metadata.namespace or ""
        return pod_from_api(pod, self.owners.for_namespace(ns))

    def _track_ips(self, new: PodInfo, old: PodInfo | None) -> None:
        if self.ips is None or new.host_network:
            return
        if old is not None:
            for ip in set(old.pod_ips) - set(new.pod_ips):
                self.ips.release(ip, _holder(old))
        for ip in new.pod_ips:
            self.ips.claim(ip, _holder(new))

    def on_list(self, items: list[Any]) -> None:
        pods = [self._convert(p) for p in items]
        for p in pods:
            self._track_ips(p, self.cache.by_uid(p.uid))
        self.cache.replace_all(pods)
        CACHE_PODS.set(self.cache.sizes()[0])

    def on_event(self, typ: str, obj: Any) -> None:
        if typ in ("ADDED", "MODIFIED"):
            pod = self._convert(obj)
            self._track_ips(pod, self.cache.by_uid(pod.uid))
            self.cache.upsert(pod)
        elif typ == "DELETED":
            old = self.cache.by_uid(obj.metadata.uid)
            if old is not None and self.ips is not None:
                for ip in old.pod_ips:
                    self.ips.release(ip, _holder(old))
            self.cache.delete(obj.metadata.uid)
        CACHE_PODS.set(self.cache.sizes()[0])

    def housekeeping(self) -> None:
        self.cache.expire()
        if self.ips is not None:
            self.ips.expire()


class ServiceWatcher(ListWatcher):
    """Service cluster IPs (all namespaces) -> the IP history."""

    name = "services"

    def __init__(self, api_client: Any, ips: IPHistory, **kw: Any) -> None:
        from kubernetes import client

        self.ips = ips
        self.current: dict[str, tuple[str, ...]] = {}  # ns/name -> cluster IPs
        super().__init__(client.CoreV1Api(api_client).list_service_for_all_namespaces, None, **kw)

    @staticmethod
    def _ips(svc: Any) -> tuple[str, ...]:
        spec = svc.spec
        ips = list(spec.cluster_i_ps or []) if spec is not None and getattr(spec, "cluster_i_ps", None) else []
        if not ips and spec is not None and spec.cluster_ip:
            ips = [spec.cluster_ip]
        return tuple(i for i in ips if i and i != "None")

    def _set(self, svc: Any, ips: tuple[str, ...]) -> None:
        key = f"{svc.metadata.namespace}/{svc.metadata.name}"
        h = Holder("service", svc.metadata.namespace or "", svc.metadata.name or "")
        for ip in set(self.current.get(key, ())) - set(ips):
            self.ips.release(ip, h)
        for ip in ips:
            self.ips.claim(ip, h)
        if ips:
            self.current[key] = ips
        else:
            self.current.pop(key, None)

    def on_list(self, items: list[Any]) -> None:
        for svc in items:
            self._set(svc, self._ips(svc))

    def on_event(self, typ: str, obj: Any) -> None:
        self._set(obj, () if typ == "DELETED" else self._ips(obj))
