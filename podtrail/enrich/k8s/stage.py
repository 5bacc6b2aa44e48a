"""The Kubernetes stage: pod, namespace, workload, labels on every container event.

An event whose container is not in the cache yet (the pod's first process often runs before
the watch reports its container id) waits in a bounded pending queue for ``pending_s``; then
the node-only fallback (/var/log/pods) is tried, and the event goes out with what is known and
``metadata_missing`` set. Nothing waits on the API: the watcher fills the cache in its own
thread, and this stage only reads it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from podtrail import native
from podtrail.enrich.k8s.cache import PodCache
from podtrail.enrich.k8s.iphistory import IPHistory
from podtrail.enrich.k8s.model import PodInfo
from podtrail.enrich.k8s.podlogs import PodLogs
from podtrail.metrics import REGISTRY
from podtrail.model.context import POD_CTX, Entity, put, share
from podtrail.model.event import Event
from podtrail.pipeline import Emit

MISSING = Counter("podtrail_k8s_metadata_missing_total", "Container events sent without pod metadata.", registry=REGISTRY)
PENDING = Gauge("podtrail_k8s_pending_events", "Events waiting for pod metadata.", registry=REGISTRY)
_POD_NAMES = frozenset(POD_CTX.names)
_NODE_NAMES = ("cluster_name", "node_name")  # a host event's pod context
# The known-container branch of ``process`` in one C call (podtrail/enrich/_known.c; the branch
# below stays its reference and the fallback): True when done (but ``out``), False when nothing
# was touched.
_known = native.load("podtrail.enrich._known")
_POD_T = tuple(sorted(_POD_NAMES))
PENDING_OVERFLOW = Counter("podtrail_k8s_pending_overflow_total", "Events sent on early because the pending queue was full.", registry=REGISTRY)


class K8sStage:
    def __init__(self, cache: PodCache | None, podlogs: PodLogs | None, *, cluster_name: str = "", node_name: str = "",
                 labels: list[str] | None = None, pending_s: float = 2.0, pending_max: int = 10000,
                 api_expected: Callable[[], bool] | None = None, ips: IPHistory | None = None) -> None:
        self.cache = cache
        self.podlogs = podlogs
        self.cluster_name = cluster_name
        self.node_name = node_name
        self.labels = set(labels or [])
        self.pending_s = pending_s
        self.pending_max = pending_max
        self.ips = ips
        self._pending: deque[tuple[float, Event]] = deque()
        self._ents: dict[str, Entity] = {}  # container id ("" for host events) -> pod context entity
        # container id -> (the pod the cache gave, the entity, the pod's uid): while the cache
        # gives the same pod object (a change is a new PodInfo), an event of that container is
        # filled from the entity at once
        self._known: dict[str, tuple[PodInfo | None, Entity, str | None, dict[str, object]]] = {}
        # Wait for the watch only while it can answer: API configured and last seen reachable.
        self._api_expected = api_expected or (lambda: cache is not None)
        self._c = _known.pod if _known is not None else None  # None: the Python branch only

    # -- filling --------------------------------------------------------------------------------
    def _fill_pod(self, ev: Event, pod: PodInfo) -> None:
        ev["pod_name"] = pod.name
        ev["namespace"] = pod.namespace
        ev.setdefault("pod_uid", pod.uid)
        if pod.service_account:
            ev["service_account"] = pod.service_account
        if pod.pod_ips:
            ev["pod_ips"] = pod.pod_ips
        ev["host_network"] = pod.host_network
        ev["host_pid"] = pod.host_pid
        if pod.workload_kind:
            ev["workload_kind"] = pod.workload_kind
            ev["workload_name"] = pod.workload_name
        sel = {k: v for k, v in pod.labels.items() if k in self.labels}
        if sel:
            ev["pod_labels"] = sel
        if pod.node_name:
            ev["node_name"] = pod.node_name
        ev["metadata_source"] = "api"

    def _resolve(self, ev: Event, final: bool) -> bool:
        """Fill what is known; True when the event may go (found, or nothing more to wait for)."""
        cid = ev.get("container_id")
        if not cid:
            return True
        cache = self.cache
        if cache is not None:
            pod = cache.by_container(cid)
            if pod is not None:
                self._fill_pod(ev, pod)
                meta = pod.containers[cid]
                ev["container_name"] = meta.name
                if meta.image:
                    ev["image"] = meta.image
                if meta.image_digest:
                    ev["image_digest"] = meta.image_digest
                ev["privileged"] = meta.privileged
                return True
        uid = ev.get("pod_uid")
        if not uid:
            return True  # a container outside Kubernetes (docker, podman): there is no pod to find
        if not final and cache is not None and self._api_expected():
            return False  # wait: the watch will likely report this container soon
        if cache is not None:
            pod = cache.by_uid(uid)
            if pod is not None:  # pod known, container id not yet in its status
                self._fill_pod(ev, pod)
                ev["metadata_missing"] = True
                MISSING.inc()
                return True
        if self.podlogs is not None:
            info = self.podlogs.lookup(uid, cid)
            if info is not None:
                ev["namespace"], ev["pod_name"] = info.namespace, info.pod_name
                if info.container_name:
                    ev["container_name"] = info.container_name
                ev["metadata_source"] = "pod_logs"
                return True
        ev["metadata_missing"] = True
        MISSING.inc()
        return True

    def _common(self, ev: Event) -> None:
        if self.cluster_name:
            ev["cluster_name"] = self.cluster_name
        if self.node_name and "node_name" not in ev:
            ev["node_name"] = self.node_name
        if self.ips is not None and ev.get("event_type") == "socket":
            self._remote(ev)

    def _remote(self, ev: Event) -> None:
        """The peer's pod or service, from the IP history (at the event's time)."""
        assert self.ips is not None
        ip = ev.get("remote_address")
        if ip:
            h = self.ips.lookup(ip, ev.get("time_ns") or 0)
            if h is not None:
                ev["remote_namespace"] = h.namespace
                if h.kind == "service":
                    ev["remote_service"] = h.name
                else:
                    ev["remote_pod"] = h.name
                    if h.workload:
                        ev["remote_workload"] = h.workload

    def fill_container(self, d: Event) -> None:
        """Pod fields for a container id, from the cache only (state tables; never waits)."""
        if self.cache is not None and self.cache.by_container(d.get("container_id") or "") is not None:
            self._resolve(d, final=True)

    def _share(self, ev: Event) -> None:
        """Attach the pod context entity; a new version when the pod (labels, workload...) or
        the container's metadata changed, so no output renders a stale fragment. A host
        event's is the node's: the cluster and node names only (whatever else it has)."""
        cid = ev.get("container_id") or ""
        ents = self._ents
        if not cid:
            vals = {n: v for n in _NODE_NAMES if (v := ev.get(n)) is not None}
            host = ents.get("")
            if host is None or host.values != vals:
                host = ents[""] = Entity(POD_CTX, vals)
            put(ev, host)
            return
        ent = ents.get(cid)
        new = share(ev, POD_CTX, ent)
        if new is not ent:
            if len(ents) >= 65536:
                ents.clear()
            ents[cid] = new

    # -- stage protocol ---------------------------------------------------------------------------
    def _pod_of(self, cid: str) -> PodInfo | None:
        return self.cache.by_container(cid) if cid and self.cache is not None else None

    def process(self, ev: Event, out: Emit) -> None:
        c = self._c
        if c is not None and c(self, ev, _POD_T):
            out(ev)
            return
        cid = ev.get("container_id") or ""
        known = self._known.get(cid) if type(cid) is str else None
        # What the full path would give, at once: for a host event (no container, no node
        # name of its own: the cluster's and node's names and the entity of those two, whatever
        # else the event has), or for a container whose pod object is still the cache's (or a
        # host event with a node name of its own) when the event has none of the names the
        # full path would fill.
        if known is not None and ((not cid and "node_name" not in ev)
                                  or (known[0] is self._pod_of(cid) and ev.keys().isdisjoint(_POD_NAMES))):
            ev.update(known[3])  # the entity's values
            if known[2] is not None and "pod_uid" not in ev:
                ev["pod_uid"] = known[2]
            put(ev, known[1])
            if self.ips is not None and ev.get("event_type") == "socket":
                self._remote(ev)
            out(ev)
            return
        clean = ev.keys().isdisjoint(_POD_NAMES)
        self._common(ev)
        if self._resolve(ev, final=False):
            self._share(ev)
            if clean and type(cid) is str:
                self._remember(ev, cid)
            out(ev)
            return
        if len(self._pending) >= self.pending_max:
            PENDING_OVERFLOW.inc()
            _, old = self._pending.popleft()
            self._resolve(old, final=True)
            self._share(old)
            out(old)
        self._pending.append((time.monotonic() + self.pending_s, ev))
        PENDING.set(len(self._pending))

    def fast_step(self) -> tuple[object, ...] | None:
        """This stage in the pipeline's C chain (pipeline.Pipeline._fast_chain): the
        known-container branch in C; None while the stage runs Python only."""
        if _known is None or self._c is not _known.pod:
            return None
        return ("step", _known.pod, self, (_POD_T,))

    def _remember(self, ev: Event, cid: str) -> None:
        """Keep the result for the container's next events when it depended on the pod object
        alone (found in the cache, or a host event) and the entity holds every name set."""
        pod = self._pod_of(cid)
        ent = self._ents.get(cid)
        if (pod is None and cid) or ent is None or "metadata_missing" in ev or ent.keys != _POD_NAMES.intersection(ev):
            return
        if len(self._known) >= 65536:
            self._known.clear()
        self._known[cid] = (pod, ent, pod.uid if pod is not None else None, ent.values)

    def tick(self, now: float, out: Emit) -> None:
        if not self._pending:
            return
        keep: deque[tuple[float, Event]] = deque()
        for deadline, ev in self._pending:
            if self._resolve(ev, final=now >= deadline):
                self._share(ev)
                out(ev)
            else:
                keep.append((deadline, ev))
        self._pending = keep
        PENDING.set(len(keep))
