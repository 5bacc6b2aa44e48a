"""Shared context entities and the fragments outputs memoize from them: never stale.

A pod's labels change (through the real `kubernetes` client watching a protocol-faithful local
API server, tests/k8s/fake_apiserver.py: no real API server exists here), a process execs
again (real process table stage), a container is gone (the pod deleted and its tombstone
expired): each time the next event's CEF, LEEF, ECS and JSON say the new truth, and every
output of an event with entities says exactly what the same event without them says.
"""

from __future__ import annotations

import json
import time
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
from podtrail.formatters.cef import format_cef
from podtrail.formatters.ecs_json import format_ecs
from podtrail.formatters.leef import format_leef
from podtrail.formatters.parse import parse_cef, parse_leef
from podtrail.model.context import EventDict, consistent
from podtrail.model.event import finalize, new_event, validate
from podtrail.model.fields import Kind
from podtrail.outputs.stdout import _native as jsonline_c
from podtrail.outputs.stdout import to_json_line
from podtrail.procs.stage import ProcessStage
from podtrail.procs.table import Proc, ProcessTable

NODE = "node-a"


def outputs(ev: dict[str, Any]) -> dict[str, Any]:
    """Every text output of an event, parsed (CEF and LEEF keys are unordered); the JSON line
    also as the C accelerator writes it, byte for byte the reference's."""
    line = to_json_line(ev)
    assert jsonline_c is None or jsonline_c.line(ev) == line.encode()
    return {"cef": parse_cef(format_cef(ev)), "leef": parse_leef(format_leef(ev)), "ecs": json.loads(format_ecs(ev)),
            "json": json.loads(line)}


def assert_same_as_plain(ev: dict[str, Any]) -> dict[str, Any]:
    """The event rendered with its entities (memo) equals the same event as a plain dict."""
    assert type(ev) is EventDict and ev.ctx, "the stages attached no context entity"
    assert consistent(ev) == [] and validate(ev) == []
    got = outputs(ev)
    assert got == outputs(dict(ev))
    return got


@pytest.fixture
def api() -> Iterator[FakeAPIServer]:
    s = FakeAPIServer()
    yield s
    s.close()


def _cfg(api: FakeAPIServer, tmp_path: Path, **kw: Any) -> KubernetesConfig:
    return KubernetesConfig(kubeconfig=api.kubeconfig(str(tmp_path / "kubeconfig")), node_name=NODE, cluster_name="prod-eu",
                            pod_logs_dir=str(tmp_path / "pods"), pending_seconds=kw.pop("pending", 0.3),
                            tombstone_seconds=kw.pop("tombstone", 600.0), enabled=True, label_allowlist=["app", "tier"])


