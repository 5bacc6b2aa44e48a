"""The container and Kubernetes stages' short paths (one lookup by cgroup id or container id)
give exactly what their full paths give, also after a cgroup id is remapped, a pod changes
(a new PodInfo from the watch) or the pod is gone. The pod cache is filled directly with
PodInfo objects made by the real converter from API-shaped pods (no API server exists here).
The C twin of both short paths (podtrail/enrich/_known.c) gives the same events again, on
this story and on hypothesis-generated streams."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail.enrich import container as container_mod
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


NATIVE = container_mod._known
MODES = ["python", "native"] if NATIVE is not None else ["python"]
# One step of a stream: events (count, cgroup id, kind, own fields), or a change between them.
STORY: list[tuple[Any, ...]] = [
    ("send", 3, 11, Kind.SOCKET, {}), ("send", 3, 12, Kind.SOCKET, {}), ("send", 3, 13, Kind.SOCKET, {}),
    ("send", 2, 11, Kind.SOCKET, {"container_id": "ff" * 32}),  # a source that names its own container
    ("send", 2, 11, Kind.PROCESS, {"node_name": "other"}),
    ("send", 2, 12, Kind.PROCESS, {"node_name": "other"}),  # host events whose source named things itself
    ("send", 2, 12, Kind.SOCKET, {"image": "x/y:1", "pod_uid": "u", "cgroup_path": "/forged"}),
    ("send", 2, 12, Kind.SOCKET, {}),
    ("relabel", "web2", "shop/web:2"),  # the watch: a new version
    ("send", 2, 11, Kind.SOCKET, {}),
    ("remap", DOCKER_CG), ("send", 2, 11, Kind.SOCKET, {}),  # the id now names another cgroup
    ("remap", POD_CG), ("gone",), ("send", 2, 11, Kind.SOCKET, {}),  # the pod is gone
]


def _run(short: bool | str, steps: list[tuple[Any, ...]] = STORY, taken: list[bool] | None = None) -> list[dict[str, Any]]:
    """The steps through fresh stages: ``short`` False, the full paths only; True or "python",
    the Python short paths; "native", the C twin in front of them (``taken``: its answers)."""
    index = CgroupIndex(root=tempfile.mkdtemp(prefix="podtrail-test-cg-"))
    index.learn(11, POD_CG)
    index.learn(12, "/")
    index.learn(13, DOCKER_CG)
    cache = PodCache()
    cache.upsert(_pod({"app": "web", "tier": "front"}))
    cont = ContainerStage(index)
    k8s = K8sStage(cache, None, cluster_name="prod", node_name="node-1", labels=["app"], pending_s=0.0)
    if short == "native":
        assert NATIVE is not None and taken is not None
        cc, kc = NATIVE.container, NATIVE.pod
        cont._c = lambda s, ev, n: taken.append(cc(s, ev, n)) or taken[-1]  # type: ignore[func-returns-value]
        k8s._c = lambda s, ev, n: taken.append(kc(s, ev, n)) or taken[-1]  # type: ignore[func-returns-value]
    else:
        cont._c = k8s._c = None
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

    for step in steps:
        if step[0] == "send":
            send(step[1], step[2], step[3], **step[4])
        elif step[0] == "relabel":
            cache.upsert(_pod({"app": step[1], "tier": "front"}, image=step[2]))
        elif step[0] == "remap":
            index.learn(11, step[1])
        elif step[0] == "gone":
            cache.delete(UID, now=0.0)
            cache.expire(now=10_000.0)
        else:
            cache.upsert(_pod({"app": "web", "tier": "front"}))  # back (a new PodInfo)
    for ev in out:
        assert consistent(ev) == []
        for k in ("event_id", "time", "time_ns"):
            ev.pop(k)
    return [{**ev, "_ctx": [e.values for e in covered(ev)[0]]} for ev in out]


@pytest.mark.parametrize("mode", MODES)
def test_short_paths_give_the_full_paths_events(mode: str) -> None:
    taken: list[bool] = []
    short, full = _run(mode, STORY, taken), _run(False)
    assert short == full
    if mode == "native":
        assert True in taken and False in taken
    assert [e.get("pod_labels") for e in short[:3]] == [{"app": "web"}] * 3
    assert short[19]["pod_labels"] == {"app": "web2"} and short[19]["image"] == "shop/web:2"
    assert short[21]["cgroup_path"] == DOCKER_CG and "pod_name" not in short[21]
    host = short[13:19]
    assert [e["node_name"] for e in host] == ["other", "other", "node-1", "node-1", "node-1", "node-1"]
    assert host[2]["cgroup_path"] == "/" and host[2]["image"] == "x/y:1"  # the index's path; the source's own fields kept
    assert all(e["_ctx"][-1] == {"cluster_name": "prod", "node_name": e["node_name"]} for e in host)  # the node's context
    assert short[-1]["container_id"] == CID and short[-1].get("metadata_missing") is True and "pod_name" not in short[-1]


OWN = st.sampled_from([{}] * 6 + [{"container_id": "ff" * 32}, {"container_id": ""}, {"node_name": "other"},
                                   {"image": "x/y:1"}, {"pod_uid": "u"}, {"cgroup_path": "/forged"},
                                   {"container_id_method": "proc_cgroup"}, {"pod_labels": {"a": "b"}},
                                   {"container_id": 5}, {"container_id": b"ab"}, {"container_id": None}, {"node_name": None},
                                   {"event_type": None}, {"cgroup_path": "\udcff"}])
STEP = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 3), st.sampled_from([11, 11, 12, 13, 99]),
              st.sampled_from([Kind.SOCKET, Kind.PROCESS, Kind.FILE]), OWN),
    st.tuples(st.just("relabel"), st.sampled_from(["web", "web2", "api"]), st.sampled_from(["shop/web:1", "shop/web:2"])),
    st.tuples(st.just("remap"), st.sampled_from([POD_CG, DOCKER_CG, "/"])),
    st.tuples(st.just("gone")),
    st.tuples(st.just("back")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=25))
def test_short_paths_give_the_full_paths_events_on_streams(steps: list[tuple[Any, ...]]) -> None:
    """Random streams of events of known, remapped and unknown cgroups, with the sources' own
    fields, between pod changes: the Python and the C short paths give the full paths' events."""
    full = _run(False, steps)
    assert _run("python", steps) == full
    if NATIVE is not None:
        assert _run("native", steps, []) == full
