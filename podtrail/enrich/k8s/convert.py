"""Kubernetes API objects -> PodInfo, and owner -> workload. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from podtrail.enrich.k8s.model import ContainerMeta, PodInfo

# "containerd://<id>", "cri-o://<id>", "docker://<id>"
_ID = re.compile(r"^[a-z0-9-]+://([0-9a-f]{64})$")
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")


def strip_container_id(raw: str | None) -> str:
    if not raw:
        return ""
    m = _ID.match(raw)
    return m.group(1) if m else ""


_IRREGULAR = {"container_id": "containerID", "image_id": "imageID", "pod_i_ps": "podIPs", "pod_ip": "podIP",
              "host_pid": "hostPID", "pod_ips": "podIPs"}


def _g(obj: Any, attr: str) -> Any:
    """Attribute of a kubernetes model object or key of its dict form (both are accepted)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        camel = _IRREGULAR.get(attr) or re.sub(r"_([a-z])", lambda m: m.group(1).upper(), attr)
        return obj.get(camel, obj.get(attr))
    return getattr(obj, attr, None)


def owner_to_workload(kind: str, name: str, lookup_owner: Callable[[str, str], tuple[str, str] | None] | None,
                      labels: dict[str, str]) -> tuple[str, str]:
    """The controller a pod belongs to: ReplicaSet -> Deployment, Job -> CronJob.

    ``lookup_owner(kind, name)`` fetches the owner's own controller (cached by the caller);
    when it cannot (no RBAC, API down, owner gone), naming rules decide: a ReplicaSet named
    ``<deployment>-<pod-template-hash>``, a Job named ``<cronjob>-<scheduled minutes>``.
    """
    if kind in ("", None):
        return "", ""
    if kind in ("ReplicaSet", "Job"):
        parent = lookup_owner(kind, name) if lookup_owner is not None else None
        if parent is not None:
            return parent if parent[0] else (kind, name)
        if kind == "ReplicaSet":
            h = labels.get("pod-template-hash")
            if h and name.endswith("-" + h):
                return "Deployment", name[: -len(h) - 1]
            return kind, name
        m = re.match(r"^(.*)-(\d{8,})$", name)
        if m:
            return "CronJob", m.group(1)
        return kind, name
    return kind, name


def pod_from_api(pod: Any, lookup_owner: Callable[[str, str], tuple[str, str] | None] | None = None) -> PodInfo:
    meta, spec, status = _g(pod, "metadata"), _g(pod, "spec"), _g(pod, "status")
    labels = dict(_g(meta, "labels") or {})
    info = PodInfo(
        uid=_g(meta, "uid") or "", name=_g(meta, "name") or "", namespace=_g(meta, "namespace") or "",
        node_name=_g(spec, "node_name") or "", labels=labels,
        service_account=_g(spec, "service_account_name") or "",
        host_network=bool(_g(spec, "host_network")), host_pid=bool(_g(spec, "host_pid")),
    )
    ips = [_g(i, "ip") for i in (_g(status, "pod_i_ps") or _g(status, "pod_ips") or [])]
    if not ips and _g(status, "pod_ip"):
        ips = [_g(status, "pod_ip")]
    info.pod_ips = [i for i in ips if i]
    for ref in _g(meta, "owner_references") or []:
        if _g(ref, "controller"):
            info.owner_kind, info.owner_name = _g(ref, "kind") or "", _g(ref, "name") or ""
            break
    info.workload_kind, info.workload_name = owner_to_workload(info.owner_kind, info.owner_name, lookup_owner, labels)
    for group in ("init_containers", "containers", "ephemeral_containers"):
        for c in _g(spec, group) or []:
            sc = _g(c, "security_context")
            info.container_names[_g(c, "name")] = ContainerMeta(_g(c, "name"), _g(c, "image") or "", "", bool(_g(sc, "privileged")))
    for group in ("init_container_statuses", "container_statuses", "ephemeral_container_statuses"):
        for cs in _g(status, group) or []:
            cid = strip_container_id(_g(cs, "container_id"))
            if not cid:
                continue
            name = _g(cs, "name")
            spec_meta = info.container_names.get(name)
            digest_m = _DIGEST.search(_g(cs, "image_id") or "")
            info.containers[cid] = ContainerMeta(
                name, (spec_meta.image if spec_meta else "") or _g(cs, "image") or "",
                digest_m.group(1) if digest_m else "", spec_meta.privileged if spec_meta else False,
            )
    return info
