"""Facts captured in the kernel at the event, for short-lived processes in real runc containers
whose /bin/sh is a real dash (every command an execve). Each scenario runs N times in a
shell loop; the processes exit within a millisecond, long before anything could read /proc.
Zero wrong values are allowed: a race would show as some of the N being wrong."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import CaptureSink, process_only_config, start_agent
from conftest import require_core, require_runc
from containers import RUNC, Container, run_container

from podtrail.config import Config
from podtrail.model.event import validate

N = 200
TIOCGPTN = 0x80045430  # <asm-generic/ioctls.h>: the pts number of a pty master
TOOL = "/opt/app/tool"  # a copy of the host's /bin/true (dash's libc is in the rootfs)
LINK = "/usr/local/bin/tool-link"  # -> /opt/app/tool


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[Any, CaptureSink]]:
    require_core()
    require_runc()
    a, sink = start_agent(process_only_config())
    yield a, sink
    a.stop()


@pytest.fixture(scope="module")
def ctr(agent: tuple[Any, CaptureSink]) -> Iterator[Container]:
    c = run_container("containerd-systemd")
    tool = c.rootfs / TOOL.lstrip("/")
    tool.parent.mkdir(parents=True)
    shutil.copy2("/bin/true", tool)
    link = c.rootfs / LINK.lstrip("/")
    link.parent.mkdir(parents=True)
    link.symlink_to(TOOL)
    (c.rootfs / "var/tmp").mkdir(parents=True)
    yield c
    c.destroy()


def loop(body: str, n: int = N) -> str:
    """A dash loop running ``body`` n times; ``$i`` is the iteration."""
    return f"i=0; while [ $i -lt {n} ]; do {body}; i=$((i+1)); done"


def run_in(c: Container, script: str, *, user: str | None = None, extra_fd: int | None = None,
           **popen: Any) -> None:
    """``runc exec`` of a dash script; ``extra_fd`` is passed to it as fd 3 (--preserve-fds)."""
    opts = ["--user", user] if user else []
    if extra_fd is not None:
        opts += ["--preserve-fds", "1"]
        popen["pass_fds"] = (3,)
        popen["preexec_fn"] = lambda: os.dup2(extra_fd, 3)
    argv = [RUNC, "exec", *opts, c.id, "sh", "-c", script]
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    subprocess.run(argv, check=True, timeout=120, **popen)


def run_with_terminal(c: Container, script: str, tmp: Path) -> int:
    """``runc exec -d -t`` with a console socket, as containerd does for ``kubectl exec -it``:
    runc makes a pty in the container and sends us its master; returns the pts number. The
    master is drained until the script ends (its read fails when the last slave closes)."""
    path = str(tmp / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(30)
    proc = subprocess.Popen([RUNC, "exec", "-d", "-t", "--console-socket", path, c.id, "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, _ = srv.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    ptn = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]

    def drain() -> None:
        try:
            while os.read(master, 4096):
                pass
        except OSError:
            pass

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    try:
        assert proc.wait(60) == 0
        t.join(120)
    finally:
        os.close(master)
        conn.close()
        srv.close()
    return ptn


def execs_of(sink: CaptureSink, c: Container, marker: str, n: int = N) -> list[dict[str, Any]]:
    """The container's execs whose first argument is ``marker-<i>``, waiting for ``n``."""
    def hit(e: dict[str, Any]) -> bool:
        argv = e.get("argv") or []
        return (e["action"] == "exec" and e.get("container_id") == c.id and len(argv) > 1
                and argv[1].startswith(f"{marker}-"))

    evs = sink.wait_for(hit, timeout=60, count=n)
    assert len(evs) == n, f"{len(evs)} of {n} execs of {marker} seen"
    return evs


def wrong(evs: list[dict[str, Any]], **want: Any) -> list[tuple[int, str, Any]]:
    """(pid, field, value) of every event whose field differs from what is wanted."""
    return [(e["pid"], k, e.get(k)) for e in evs for k, v in want.items() if e.get(k) != v]


def test_relative_exec_after_cd(agent: tuple[Any, CaptureSink], ctr: Container) -> None:
    _, sink = agent
    run_in(ctr, loop("(cd /opt/app && ./tool rel-$i)"))
    evs = execs_of(sink, ctr, "rel")
    assert wrong(evs, path=TOOL, exe_path=TOOL, cwd="/opt/app", comm="tool", result=0) == []
    assert all(validate(e) == [] for e in evs)


