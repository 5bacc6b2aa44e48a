"""Which workload an event belongs to: the unit that owns a profile.

From the Kubernetes context on the event: the controller (a ReplicaSet's Deployment, a Job's
CronJob) when known; a pod without a controller is its own unit. Without the API (pod names
from /var/log/pods only) a pod named like a Deployment's (``<name>-<rs hash>-<5 chars>``, both
from Kubernetes' name alphabet) is counted to that Deployment; any other pod is its own unit.
Host processes, containers outside Kubernetes and events without pod context have no unit.
"""

from __future__ import annotations

import re
from typing import Any, Final

from podtrail.detect.baseline.model import WorkloadKey

# Kubernetes' generated-name alphabet (no vowels, no 0, 1, 3): ReplicaSet hash and pod suffix.
_ALNUM: Final = "bcdfghjklmnpqrstvwxz2456789"
_DEPLOYMENT_POD: Final = re.compile(rf"^(?P<name>.+)-[{_ALNUM}]{{6,10}}-[{_ALNUM}]{{5}}$")


def unit_of(ev: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """(cluster, namespace, kind, name) as a plain tuple: it equals and hashes like the
    WorkloadKey with the same values, and is cheaper to build on the per-event path."""
    ns = ev.get("namespace")
    if not ns or not ev.get("container_id"):
        return None
    cluster = ev.get("cluster_name") or ""
    name = ev.get("workload_name")
    if name:
        return (cluster, ns, ev.get("workload_kind") or "Workload", name)
    pod = ev.get("pod_name")
    if not pod:
        return None
    if ev.get("metadata_source") == "pod_logs":
        m = _DEPLOYMENT_POD.match(pod)
        if m:
            return (cluster, ns, "Deployment", m["name"])
    return (cluster, ns, "Pod", pod)


def workload_of(ev: dict[str, Any]) -> WorkloadKey | None:
    t = unit_of(ev)
    return None if t is None else WorkloadKey(*t)
