"""Rows for the state tables, from the agent's live process table, containers and pod cache."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from podtrail.enrich.container import ContainerStage
from podtrail.procs.table import ProcessTable

ContainerContext = Callable[[dict[str, Any]], None]  # fills pod fields from a container id


def process_rows(table: ProcessTable, containers: ContainerStage, k8s: ContainerContext | None) -> Callable[[], Iterable[dict[str, Any]]]:
    def rows() -> Iterable[dict[str, Any]]:
        for p in table.snapshot():
            d: dict[str, Any] = {"pid": p.pid, "ppid": p.parent.pid if p.parent else p.ppid, "path": p.path,
                                 "cmdline": p.cmdline, "cwd": p.cwd, "uid": p.uid if p.uid >= 0 else None,
                                 "comm": p.comm, "process_key": p.key, "cgroup_id": p.cgroup_id or None}
            containers.apply(d)
            if k8s is not None and d.get("container_id"):
                k8s(d)
            yield d
    return rows


def container_rows(containers: ContainerStage, k8s: ContainerContext | None) -> Callable[[], Iterable[dict[str, Any]]]:
    def rows() -> Iterable[dict[str, Any]]:
        for c in containers.snapshot():
            d = {"container_id": c.container_id, "container_runtime": c.runtime, "pod_uid": c.pod_uid,
                 "qos_class": c.qos_class, "cgroup_path": c.cgroup_path,
                 "first_seen": int(c.first_seen), "last_seen": int(c.last_seen)}
            if k8s is not None:
                k8s(d)
            yield d
    return rows


def pod_rows(pods: Callable[[], list[Any]]) -> Callable[[], Iterable[dict[str, Any]]]:
    def rows() -> Iterable[dict[str, Any]]:
        for p in pods():
            d = dataclasses.asdict(p)
            yield {"pod_uid": p.uid, "pod_name": p.name, "namespace": p.namespace, "node_name": p.node_name,
                   "service_account": p.service_account, "workload_kind": p.workload_kind,
                   "workload_name": p.workload_name, "pod_ips": d["pod_ips"], "host_network": p.host_network,
                   "host_pid": p.host_pid, "pod_labels": d["labels"], "deleted": 1 if p.deleted_at is not None else 0}
    return rows
