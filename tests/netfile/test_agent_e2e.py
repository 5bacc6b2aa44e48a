"""Socket, file and process sensors together in the real agent: one model, one context.

A real runc container (containerd/systemd cgroup shape, so the pod UID is in the path) drops
busybox into /tmp and runs it (drift, from the process sensor's real exec and the file
sensor's real create), connects to a loopback listener this test runs, and reads a fake
service-account token: every event carries the container, the pod UID and the ancestry.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from agent_harness import CaptureSink, start_agent
from conftest import require_ebpf, require_runc
from containers import run_container

from podtrail.config import Config
from podtrail.model.event import validate


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[Any, CaptureSink]]:
    require_ebpf()
    a, sink = start_agent(Config())
    yield a, sink
    a.stop()


def test_one_context_for_every_kind(agent: tuple[Any, CaptureSink]) -> None:
    require_runc()
    _, sink = agent
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(20)
    port = srv.getsockname()[1]
    t = threading.Thread(target=lambda: srv.accept()[0].close(), daemon=True)  # lets nc finish
    t.start()
    c = run_container("containerd-systemd")
    try:
        c.rootfs.joinpath("var/run/secrets/kubernetes.io/serviceaccount/token").write_text("fake-token")
        c.exec("sh", "-c", "cp /bin/busybox /tmp/busybox && chmod 755 /tmp/busybox")
        c.exec("/tmp/busybox", "sh", "-c",
               f"echo hi | /tmp/busybox nc 127.0.0.1 {port}; cat /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null",
               check=False)
        t.join(20)
        mine = lambda e: e.get("container_id") == c.id  # noqa: E731
        drift = sink.wait_for(lambda e: mine(e) and e["action"] == "exec" and e.get("path") == "/tmp/busybox", count=2)
        conn = sink.wait_for(lambda e: mine(e) and e["event_type"] == "socket" and e["action"] == "connect"
                             and e.get("remote_port") == port)
        token = sink.wait_for(lambda e: mine(e) and e["event_type"] == "file" and e.get("sensitive")
                              and e.get("target_path", "").endswith("serviceaccount/token"))
        create = sink.wait_for(lambda e: mine(e) and e["event_type"] == "file" and e.get("target_path") == "/tmp/busybox")
    finally:
        c.destroy()
        srv.close()
    assert drift and all(e.get("drift") is True and e.get("drift_reason") == "created_in_container" for e in drift)
    assert conn and conn[0]["remote_address"] == "127.0.0.1" and conn[0]["direction"] == "outbound"
    assert token and create
    for ev in (drift[0], conn[0], token[0], create[0]):
        assert ev["pod_uid"] == c.pod_uid and ev["container_runtime"] == "containerd", ev
        assert ev.get("ppid") and ev.get("parent_path"), str({k: ev.get(k) for k in ("action", "pid", "ppid", "comm", "path", "process_key", "parent_path")})  # ancestry on socket and file events too
        assert ev.get("path"), ev  # the process's executable, from the process table
        assert validate(ev) == [], (ev, validate(ev))
    assert conn[0]["path"] == "/tmp/busybox" and "nc 127.0.0.1" in conn[0]["cmdline"]