def _wait(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _through(stages: list[Any], ev: dict[str, Any], wait: float = 5.0) -> dict[str, Any]:
    for st in stages:
        got = run_stage(st, ev, wait)
        assert got is not None, f"{type(st).__name__} kept the event"
        ev = got
    return finalize(ev)


def test_pod_label_change_and_container_gone_reach_every_output(api: FakeAPIServer, tmp_path: Path) -> None:
    require_runc()
    c = run_container("kubelet-cgroupfs-besteffort")
    api.add_pod(make_pod("web-1", "shop", c.pod_uid, NODE, container_id=c.id, labels={"app": "web", "tier": "v1"}))
    stage, stop, watcher = build_k8s_stage(_cfg(api, tmp_path, tombstone=1.0))
    stages = [ContainerStage(force_proc=True), stage]
    try:
        _wait(lambda: watcher.cache.by_container(c.id) is not None)

        def event() -> dict[str, Any]:
            return _through(stages, new_event(Kind.SOCKET, "connect", pid=c.pid, source="ebpf", remote_address="10.0.0.9",
                                              remote_port=443, transport="tcp", direction="outbound"))

        e1, e2 = event(), event()
        pod1 = next(x for x in e1.ctx if x.kind.name == "pod")
        assert next(x for x in e2.ctx if x.kind.name == "pod") is pod1, "one pod version: one shared entity"
        o1 = assert_same_as_plain(e1)
        assert o1["cef"][1]["podLabels"] == '{"app":"web","tier":"v1"}' and o1["ecs"]["orchestrator"]["resource"]["label"]["tier"] == "v1"
        assert_same_as_plain(e2)
        assert pod1.memo is not None and "cef" in pod1.memo and "ecs" in pod1.memo  # rendered once, kept
        assert jsonline_c is None or "jsonl" in pod1.memo

        api.add_pod(make_pod("web-1", "shop", c.pod_uid, NODE, container_id=c.id, labels={"app": "web", "tier": "v2"}))
        _wait(lambda: watcher.cache.by_container(c.id).labels.get("tier") == "v2")
        e3 = event()
        pod3 = next(x for x in e3.ctx if x.kind.name == "pod")
        assert pod3 is not pod1, "labels changed: a new entity version"
        o3 = assert_same_as_plain(e3)
        assert o3["cef"][1]["podLabels"] == '{"app":"web","tier":"v2"}'
        assert o3["leef"][1]["podLabels"] == '{"app":"web","tier":"v2"}'
        assert o3["ecs"]["orchestrator"]["resource"]["label"]["tier"] == "v2" and o3["json"]["pod_labels"]["tier"] == "v2"

        # the container is gone: pod deleted, its tombstone expired; nothing of it may remain
        api.delete_pod(c.pod_uid)
        _wait(lambda: watcher.cache.by_uid(c.pod_uid).deleted_at is not None)
        time.sleep(1.1)
        watcher.cache.expire()
        e4 = event()
        o4 = assert_same_as_plain(e4)
        assert e4.get("metadata_missing") is True
        for o in (o4["cef"][1], o4["leef"][1]):
            assert "cs3" not in o and "podName" not in o and "podLabels" not in o
        assert "orchestrator" not in o4["ecs"] or "resource" not in o4["ecs"]["orchestrator"] \
            or "name" not in o4["ecs"]["orchestrator"]["resource"]
        assert "pod_name" not in o4["json"]
    finally:
        stop()
        c.destroy()


def test_process_exec_again_gives_new_context_everywhere() -> None:
    """The real process stage: a socket event after each exec of the same pid carries that
    exec's program, and its children see the parent's new image."""
    t = ProcessTable()
    pid, child = 3_000_001, 3_000_002  # above pid_max: no /proc entry can answer for these
    t.by_pid[1] = Proc(1, 1, None, 0, "/sbin/init", "/sbin/init", "init")
    st = ProcessStage(t)

    def through(ev: dict[str, Any]) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        st.process(ev, out.append)
        assert out
        return finalize(out[0])

    def sock(p: int) -> dict[str, Any]:
        return through(new_event(Kind.SOCKET, "connect", pid=p, uid=0, source="ebpf", remote_address="10.0.0.1", remote_port=80,
                                 mono_ns=5))

    through(new_event(Kind.PROCESS, "fork", pid=pid, ppid=1, uid=0, mono_ns=10, source="ebpf"))
    through(new_event(Kind.PROCESS, "exec", pid=pid, ppid=1, uid=0, path="/bin/sh", cmdline="sh -c x", argv=["sh", "-c", "x"],
                      mono_ns=11, source="ebpf"))
    a, b = sock(pid), sock(pid)
    assert a.ctx[0] is b.ctx[0]
    oa = assert_same_as_plain(a)
    assert oa["cef"][1]["processPath"] == "/bin/sh" and oa["cef"][1]["cmdline"] == "sh -c x"
    through(new_event(Kind.PROCESS, "fork", pid=child, ppid=pid, uid=0, mono_ns=12, source="ebpf"))
    oc = assert_same_as_plain(sock(child))
    assert oc["cef"][1]["parentPath"] == "/bin/sh"

    through(new_event(Kind.PROCESS, "exec", pid=pid, ppid=1, uid=0, path="/usr/bin/curl", cmdline="curl http://x",
                      argv=["curl", "http://x"], mono_ns=13, source="ebpf"))
    c = sock(pid)
    assert c.ctx[0] is not a.ctx[0]
    o = assert_same_as_plain(c)
    assert o["cef"][1]["processPath"] == "/usr/bin/curl" and o["leef"][1]["processPath"] == "/usr/bin/curl"
    assert o["ecs"]["process"]["command_line"] == "curl http://x" and o["json"]["cmdline"] == "curl http://x"
    # the child's parent exec'd: its context is a new version too
    oc2 = assert_same_as_plain(sock(child))
    assert oc2["cef"][1]["parentPath"] == "/usr/bin/curl" and oc2["ecs"]["process"]["parent"]["executable"] == "/usr/bin/curl"