def test_exec_through_a_symlink_and_cwd_after_cd(agent: tuple[Any, CaptureSink], ctr: Container) -> None:
    _, sink = agent
    run_in(ctr, loop(f"(cd /var/tmp && {LINK} lnk-$i)"))
    evs = execs_of(sink, ctr, "lnk")
    ino = os.stat(ctr.rootfs / TOOL.lstrip("/"))
    assert wrong(evs, path=LINK, exe_path=TOOL, cwd="/var/tmp", exe_inode=ino.st_ino, exe_dev=ino.st_dev) == []
    # the busybox applets: the name called stays, the file run is busybox
    run_in(ctr, "cd /tmp && /bin/mkfifo --help; ../bin/basename x")
    mk = sink.wait_for(lambda e: e["action"] == "exec" and e.get("container_id") == ctr.id and e.get("comm") == "mkfifo")
    assert mk and mk[0]["path"] == "/bin/mkfifo" and mk[0]["exe_path"] == "/bin/busybox" and mk[0]["cwd"] == "/tmp"
    bn = sink.wait_for(lambda e: e["action"] == "exec" and e.get("container_id") == ctr.id and e.get("comm") == "basename")
    assert bn and bn[0]["path"] == "/bin/basename" and bn[0]["exe_path"] == "/bin/busybox"


def test_container_only_uid_is_named_from_the_container_passwd(agent: tuple[Any, CaptureSink], ctr: Container) -> None:
    """uid 4242 exists only in the container's passwd, uid 1000 is `app` there (the host may
    call it something else): names come from the container's root, never the host's."""
    _, sink = agent
    for uid, name, marker in ((4242, "ctronly", "uidc"), (1000, "app", "uida")):
        run_in(ctr, loop(f"{TOOL} {marker}-$i"), user=f"{uid}:{uid}")
        evs = execs_of(sink, ctr, marker)
        assert wrong(evs, uid=uid, euid=uid, user=name, path=TOOL) == []


@pytest.mark.parametrize("kind", ["null", "pipe", "socket", "tty", "file"])
def test_stdin_kind_of_short_lived_processes(agent: tuple[Any, CaptureSink], ctr: Container, kind: str,
                                            tmp_path: Path) -> None:
    _, sink = agent
    marker = f"in{kind}"
    popen: dict[str, Any] = {}
    closers: list[Any] = []
    want: dict[str, Any] = {"stdin": kind}
    if kind == "null":
        body = f"{TOOL} {marker}-$i </dev/null"
    elif kind == "pipe":
        body = f"echo x | {TOOL} {marker}-$i"
    elif kind == "file":
        body = f"{TOOL} {marker}-$i </etc/passwd"
    elif kind == "socket":  # a socket passed into the container as fd 3, made stdin (a reverse shell's shape)
        a, b = socket.socketpair()
        closers += [a, b]
        popen["extra_fd"] = b.fileno()
        body = f"{TOOL} {marker}-$i <&3"
    else:  # runc's own terminal (terminal: true): a pts of the container's devpts, its controlling tty
        body = f"{TOOL} {marker}-$i"
        ptn = run_with_terminal(ctr, loop(body), tmp_path)
        want.update(stdout="tty", stderr="tty", tty=f"pts/{ptn}")
        popen["skip"] = True
    try:
        if not popen.pop("skip", False):
            run_in(ctr, loop(body), **popen)
    finally:
        for x in closers:
            x.close() if hasattr(x, "close") else os.close(x)
    evs = execs_of(sink, ctr, marker)
    assert wrong(evs, **want) == []


def test_exec_from_dev_shm_and_memfd_is_drift_decided_in_the_kernel(agent: tuple[Any, CaptureSink], ctr: Container) -> None:
    _, sink = agent
    # runc mounts /dev/shm noexec; a workload that wants it otherwise gets it otherwise
    subprocess.run(["nsenter", "-t", str(ctr.pid), "-m", "-p", "/bin/mount", "-o", "remount,exec", "/dev/shm"], check=True)
    run_in(ctr, f"/bin/cp {TOOL} /dev/shm/t && /dev/shm/t shm-0")
    ev = execs_of(sink, ctr, "shm", 1)[0]
    assert ev["path"] == ev["exe_path"] == "/dev/shm/t"
    assert ev["drift"] is True and ev["drift_reason"] == "dev_shm"
    # a memfd exec (fexecve): the file is on no mount of the process's root
    code = ("import os; fd = os.memfd_create('podtrail-mem'); os.write(fd, open('/bin/true', 'rb').read()); "
            "os.execve(fd, ['podtrail-mem', 'memfd-marker'], {})")
    subprocess.run(["/usr/bin/python3", "-c", code], check=True)
    mem = sink.wait_for(lambda e: e["action"] == "exec" and (e.get("argv") or [""])[1:] == ["memfd-marker"])
    assert mem, "no memfd exec seen"
    assert mem[0]["drift"] is True and mem[0]["drift_reason"] == "memfd"
    assert mem[0]["exe_outside"] is True and mem[0]["exe_path"].startswith("/memfd:podtrail-mem")


