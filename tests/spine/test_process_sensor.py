"""The spine end to end on the real kernel: eBPF process events from real runc containers
with kubelet/runtime-shaped cgroup paths, enriched with ancestry and container identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from agent_harness import CaptureSink, start_agent
from conftest import require_core, require_runc
from containers import SHAPES, Container, run_container

from podtrail.config import Config
from podtrail.model.event import validate

EXPECTED_RUNTIME = {
    "kubelet-cgroupfs-besteffort": "kubelet", "kubelet-cgroupfs-burstable": "kubelet",
    "kubelet-cgroupfs-guaranteed": "kubelet", "containerd-systemd": "containerd",
    "crio-systemd": "cri-o", "crio-cgroupfs": "cri-o", "cri-dockerd-systemd": "cri-dockerd",
    "docker-cgroupfs": "docker", "docker-systemd": "docker", "podman": "podman", "nerdctl": "nerdctl",
}
KUBE_SHAPES = {s for s in SHAPES if s.startswith(("kubelet", "containerd", "crio", "cri-dockerd"))}


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[Any, CaptureSink]]:
    require_core()
    cfg = Config()
    cfg.sensor.sockets = False
    cfg.sensor.files = False
    cfg.sensor.argv_max_args = 16
    a, sink = start_agent(cfg)
    yield a, sink
    a.stop()


def _execs(sink: CaptureSink, marker: str, path: str | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Execs whose command line has ``marker`` (and of ``path``), excluding the `runc exec` on the host."""
    return sink.wait_for(lambda e: e["action"] == "exec" and marker in (e.get("cmdline") or "")
                         and e.get("comm") != "runc" and (path is None or e.get("path") == path), **kw)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_container_exec_carries_identity_and_ancestry(agent: tuple[Any, CaptureSink], shape: str) -> None:
    require_runc()
    _, sink = agent
    c: Container = run_container(shape)
    try:
        marker = f"mk-{shape}"
        c.exec("sh", "-c", f"/bin/echo {marker} 'two words' >/dev/null; exit 0")
        echo = _execs(sink, marker, "/bin/echo")
        assert echo, f"no exec of /bin/echo seen for {shape}"
        ev = echo[0]
        assert ev["container_id"] == c.id
        assert ev["container_runtime"] == EXPECTED_RUNTIME[shape]
        assert ev["container_id_method"] == "cgroup_id"
        assert ev["cgroup_path"] == c.cgroup_path
        assert ev["cgroup_id"] == c.cgroup2_inode()
        if shape in KUBE_SHAPES:
            assert ev["pod_uid"] == c.pod_uid
        else:
            assert "pod_uid" not in ev
        assert ev["argv"] == ["/bin/echo", marker, "two words"]
        assert ev["parent_path"] == "/bin/sh" and "sh -c" in ev["parent_cmdline"]
        assert ev["ppid"] > 0 and ev["parent_key"].startswith(f"{ev['ppid']}:")
        assert isinstance(ev.get("ancestors"), list) and ev["ancestors"], "runc exec's chain above sh is missing"
        assert validate(ev) == []
    finally:
        c.destroy()


def test_short_lived_process_keeps_full_context(agent: tuple[Any, CaptureSink]) -> None:
    """A process that exits at once: its exec and exit events still carry the container
    and its parent (answered from the events, not from /proc, which is already gone)."""
    require_runc()
    _, sink = agent
    c = run_container("containerd-systemd")
    try:
        c.exec("sh", "-c", "/bin/true short-lived-marker; exit 7", check=False)
        ex = _execs(sink, "short-lived-marker", "/bin/true")
        assert ex and ex[0]["container_id"] == c.id and ex[0]["pod_uid"] == c.pod_uid
        pid = ex[0]["pid"]
        ev_exit = sink.wait_for(lambda e: e["action"] == "exit" and e["pid"] == pid)
        assert ev_exit and ev_exit[0]["exit_code"] == 0
        assert ev_exit[0]["container_id"] == c.id and ev_exit[0]["path"] == "/bin/true"
        assert ev_exit[0]["parent_path"] == "/bin/sh"
        # its fork is folded into the exec (tests/spine/test_fork_fold.py): no event of its own
        assert ex[0]["fork_folded"] is True and ex[0]["parent_key"].startswith(f"{ex[0]['ppid']}:")
        assert not [e for e in sink.events if e["action"] == "fork" and e["pid"] == pid]
        sh_exit = sink.wait_for(lambda e: e["action"] == "exit" and e["pid"] == ex[0]["ppid"])
        assert sh_exit and sh_exit[0]["exit_code"] == 7
    finally:
        c.destroy()


def test_killed_process_exit_code(agent: tuple[Any, CaptureSink]) -> None:
    _, sink = agent
    p = subprocess.Popen(["/bin/busybox", "sleep", "30"])
    sink.wait_for(lambda e: e["action"] == "exec" and e["pid"] == p.pid)
    p.kill()
    p.wait()
    ex = sink.wait_for(lambda e: e["action"] == "exit" and e["pid"] == p.pid)
    assert ex and ex[0]["exit_code"] == 128 + 9


