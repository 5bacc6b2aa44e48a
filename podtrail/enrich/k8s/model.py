"""What podtrail keeps of a pod: only the fields events carry (small, so 250 pods cost little)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ContainerMeta:
    name: str
    image: str = ""
    image_digest: str = ""
    privileged: bool = False


@dataclass(slots=True)
class PodInfo:
    uid: str
    name: str
    namespace: str
    node_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = ""
    pod_ips: list[str] = field(default_factory=list)
    host_network: bool = False
    host_pid: bool = False
    owner_kind: str = ""
    owner_name: str = ""
    workload_kind: str = ""
    workload_name: str = ""
    containers: dict[str, ContainerMeta] = field(default_factory=dict)  # container id -> meta
    container_names: dict[str, ContainerMeta] = field(default_factory=dict)  # name -> meta (spec)
    source: str = "api"
    deleted_at: float | None = None