def test_runtime_setup_is_marked_and_the_workload_is_not(agent: tuple[Any, CaptureSink]) -> None:
    """runc's init stages (forks/exits named runc:[N:...]) carry runtime_setup; the workload's
    first exec (the same pid as runc:[2:INIT]) does not."""
    _, sink = agent
    c = run_container("kubelet-cgroupfs-burstable", args=("sleep", "3600"))
    try:
        first = sink.wait_for(lambda e: e["action"] == "exec" and e.get("container_id") == c.id)
        assert first and first[0]["path"] == "/bin/sleep" and first[0]["exe_path"] == "/bin/busybox"
        assert "runtime_setup" not in first[0] and first[0]["cwd"] == "/"
        setup = [e for e in sink.events if e.get("container_id") == c.id and str(e.get("comm", "")).startswith("runc:[")]
        assert setup, "no runc init stage seen in the container's cgroup"
        assert all(e.get("runtime_setup") is True for e in setup)
    finally:
        c.destroy()


def test_credentials_and_namespaces(agent: tuple[Any, CaptureSink], ctr: Container) -> None:
    _, sink = agent
    run_in(ctr, f"{TOOL} ns-0")
    ev = execs_of(sink, ctr, "ns", 1)[0]
    pid = ctr.pid  # the container's init: same namespaces as any process runc exec starts
    for field, ns in (("mnt_ns", "mnt"), ("pid_ns", "pid"), ("net_ns", "net")):
        assert ev[field] == os.stat(f"/proc/{pid}/ns/{ns}").st_ino, field
    assert ev["pid_ns"] != os.stat("/proc/self/ns/pid").st_ino
    cap_eff = int(next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("CapEff:")), 16)
    assert ev["cap_effective"] == cap_eff  # runc's default set, not a guess
    assert ev["euid"] == 0 and ev["auid"] == 4294967295
    assert ev["process_key"] == f"{ev['pid']}:{ev['start_ns']}"


def test_containers_only_filters_host_tasks_in_the_kernel(ctr: Container) -> None:
    """containers_only: a host exec never reaches user space; a container exec does."""
    import threading

    from podtrail.bpf.process import build_process_source
    from podtrail.config import SensorConfig

    src = build_process_source(SensorConfig(containers_only=True))
    src.load()
    out: list[dict[str, Any]] = []
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(out.append, stop))
    t.start()
    try:
        subprocess.run(["/bin/busybox", "true", "host-only-marker"], check=True)
        run_in(ctr, f"{TOOL} ctr-only-marker")
        deadline = 100
        while deadline and not any("ctr-only-marker" in (e.get("argv") or []) for e in out):
            stop.wait(0.05)
            deadline -= 1
    finally:
        stop.set()
        t.join(10)
        src.close()
    assert any("ctr-only-marker" in (e.get("argv") or []) for e in out)
    assert not any("host-only-marker" in (e.get("argv") or []) for e in out)
    assert all(e.get("pid_ns") != os.stat("/proc/self/ns/pid").st_ino for e in out if e["action"] == "exec")


def test_user_names_for_a_container_started_before_the_agent(ctr: Container) -> None:
    """A new agent never saw this container's processes start; its short-lived processes exit
    before any lookup: the name still comes from the container's passwd (through a live
    process of that mount namespace), not the host's."""
    cfg = Config()
    cfg.sensor.sockets = cfg.sensor.files = False
    cfg.osquery.api_socket = ""  # the module's agent serves the default socket (one agent per socket)
    a, sink = start_agent(cfg)
    try:
        for i in range(5):  # no shell: the tool is the only process, and it exits at once
            subprocess.run([RUNC, "exec", "--user", "1000:1000", ctr.id, TOOL, f"late-{i}"], check=True, timeout=60)
        evs = execs_of(sink, ctr, "late", 5)
    finally:
        a.stop()
    assert wrong(evs, uid=1000, user="app") == []
