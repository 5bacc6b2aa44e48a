"""Kubernetes context end to end: the real `kubernetes` client against a protocol-faithful
local API server (tests/k8s/fake_apiserver.py; no real API server exists here), and real
runc containers whose container ids appear in the served pod statuses."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import run_stage
from conftest import require_runc
from containers import run_container
from fake_apiserver import FakeAPIServer, make_pod

from podtrail.config import KubernetesConfig
from podtrail.enrich.container import ContainerStage
from podtrail.enrich.k8s import build_k8s_stage
from podtrail.enrich.k8s.convert import owner_to_workload
from podtrail.model.event import new_event, validate
from podtrail.model.fields import Kind

NODE = "node-a"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeAPIServer]:
    s = FakeAPIServer()
    yield s
    s.close()


def _cfg(api: FakeAPIServer | None, tmp_path: Path, **kw: Any) -> KubernetesConfig:
    kc = api.kubeconfig(str(tmp_path / "kubeconfig")) if api else str(tmp_path / "missing-kubeconfig")
    return KubernetesConfig(kubeconfig=kc, node_name=NODE, cluster_name="prod-eu", pod_logs_dir=str(tmp_path / "pods"),
                            pending_seconds=kw.pop("pending", 2.0), tombstone_seconds=kw.pop("tombstone", 600.0),
                            enabled=api is not None, **kw)


def _event_from(container: Any) -> dict[str, Any]:
    """An event of the container's real process, identified through its real /proc/<pid>/cgroup."""
    ev = new_event(Kind.PROCESS, "exec", pid=container.pid, source="ebpf", path="/bin/sleep")
    ContainerStage(force_proc=True).apply(ev)
    assert ev["container_id"] == container.id
    return ev


