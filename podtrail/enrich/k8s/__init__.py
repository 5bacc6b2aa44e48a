"""Kubernetes context: pod cache (list+watch), workload resolution, node-only fallback.

``build_k8s_stage(cfg)`` is the entry point the agent uses; it returns the stage and a
``stop`` callable. Without API access (no in-cluster config, no kubeconfig, or unreachable)
the stage still names pods from /var/log/pods and says so (``metadata_source``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from podtrail.config import KubernetesConfig
from podtrail.enrich.k8s.cache import PodCache
from podtrail.enrich.k8s.iphistory import IPHistory
from podtrail.enrich.k8s.podlogs import PodLogs
from podtrail.enrich.k8s.stage import K8sStage

log = logging.getLogger(__name__)

__all__ = ["build_k8s_stage", "K8sStage", "PodCache", "PodLogs"]


def build_k8s_stage(cfg: KubernetesConfig, hostname: str = "") -> tuple[K8sStage, Callable[[], None], object | None]:
    """(stage, stop, watcher or None). The watcher thread starts here when an API is configured."""
    podlogs = PodLogs(cfg.pod_logs_dir)
    node = cfg.node_name or hostname
    cache: PodCache | None = None
    watcher = None
    ips: IPHistory | None = None
    stops: list[Callable[[], None]] = []
    if cfg.enabled:
        try:
            from podtrail.enrich.k8s.api import PodWatcher, ServiceWatcher, load_client

            client = load_client(cfg.kubeconfig)
            cache = PodCache(cfg.tombstone_seconds)
            ips = IPHistory()
            watcher = PodWatcher(client, cache, cfg.node_name, ips)
            services = ServiceWatcher(client, ips)
            watcher.start()
            services.start()
            stops = [watcher.stop, services.stop]
        except Exception as e:  # noqa: BLE001 - no config at all: node-only mode
            log.info("Kubernetes API not configured (%s): pod names from %s only", str(e).splitlines()[0][:120] if str(e) else type(e).__name__, cfg.pod_logs_dir)
            cache = None
    w = watcher
    stage = K8sStage(cache, podlogs, cluster_name=cfg.cluster_name, node_name=node, labels=cfg.label_allowlist,
                     pending_s=cfg.pending_seconds, pending_max=cfg.pending_max,
                     api_expected=(lambda: w is not None and (w.reachable or not w.last_error)), ips=ips)

    def stop() -> None:
        for s in stops:
            s()

    return stage, stop, w
