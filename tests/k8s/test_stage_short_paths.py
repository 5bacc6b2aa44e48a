"""The container and Kubernetes stages' short paths (one lookup by cgroup id or container id)
give exactly what their full paths give, also after a cgroup id is remapped, a pod changes
(a new PodInfo from the watch) or the pod is gone. The pod cache is filled directly with
PodInfo objects made by the real converter from API-shaped pods (no API server exists here)."""

from __future__ import annotations

import tempfile
from typing import Any

from podtrail.enrich.cgroup_index import CgroupIndex
from podtrail.enrich.container import ContainerStage
from podtrail.enrich.k8s.cache import PodCache
from podtrail.enrich.k8s.convert import pod_from_api
from podtrail.enrich.k8s.stage import K8sStage
from podtrail.model.context import consistent, covered
from podtrail.model.event import new_event
from podtrail.model.fields import Kind

UID, CID = "0e6a3b1c-1111-4222-8333-444455556666", "ab" * 32
POD_CG = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope"
DOCKER_CG = "/system.slice/docker-" + "cd" * 32 + ".scope"


def _pod(labels: dict[str, str], image: str = "shop/web:1") -> Any:
    return pod_from_api({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": UID, "labels": labels,
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f", "controller": True}]},
        "spec": {"nodeName": "node-1", "serviceAccountName": "web", "containers": [{"name": "app", "image": image}]},
        "status": {"podIP": "10.1.0.7", "containerStatuses": [{"name": "app", "containerID": f"containerd://{CID}",
                                                               "imageID": "shop/web@sha256:" + "ef" * 32}]}})


class _Never(dict):  # type: ignore[type-arg]
    """A short-path cache that never answers: the stage takes its full path every time."""

    def get(self, *_a: Any) -> None:  # type: ignore[override]
        return None


def _run(short: bool) -> list[dict[str, Any]]:
    index = CgroupIndex(root=tempfile.mkdtemp(prefix="podtrail-test-cg-"))
    index.learn(11, POD_CG)
    index.learn(12, "/")
    index.learn(13, DOCKER_CG)
    cache = PodCache()
    cache.upsert(_pod({"app": "web", "tier": "front"}))
    cont = ContainerStage(index)
    k8s = K8sStage(cache, None, cluster_name="prod", node_name="node-1", labels=["app"], pending_s=0.0)
    if not short:
        cont._by_cgroup = _Never()
        k8s._known = _Never()
    out: list[dict[str, Any]] = []

    def send(n: int, cg: int, kind: Kind = Kind.SOCKET, **own: Any) -> None:
        for _ in range(n):
            ev = new_event(kind, "connect" if kind is Kind.SOCKET else "exit", pid=5, cgroup_id=cg, source="ebpf",
                           remote_address="10.0.0.1", **own)
            got: list[dict[str, Any]] = []
            cont.process(ev, got.append)
            for e in got:
                k8s.process(e, out.append)
            k8s.tick(float("inf"), out.append)

    send(3, 11)
    send(3, 12)
    send(3, 13)
    send(2, 11, container_id="ff" * 32)  # a source that names its own container
    send(2, 11, Kind.PROCESS, node_name="other")
    send(2, 12, Kind.PROCESS, node_name="other")  # host events whose source named things itself
    send(2, 12, image="x/y:1", pod_uid="u", cgroup_path="/forged")
    send(2, 12)
    cache.upsert(_pod({"app": "web2", "tier": "front"}, image="shop/web:2"))  # the watch: a new version
    send(2, 11)
    index.learn(11, DOCKER_CG)  # the id now names another cgroup
    send(2, 11)
    index.learn(11, POD_CG)
    cache.delete(UID, now=0.0)
    cache.expire(now=10_000.0)  # the pod is gone
    send(2, 11)
    for ev in out:
        assert consistent(ev) == []
        for k in ("event_id", "time", "time_ns"):
            ev.pop(k)
    return [{**ev, "_ctx": [e.values for e in covered(ev)[0]]} for ev in out]


def test_short_paths_give_the_full_paths_events() -> None:
    short, full = _run(True), _run(False)
    assert short == full
    assert [e.get("pod_labels") for e in short[:3]] == [{"app": "web"}] * 3
    assert short[19]["pod_labels"] == {"app": "web2"} and short[19]["image"] == "shop/web:2"
    assert short[21]["cgroup_path"] == DOCKER_CG and "pod_name" not in short[21]
    host = short[13:19]
    assert [e["node_name"] for e in host] == ["other", "other", "node-1", "node-1", "node-1", "node-1"]
    assert host[2]["cgroup_path"] == "/" and host[2]["image"] == "x/y:1"  # the index's path; the source's own fields kept
    assert all(e["_ctx"][-1] == {"cluster_name": "prod", "node_name": e["node_name"]} for e in host)  # the node's context
    assert short[-1]["container_id"] == CID and short[-1].get("metadata_missing") is True and "pod_name" not in short[-1]