def test_host_exec_has_no_container_fields(agent: tuple[Any, CaptureSink]) -> None:
    _, sink = agent
    subprocess.run(["/bin/busybox", "echo", "host-marker"], check=True, capture_output=True)
    ev = _execs(sink, "host-marker")[0]
    assert not any(k in ev for k in ("container_id", "pod_uid", "container_runtime"))
    assert ev["ppid"] == os.getpid() and ev["parent_path"] == os.path.realpath(sys.executable) or ev["ppid"] == os.getpid()


def test_failed_exec_reports_errno(agent: tuple[Any, CaptureSink]) -> None:
    _, sink = agent
    with pytest.raises(FileNotFoundError):
        subprocess.run(["/nonexistent/podtrail-missing", "failed-exec-marker"])
    ev = _execs(sink, "failed-exec-marker")
    assert ev and ev[0]["result"] == -2 and ev[0]["path"] == "/nonexistent/podtrail-missing"
    assert ev[0]["argv"] == ["/nonexistent/podtrail-missing", "failed-exec-marker"]


def test_failed_execveat_reports_its_own_arguments(agent: tuple[Any, CaptureSink]) -> None:
    """A failed execveat(dirfd, name, argv, envp, flags): the sensor reads the caller's name and
    argv from the syscall's saved registers at its exit (no state kept from its entry), and
    execveat's arguments sit one register later than execve's. The name is relative to a
    directory fd, so user space makes it absolute against the cwd (what it can know)."""
    _, sink = agent
    import ctypes as ct

    libc = ct.CDLL(None, use_errno=True)
    argv = (ct.c_char_p * 4)(b"podtrail-missing-at", b"failed-execveat-marker", b"x y", None)
    envp = (ct.c_char_p * 1)(None)
    pid = os.fork()
    if pid == 0:  # a child: a successful execveat would replace the test process
        try:
            dfd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
            libc.syscall(322, dfd, b"nonexistent/podtrail-missing-at", argv, envp, 0)  # __NR_execveat (x86-64)
            os._exit(ct.get_errno())
        finally:
            os._exit(99)
    assert os.waitpid(pid, 0)[1] >> 8 == 2  # ENOENT
    ev = _execs(sink, "failed-execveat-marker")
    assert ev and ev[0]["result"] == -2 and ev[0]["pid"] == pid
    assert ev[0]["argv"] == ["podtrail-missing-at", "failed-execveat-marker", "x y"]
    assert ev[0]["path"].endswith("nonexistent/podtrail-missing-at")


def test_argv_truncation_flag(agent: tuple[Any, CaptureSink]) -> None:
    _, sink = agent
    args = ["trunc-marker"] + [f"a{i}" for i in range(40)]
    subprocess.run(["/bin/busybox", "true", *args], check=True)
    ev = _execs(sink, "trunc-marker")[0]
    assert ev["args_truncated"] is True and len(ev["argv"]) == 16
    subprocess.run(["/bin/busybox", "true", "short-marker"], check=True)
    assert _execs(sink, "short-marker")[0]["args_truncated"] is False


def test_long_argument_is_cut_to_arg_size(agent: tuple[Any, CaptureSink]) -> None:
    """A successful exec's argv is read from the new image whole; the per-argument limit
    (argv_max_arg_bytes, 256 by default: 255 bytes and the NUL) still holds."""
    _, sink = agent
    subprocess.run(["/bin/busybox", "true", "long-arg-marker", "x" * 300, "tail"], check=True)
    ev = _execs(sink, "long-arg-marker")[0]
    assert ev["argv"] == ["/bin/busybox", "true", "long-arg-marker", "x" * 255, "tail"]
    assert ev["args_truncated"] is True


def test_hostile_argv_survives_as_data(agent: tuple[Any, CaptureSink]) -> None:
    _, sink = agent
    hostile = "x\nCEF:0|evil|=|\t\\"
    subprocess.run([b"/bin/busybox", b"true", b"hostile-marker", hostile.encode(), b"\xff\xfe"], check=True)
    ev = _execs(sink, "hostile-marker")[0]
    assert ev["argv"][3] == hostile and ev["argv"][4] == "\\xff\\xfe"
    json.dumps(ev)


def test_lost_samples_are_counted() -> None:
    """A one-page ring buffer cannot take an exec sample with 8 KiB of argv: the kernel-side
    counter must see it (and podtrail must export it), never a silent loss."""
    require_core()
    import threading

    from podtrail.bpf.process import build_process_source
    from podtrail.config import SensorConfig

    src = build_process_source(SensorConfig(ringbuf_pages=1, argv_max_args=32, argv_max_arg_bytes=256))
    src.load()
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(lambda e: None, stop))
    t.start()
    try:
        subprocess.run(["/bin/busybox", "true", *(["y" * 250] * 32)], check=True)
        assert src.lost() >= 1
    finally:
        stop.set()
        t.join()
        src.close()