def _wait(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_pod_created_after_first_process_waits_in_pending_queue(api: FakeAPIServer, tmp_path: Path) -> None:
    require_runc()
    c = run_container("kubelet-cgroupfs-besteffort")
    stage, stop, watcher = build_k8s_stage(_cfg(api, tmp_path, label_allowlist=["app"]))
    try:
        _wait(lambda: watcher.reachable)
        ev = _event_from(c)
        out: list[dict[str, Any]] = []
        stage.process(ev, out.append)
        assert out == [], "an event of a not-yet-known container must wait, not go out bare"
        rs = "web-7d9f8c6b5"
        api.add_owner("ReplicaSet", "shop", rs, ("Deployment", "web"))
        api.add_pod(make_pod("web-7d9f8c6b5-x2x", "shop", c.pod_uid, NODE, container_id=c.id, owner=("ReplicaSet", rs),
                             labels={"app": "web", "secret-label": "x"}, privileged=True))
        deadline = time.monotonic() + 5
        while not out and time.monotonic() < deadline:
            time.sleep(0.05)
            stage.tick(time.monotonic(), out.append)
        assert out, "released once the watch delivered the pod"
        e = out[0]
        assert (e["pod_name"], e["namespace"], e["container_name"], e["metadata_source"]) == ("web-7d9f8c6b5-x2x", "shop", "app", "api")
        assert (e["workload_kind"], e["workload_name"]) == ("Deployment", "web")
        assert e["pod_labels"] == {"app": "web"} and e["privileged"] is True and e["image_digest"].startswith("sha256:")
        assert e["cluster_name"] == "prod-eu" and e["node_name"] == NODE and e["pod_ips"] == ["10.1.0.5"]
        assert "metadata_missing" not in e and validate(e) == []
        assert any("fieldSelector=spec.nodeName%3Dnode-a" in r for r in api.requests)
    finally:
        stop()
        c.destroy()


def test_deleted_pod_resolves_until_tombstone_expires(api: FakeAPIServer, tmp_path: Path) -> None:
    require_runc()
    c = run_container("containerd-systemd")
    api.add_pod(make_pod("job-1", "batch", c.pod_uid, NODE, container_id=c.id, owner=("Job", "backup-29145600")))
    stage, stop, watcher = build_k8s_stage(_cfg(api, tmp_path, pending=0.3, tombstone=1.0))
    try:
        _wait(lambda: watcher.cache.by_container(c.id) is not None)
        api.delete_pod(c.pod_uid)
        _wait(lambda: watcher.cache.by_uid(c.pod_uid).deleted_at is not None)
        e = run_stage(stage, _event_from(c))
        assert e and e["pod_name"] == "job-1" and (e["workload_kind"], e["workload_name"]) == ("CronJob", "backup")
        time.sleep(1.1)
        watcher.cache.expire()
        e2 = run_stage(stage, _event_from(c))
        assert e2 and e2.get("metadata_missing") is True and "pod_name" not in e2
    finally:
        stop()
        c.destroy()


def test_api_down_at_start_uses_pod_logs_then_api(api: FakeAPIServer, tmp_path: Path) -> None:
    require_runc()
    c = run_container("kubelet-cgroupfs-burstable")
    (tmp_path / "pods" / f"ops_agent-x1_{c.pod_uid}" / "agent").mkdir(parents=True)
    api.down = True
    stage, stop, watcher = build_k8s_stage(_cfg(api, tmp_path))
    try:
        _wait(lambda: bool(watcher.last_error))
        e = run_stage(stage, _event_from(c), wait=1)
        assert e and (e["namespace"], e["pod_name"], e["container_name"], e["metadata_source"]) == ("ops", "agent-x1", "agent", "pod_logs")
        api.add_pod(make_pod("agent-x1", "ops", c.pod_uid, NODE, container_id=c.id, container="agent", owner=("DaemonSet", "agent")))
        api.down = False
        _wait(lambda: watcher.cache.by_container(c.id) is not None, timeout=20)
        e = run_stage(stage, _event_from(c))
        assert e and e["metadata_source"] == "api" and (e["workload_kind"], e["workload_name"]) == ("DaemonSet", "agent")
    finally:
        stop()
        c.destroy()


def test_410_gone_relists_and_dropped_watch_resumes(api: FakeAPIServer, tmp_path: Path) -> None:
    stage, stop, watcher = build_k8s_stage(_cfg(api, tmp_path))
    try:
        _wait(lambda: watcher.reachable)
        a, b, d = (str(uuid.uuid4()) for _ in range(3))
        api.add_pod(make_pod("a", "ns", a, NODE, container_id="a" * 64))
        _wait(lambda: watcher.cache.by_uid(a) is not None)
        api.disconnect_watches()  # mid-stream drop: resume from the last resourceVersion
        api.add_pod(make_pod("b", "ns", b, NODE, container_id="b" * 64))
        _wait(lambda: watcher.cache.by_uid(b) is not None)
        api.add_pod(make_pod("other-node", "ns", d, "node-b", container_id="d" * 64))
        api.compact()  # history gone: the next resume gets 410 and must relist
        api.disconnect_watches()
        api.add_pod(make_pod("a", "ns", a, NODE, container_id="c" * 64))  # a restarted its container
        _wait(lambda: watcher.cache.by_container("c" * 64) is not None)
        assert watcher.cache.by_uid(d) is None, "pods of other nodes are not ours"
        assert any("resourceVersion=" in r and "watch=" in r for r in api.requests)
    finally:
        stop()


def test_container_outside_kubernetes_is_not_flagged_missing(tmp_path: Path) -> None:
    stage, stop, _ = build_k8s_stage(_cfg(None, tmp_path))
    ev = new_event(Kind.PROCESS, "exec", pid=1, container_id="e" * 64, container_runtime="docker")
    e = run_stage(stage, ev, wait=0.2)
    assert e and "metadata_missing" not in e and e["cluster_name"] == "prod-eu"
    host = run_stage(stage, new_event(Kind.PROCESS, "exec", pid=1), wait=0.2)
    assert host and host["cluster_name"] == "prod-eu" and host["node_name"] == NODE
    stop()


def test_workload_naming_fallback_when_owner_cannot_be_fetched() -> None:
    assert owner_to_workload("ReplicaSet", "api-6c5f7d9b8", None, {"pod-template-hash": "6c5f7d9b8"}) == ("Deployment", "api")
    assert owner_to_workload("ReplicaSet", "plain-rs", None, {}) == ("ReplicaSet", "plain-rs")
    assert owner_to_workload("Job", "nightly-29145600", None, {}) == ("CronJob", "nightly")
    assert owner_to_workload("Job", "one-off", None, {}) == ("Job", "one-off")
    assert owner_to_workload("StatefulSet", "db", None, {}) == ("StatefulSet", "db")
    assert owner_to_workload("ReplicaSet", "x-1", lambda k, n: ("Deployment", "real"), {}) == ("Deployment", "real")


def test_remote_ip_resolves_to_the_pod_that_held_it_then(api: FakeAPIServer, tmp_path: Path) -> None:
    """An IP reused by a new pod: a socket event resolves by its own time; service IPs too."""
    stage, stop, watcher = build_k8s_stage(_cfg(api, tmp_path))
    try:
        _wait(lambda: watcher.reachable)
        old_uid, new_uid = str(uuid.uuid4()), str(uuid.uuid4())
        api.add_service("payments", "shop", "10.96.0.20")
        api.add_pod(make_pod("cache-old", "shop", old_uid, NODE, ip="10.1.2.3", owner=("StatefulSet", "cache")))
        _wait(lambda: watcher.cache.by_uid(old_uid) is not None)
        t_old = time.time_ns()
        time.sleep(0.05)
        api.delete_pod(old_uid)
        _wait(lambda: watcher.cache.by_uid(old_uid).deleted_at is not None)
        time.sleep(0.05)
        api.add_pod(make_pod("worker-new", "jobs", new_uid, NODE, ip="10.1.2.3", owner=("DaemonSet", "worker")))
        _wait(lambda: watcher.cache.by_uid(new_uid) is not None)
        t_new = time.time_ns()

        def sock(ip: str, t: int) -> dict[str, Any]:
            ev = new_event(Kind.SOCKET, "connect", time_ns=t, pid=1, remote_address=ip, remote_port=443, direction="outbound")
            out = run_stage(stage, ev, wait=0.2)
            assert out is not None
            return out

        then, now = sock("10.1.2.3", t_old), sock("10.1.2.3", t_new)
        assert (then["remote_pod"], then["remote_namespace"], then["remote_workload"]) == ("cache-old", "shop", "StatefulSet/cache")
        assert (now["remote_pod"], now["remote_namespace"], now["remote_workload"]) == ("worker-new", "jobs", "DaemonSet/worker")
        _wait(lambda: watcher.cache is not None and sock("10.96.0.20", time.time_ns()).get("remote_service") == "payments")
        assert "remote_pod" not in sock("192.0.2.1", time.time_ns())
    finally:
        stop()


def test_doctor_reports_reachability_and_missing_rbac(api: FakeAPIServer, tmp_path: Path) -> None:
    from podtrail.enrich.k8s.doctor import check_kubernetes

    cfg = _cfg(api, tmp_path)
    assert check_kubernetes(cfg).ok
    api.denied = {("replicasets", "get"), ("services", "watch")}
    c = check_kubernetes(cfg)
    assert not c.ok and "get replicasets" in c.detail and "watch services" in c.detail
    api.down = True
    assert "unreachable" in check_kubernetes(cfg).detail
    assert "no API configured" in check_kubernetes(_cfg(None, tmp_path)).detail


def test_pod_from_api_dict_form_and_container_id_prefixes() -> None:
    from podtrail.enrich.k8s.convert import pod_from_api, strip_container_id

    p = make_pod("p", "ns", "u1", NODE, container_id="f" * 64, owner=("ReplicaSet", "p-abc"), labels={"pod-template-hash": "abc"})
    p["status"]["initContainerStatuses"] = [{"name": "init", "containerID": "cri-o://" + "1" * 64}]
    p["status"]["ephemeralContainerStatuses"] = [{"name": "debug", "containerID": "docker://" + "2" * 64}]
    info = pod_from_api(p)
    assert set(info.containers) == {"f" * 64, "1" * 64, "2" * 64}
    assert (info.workload_kind, info.workload_name, info.pod_ips) == ("Deployment", "p", ["10.1.0.5"])
    assert strip_container_id("containerd://" + "a" * 63) == "" and strip_container_id(None) == ""


def test_ebpf_events_carry_pod_context_end_to_end(api: FakeAPIServer, tmp_path: Path) -> None:
    """The whole agent: real eBPF exec events of a real container, pod context from the API."""
    from agent_harness import start_agent
    from conftest import require_ebpf

    from podtrail.config import Config

    require_ebpf()
    require_runc()
    c = run_container("containerd-systemd")
    api.add_owner("Job", "batch", "report-29145600", ("CronJob", "report"))
    api.add_pod(make_pod("report-29145600-abc", "batch", c.pod_uid, NODE, container_id=c.id, container="report",
                         owner=("Job", "report-29145600"), labels={"app": "report"}))
    cfg = Config()
    cfg.kubernetes = _cfg(api, tmp_path)
    cfg.sensor.sockets = cfg.sensor.files = False
    agent, sink = start_agent(cfg)
    try:
        c.exec("/bin/busybox", "true", "k8s-e2e-marker")
        hits = sink.wait_for(lambda e: e["action"] == "exec" and "k8s-e2e-marker" in e.get("cmdline", "") and e.get("comm") != "runc")
        assert hits, "no exec event"
        e = hits[0]
        assert (e["pod_name"], e["namespace"], e["container_name"]) == ("report-29145600-abc", "batch", "report")
        assert (e["workload_kind"], e["workload_name"], e["cluster_name"]) == ("CronJob", "report", "prod-eu")
        assert e["container_id"] == c.id and e["metadata_source"] == "api" and validate(e) == []
    finally:
        agent.stop()
        c.destroy()
