"""Socket and file sensors on the real kernel, with real runc containers.

The BPF programs are compiled once for the session (``sensors``) and keep running; each test
makes its own container (or subprocess) and looks for events by cgroup id or pid. The test
process itself is the agent here, so the kernel filter drops its own syscalls: traffic comes
from containers and from child processes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import require, require_runc
from containers import RUNC, install_binary, run_container
from nf_harness import TEST_CFG, WATCHED, Sensors, netns, sensors_fixture  # noqa: F401 - the fixture

from podtrail.config import SensorConfig


def _in(cg: int):
    return lambda e: e.get("cgroup_id") == cg


def _listener(family: int = socket.AF_INET, addr: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(family)
    s.bind((addr, 0))
    s.listen()
    s.settimeout(15)
    return s


def _marker(sensors: Sensors, cexec, name: str, cg: int) -> None:
    """Create a watched file and wait for its event: everything the container did before has
    been through the kernel and the ring buffer by then (one reader per program, in order)."""
    cexec("sh", "-c", f"mkdir -p {WATCHED} && echo > {WATCHED}{name}")
    ev = sensors.collector.wait_for(lambda e: _in(cg)(e) and e.get("target_path") == f"{WATCHED}{name}")
    assert ev is not None, "marker file event never arrived"


# ---- sockets -------------------------------------------------------------------------------------


def test_container_connects_to_loopback_listener(sensors: Sensors, containers: list) -> None:
    require_runc()
    srv = _listener()
    port = srv.getsockname()[1]
    c = run_container()
    containers.append(c)
    cg = c.cgroup2_inode()
    client = subprocess.Popen([RUNC, "exec", c.id, "sh", "-c", f"echo hi | nc 127.0.0.1 {port}"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, peer = srv.accept()
    conn.recv(16)
    conn.close()
    client.wait(15)
    srv.close()

    ev = sensors.collector.wait_for(lambda e: _in(cg)(e) and e["action"] == "connect" and e.get("remote_port") == port)
    assert ev is not None
    assert ev["remote_address"] == "127.0.0.1"
    assert ev["local_address"] == "127.0.0.1" and ev["local_port"] == peer[1]  # both ends
    assert ev["result"] == 0 and ev["outcome"] == "success"
    assert (ev["transport"], ev["protocol"], ev["family"], ev["direction"]) == ("tcp", 6, 2, "outbound")
    assert ev["comm"] == "nc" and ev["source"] == "ebpf"
    assert (ev["src_port"], ev["dst_port"]) == (peer[1], port)

    # a refused connect carries the errno
    closed = _listener()
    cport = closed.getsockname()[1]
    closed.close()
    c.exec("sh", "-c", f"nc 127.0.0.1 {cport} </dev/null", check=False)
    bad = sensors.collector.wait_for(lambda e: _in(cg)(e) and e["action"] == "connect" and e.get("remote_port") == cport)
    assert bad is not None and bad["result"] == -111 and bad["outcome"] == "failure"


def test_container_listens_and_accepts_ipv6_and_ipv4(sensors: Sensors, containers: list) -> None:
    """In its own network namespace (made here), the container serves and connects to itself
    over ::1 and 127.0.0.1; busybox nc accepts with a NULL sockaddr (peer from /proc)."""
    require_runc()
    with netns() as ns:
        c = run_container(netns=ns)
        containers.append(c)
        cg = c.cgroup2_inode()
        for i, dst in enumerate(("::1", "127.0.0.1")):
            port = 7001 + i
            server = subprocess.Popen([RUNC, "exec", c.id, "nc", "-l", "-p", str(port)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert sensors.collector.wait_for(lambda e, p=port: _in(cg)(e) and e["action"] == "listen" and e.get("local_port") == p)
            c.exec("sh", "-c", f"echo hi | nc {dst} {port}", check=False)
            server.wait(15)

            got = {a: sensors.collector.wait_for(lambda e, a=a, p=port: _in(cg)(e) and e["action"] == a and p in (e.get("local_port"), e.get("remote_port")))
                   for a in ("bind", "listen", "accept", "connect")}
            assert all(got.values()), {a: bool(v) for a, v in got.items()}
            bind, listen, acc, conn = got["bind"], got["listen"], got["accept"], got["connect"]
            assert bind["local_port"] == port and bind["direction"] == "listening" and bind["result"] == 0
            assert listen["family"] == 10 and listen["transport"] == "tcp"
            assert conn["remote_address"] == dst and conn["result"] == 0
            assert acc["direction"] == "inbound" and acc["result"] >= 0 and acc["local_port"] == port
            # the two ends agree
            assert acc["remote_port"] == conn["local_port"]
            want_peer = "::1" if dst == "::1" else "::ffff:127.0.0.1"
            assert acc["remote_address"] == want_peer
            assert conn["family"] == (10 if dst == "::1" else 2)


def test_unix_sockets_and_runtime_socket(sensors: Sensors, tmp_path) -> None:
    """Unix bind/listen/accept/connect from a child process, an abstract name, and a connect
    to a container runtime socket path (flagged sensitive, attempted even if absent)."""
    path = str(tmp_path / "ptnf.sock")
    code = f"""
import socket, os
s = socket.socket(socket.AF_UNIX); s.bind({path!r}); s.listen()
c = socket.socket(socket.AF_UNIX); c.connect({path!r}); a, _ = s.accept()
ab = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); ab.bind("\\0ptnf-abstract")
r = socket.socket(socket.AF_UNIX)
try: r.connect("/run/containerd/containerd.sock")
except OSError: pass
"""
    child = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=30)
    assert child.returncode == 0
    col = sensors.collector

    def mine(action: str, sp: str):
        return col.wait_for(lambda e: e["action"] == action and e.get("socket_path") == sp and e.get("comm", "").startswith("python"))

    for action in ("bind", "listen", "connect"):
        ev = mine(action, path)
        assert ev is not None, action
        assert (ev["family"], ev["transport"], ev["result"]) == (1, "unix", 0)
    acc = col.wait_for(lambda e: e["action"] == "accept" and e["family"] == 1 and e.get("comm", "").startswith("python"))
    assert acc is not None and acc["transport"] == "unix"
    ab = mine("bind", "@ptnf-abstract")
    assert ab is not None
    rt = mine("connect", "/run/containerd/containerd.sock")
    assert rt is not None and rt["sensitive"] == "runtime_socket"


# ---- files ---------------------------------------------------------------------------------------


def test_sensitive_reads_in_container(sensors: Sensors, containers: list) -> None:
    require_runc()
    c = run_container()
    containers.append(c)
    (c.rootfs / "var/run/secrets/kubernetes.io/serviceaccount/token").write_text("fake-token")
    cg = c.cgroup2_inode()
    c.exec("sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token /etc/shadow /etc/passwd >/dev/null; "
           "cd /etc && cat shadow >/dev/null")
    col = sensors.collector
    tok = col.wait_for(lambda e: _in(cg)(e) and e["action"] == "read" and e.get("sensitive") == "sa_token")
    assert tok is not None
    assert tok["target_path"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert tok["result"] >= 0 and tok["comm"] == "cat" and tok["severity"] >= 7
    shadows = []
    deadline = time.monotonic() + 10
    while len(shadows) < 2 and time.monotonic() < deadline:
        shadows = col.matching(lambda e: _in(cg)(e) and e["action"] == "read" and e.get("sensitive") == "shadow")
        time.sleep(0.1)
    assert len(shadows) == 2  # absolute, and relative "shadow" joined to cwd /etc in the kernel
    assert all(e["target_path"] == "/etc/shadow" and not e.get("path_unresolved") for e in shadows)
    _marker(sensors, c.exec, "after-reads", cg)
    assert not col.matching(lambda e: _in(cg)(e) and e.get("target_path") == "/etc/passwd")


def test_only_watched_writes_arrive(sensors: Sensors, containers: list) -> None:
    require_runc()
    c = run_container()
    containers.append(c)
    cg = c.cgroup2_inode()
    c.exec("sh", "-c", f"mkdir -p {WATCHED} /unwatched && echo a > {WATCHED}a && mv {WATCHED}a {WATCHED}b && "
           "echo x > /unwatched/x && mv /unwatched/x /unwatched/y && rm /unwatched/y && "
           f"cd {WATCHED} && echo r > rel && chmod 600 rel && rm {WATCHED}b && cd /unwatched && echo u > ../{WATCHED.strip('/')}/up")
    col = sensors.collector
    _marker(sensors, c.exec, "end", cg)
    evs = col.matching(lambda e: _in(cg)(e) and e["event_type"] == "file")
    seen = {(e["action"], e["target_path"], e.get("old_path")) for e in evs}
    assert ("create", f"{WATCHED}a", None) in seen
    assert ("rename", f"{WATCHED}b", f"{WATCHED}a") in seen
    assert ("unlink", f"{WATCHED}b", None) in seen
    assert ("create", f"{WATCHED}rel", None) in seen  # relative: joined to the shell's cwd in the kernel
    assert ("chmod", f"{WATCHED}rel", None) in seen
    assert ("create", f"{WATCHED}up", None) in seen  # "..": folded in user space
    assert not [e for e in evs if "/unwatched" in (e.get("target_path") or "") + (e.get("old_path") or "")]
    # the runtime's setup (runc init, before the workload) works on host paths: marked as such,
    # and nothing else carries one
    host = [e for e in evs if str(c.bundle) in e["target_path"]]
    assert host and all(e.get("runtime_setup") is True for e in host)
    assert not [e for e in evs if e.get("runtime_setup") and not e["comm"].startswith("runc:[")]
    chmod = next(e for e in evs if e["action"] == "chmod" and e["target_path"] == f"{WATCHED}rel")
    assert chmod["mode"] == 0o600 and chmod["result"] == 0


def test_host_file_actions(sensors: Sensors, tmp_path) -> None:
    """Each file action from a host child process (host tasks are reported: containers_only
    is off), with results and modes."""
    d = f"/tmp/ptnf-{tmp_path.name}"
    code = f"""
import os
os.makedirs({d!r}, exist_ok=True)
p = {d!r} + "/f"
os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o640))
os.close(os.open(p, os.O_WRONLY))
os.truncate(p, 0)
os.chmod(p, 0o755)
fd = os.open(p, os.O_RDONLY); os.fchmod(fd, 0o750); os.close(fd)
os.rename(p, p + "2")
os.unlink(p + "2")
try: os.unlink(p + "-missing")
except OSError: pass
"""
    child = subprocess.Popen([sys.executable, "-c", code])
    assert child.wait(30) == 0
    col = sensors.collector
    f = f"{d}/f"
    want = [("create", f), ("write", f), ("truncate", f), ("chmod", f), ("rename", f + "2"), ("unlink", f + "2"),
            ("unlink", f + "-missing")]
    got = {}
    for action, path in want:
        got[(action, path)] = col.wait_for(lambda e, a=action, p=path: e.get("pid") == child.pid and e["action"] == a and e.get("target_path") == p)
        assert got[(action, path)] is not None, (action, path)
    assert got[("create", f)]["mode"] == 0o640 and got[("create", f)]["fd"] >= 0
    assert got[("chmod", f)]["mode"] == 0o755
    fchmod = col.wait_for(lambda e: e.get("pid") == child.pid and e["action"] == "chmod" and e.get("mode") == 0o750)
    assert fchmod is not None and fchmod["target_path"] == f  # the file behind the fd
    assert got[("rename", f + "2")]["old_path"] == f
    assert got[("unlink", f + "-missing")]["result"] == -2
    assert all(e["source"] == "ebpf" and e["file_name"] for e in got.values())


def test_unwatched_open_storm_stays_in_kernel(sensors: Sensors, tmp_path) -> None:
    """2,000 opens (read and write) of unwatched absolute paths by a child: no event and no
    sample for them reaches user space."""
    d = "/var/tmp/ptnf-storm-" + tmp_path.name
    code = f"""
import os
os.makedirs({d!r}, exist_ok=True)
for i in range(1000):
    p = {d!r} + "/f%d" % (i % 10)
    os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))
    os.close(os.open(p, os.O_RDONLY))
"""
    from podtrail.bpf.file import USER_FILTERED

    def filtered() -> float:
        return sum(USER_FILTERED.labels(r)._value.get() for r in ("unwatched", "not_sensitive", "own_environ"))

    before = filtered()
    proc = subprocess.Popen([sys.executable, "-c", code])
    assert proc.wait(60) == 0
    _sync_file(sensors, f"storm-{tmp_path.name}")
    # no event from the child, and nothing user space had to drop (other processes on this
    # shared machine write to /tmp/ too, so samples are not counted)
    assert not sensors.collector.matching(lambda e: e["event_type"] == "file" and (e.get("pid") == proc.pid or (e.get("target_path") or "").startswith(d)))
    assert filtered() - before < 20


def _sync_file(sensors: Sensors, tag: str) -> None:
    """A watched create from a child: once it is here, earlier file samples have been read."""
    p = f"{WATCHED}sync-{tag}"
    subprocess.run(["sh", "-c", f"mkdir -p {WATCHED} && : > {p}"], check=True)
    assert sensors.collector.wait_for(lambda e: e.get("target_path") == p)


def test_in_kernel_filters_follow_config(sensors: Sensors, containers: list) -> None:
    """loopback off, comm exclusion and containers-only, changed in the maps at run time."""
    require_runc()
    ssrc = sensors.source("ebpf-socket")
    col = sensors.collector
    srv = _listener()
    port = srv.getsockname()[1]
    accepting = threading.Thread(target=lambda: [srv.accept()[0].close() for _ in range(5)], daemon=True)
    accepting.start()

    def child_connect(comm: str) -> int:
        code = (f"import ctypes, socket; ctypes.CDLL(None).prctl(15, {comm.encode()!r}, 0, 0, 0); "
                f"socket.create_connection(('127.0.0.1', {port})).close()")
        p = subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        return p.returncode

    def sync(tag: str) -> None:
        # a unix connect is always reported (not loopback, not excluded): it orders the stream
        code = f"import socket\ntry: socket.socket(socket.AF_UNIX).connect('/nonexistent/{tag}')\nexcept OSError: pass"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        assert col.wait_for(lambda e: e.get("socket_path") == f"/nonexistent/{tag}")

    def connects(comm: str) -> list:
        return col.matching(lambda e: e["action"] == "connect" and e.get("remote_port") == port and e["comm"] == comm)

    try:
        child_connect("ptnf-base")
        assert col.wait_for(lambda e: e["action"] == "connect" and e.get("remote_port") == port and e["comm"] == "ptnf-base")

        ssrc.reconfigure(SensorConfig(**TEST_CFG, loopback=False))  # type: ignore[arg-type]
        child_connect("ptnf-noloop")
        sync("noloop")
        assert not connects("ptnf-noloop")

        ssrc.reconfigure(SensorConfig(**TEST_CFG, exclude_comms=["ptnf-excl"]))  # type: ignore[arg-type]
        child_connect("ptnf-excl")
        sync("excl")
        assert not connects("ptnf-excl")

        ssrc.reconfigure(SensorConfig(**TEST_CFG, containers_only=True))  # type: ignore[arg-type]
        child_connect("ptnf-host")
        c = run_container()
        containers.append(c)
        cg = c.cgroup2_inode()
        c.exec("sh", "-c", f"nc 127.0.0.1 {port} </dev/null", check=False)
        assert col.wait_for(lambda e: _in(cg)(e) and e["action"] == "connect" and e.get("remote_port") == port)
        assert not connects("ptnf-host")
    finally:
        ssrc.reconfigure(sensors.cfg)
        srv.close()


def test_every_event_matches_the_declaration(sensors: Sensors) -> None:
    """Runs last in this module: whatever the other tests produced validates."""
    assert sensors.collector.events, "no events at all"
    assert not sensors.collector.problems[:5]
    for s in sensors.sources:
        assert s.lost() == 0


# ---- facts that used to race with /proc, in dash containers (every command an execve) ------


def test_relative_write_after_cd_is_the_inside_path_every_time(sensors: Sensors, containers: list) -> None:
    """`cd /tmp && echo x > f`, 200 times in a container whose /bin/sh is dash, each in its own
    short-lived shell: every create is /tmp/f<i> as the container sees it (never the host's
    view of its rootfs, never the runtime's directory), with zero wrong values."""
    require_runc()
    n = 200
    c = run_container()
    containers.append(c)
    cg = c.cgroup2_inode()
    c.exec("/bin/sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/sh -c \"cd /tmp && echo x > f$i\"; i=$((i+1)); done",
           timeout=120)
    _marker(sensors, c.exec, "rel-done", cg)
    got = sensors.collector.matching(lambda e: _in(cg)(e) and e["action"] == "create" and e.get("comm") == "sh"
                                     and WATCHED not in e["target_path"])
    want = {f"/tmp/f{i}" for i in range(n)}
    paths = [e["target_path"] for e in got]
    assert sorted(paths) == sorted(want), [p for p in paths if p not in want][:5]
    assert not [e for e in got if e.get("path_unresolved")]


def test_relative_path_deeper_than_the_walk_is_flagged(sensors: Sensors, containers: list) -> None:
    """A cwd deeper than the kernel's bounded walk: the event still comes (its tail is the
    file's own name) and says that its path is not the full view."""
    require_runc()
    c = run_container()
    containers.append(c)
    cg = c.cgroup2_inode()
    deep = "/tmp/" + "/".join(f"d{i}" for i in range(60))
    c.exec("/bin/sh", "-c", f"mkdir -p {deep} && cd {deep} && echo x > deepfile && cd /tmp && echo x > shallow")
    _marker(sensors, c.exec, "deep-done", cg)
    got = sensors.collector.matching(lambda e: _in(cg)(e) and e["action"] == "create" and e["comm"] == "sh")
    by_name = {e["target_path"].rsplit("/", 1)[-1]: e for e in got}
    assert by_name["deepfile"].get("path_unresolved") is True
    assert by_name["deepfile"]["target_path"].endswith("/d59/deepfile")
    assert by_name["shallow"]["target_path"] == "/tmp/shallow" and not by_name["shallow"].get("path_unresolved")


def _run_dropped(c, i: int) -> None:
    c.exec("/bin/sh", "-c", f"cp /bin/dash /tmp/bb{i} && chmod +x /tmp/bb{i} && /tmp/bb{i} -c true && /bin/busybox true")


def test_drift_flagged_in_the_kernel_every_run(sensors: Sensors, containers: list) -> None:
    """A binary (dash) copied into the container's /tmp, made executable and run: the exec carries
    drift (created_in_container) in every one of 50 runs, decided in the kernel from the file
    sensor's drift_inodes record; the image's own busybox, run right after, never does. Also
    outside the watched prefixes (/opt), where no file event is reported at all."""
    require_runc()
    runs = 50
    c = run_container()
    containers.append(c)
    cg = c.cgroup2_inode()
    for i in range(runs):
        _run_dropped(c, i)
    c.exec("/bin/sh", "-c", "mkdir -p /opt && cp /bin/dash /opt/bb && /opt/bb -c true")
    _marker(sensors, c.exec, "drift-done", cg)
    col = sensors.collector

    def execs(path: str) -> list:
        return col.matching(lambda e: _in(cg)(e) and e["event_type"] == "process" and e["action"] == "exec"
                            and e.get("path") == path)

    deadline = time.monotonic() + 15
    while len(execs("/bin/busybox")) < runs and time.monotonic() < deadline:
        time.sleep(0.2)
    dropped = [e for i in range(runs) for e in execs(f"/tmp/bb{i}")]
    assert len(dropped) == runs
    assert [e for e in dropped if e.get("drift_reason") != "created_in_container" or e.get("drift") is not True] == []
    image = execs("/bin/busybox")
    assert len(image) == runs and not [e for e in image if e.get("drift")]
    opt = execs("/opt/bb")
    assert opt and opt[0].get("drift_reason") == "created_in_container"
    assert not col.matching(lambda e: _in(cg)(e) and e.get("target_path") == "/opt/bb")  # unwatched: no file event
    from podtrail.bpf.netfile import DRIFT_RECORDS

    deadline = time.monotonic() + 5  # the source exports drift_stats once a second
    while DRIFT_RECORDS.labels("recorded")._value.get() < runs and time.monotonic() < deadline:
        time.sleep(0.2)
    assert DRIFT_RECORDS.labels("recorded")._value.get() >= runs

    # the records die with the container (its cgroup's removal), so no later container that
    # reuses an inode, device or namespace number can match them
    drift_map = sensors.source("ebpf-file").obj.map("drift_inodes")

    def records_of(cgroup_id: int) -> int:
        return sum(1 for k in drift_map.keys() if int.from_bytes((drift_map.lookup(k) or bytes(8))[:8], "little") == cgroup_id)

    assert records_of(cg) >= runs
    containers.remove(c)
    c.destroy()
    deadline = time.monotonic() + 5
    while records_of(cg) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert records_of(cg) == 0


def test_drift_chmod_of_an_image_file(sensors: Sensors, containers: list, tmp_path: Path) -> None:
    """An image binary never written in the container but made executable there (chmod +x by
    a relative and by an absolute path, fchmod on an fd) is drift (modified_in_container): the
    inode comes from the kernel's own path resolution inside the chmod (timestamp
    tracepoints; for fchmod also from the fd, which is what older kernels rely on), committed
    when the call succeeded. The image's busybox, never touched, is not drift."""
    require_runc()
    require(os.path.exists("/sys/kernel/tracing/events/timestamp/ctime_ns_xchg"),
            "timestamp tracepoints (Linux 6.13+) for the inode of a path chmod")
    c = run_container()
    containers.append(c)
    (c.rootfs / "opt").mkdir(exist_ok=True)
    for name in ("tool", "tool2"):
        shutil.copy2("/bin/dash", c.rootfs / "opt" / name)  # written by the host: part of the image
        (c.rootfs / "opt" / name).chmod(0o644)
    cg = c.cgroup2_inode()
    # fchmod: a helper compiled here (busybox and dash never call it) makes tool3 executable
    helper = tmp_path / "fchmodx"
    subprocess.run(["clang", "-O2", "-o", str(helper), str(Path(__file__).with_name("fchmodx.c"))], check=True)
    install_binary(c.rootfs, str(helper), "/usr/bin/fchmodx")
    shutil.copy2("/bin/dash", c.rootfs / "opt/tool3")
    (c.rootfs / "opt/tool3").chmod(0o644)
    c.exec("/bin/sh", "-c", "cd /opt && chmod +x tool && ./tool -c true && chmod 755 /opt/tool2 && /opt/tool2 -c true"
           " && /usr/bin/fchmodx /opt/tool3 755 && /opt/tool3 -c true && /bin/busybox true")
    _marker(sensors, c.exec, "chmod-done", cg)
    col = sensors.collector
    paths = ("/opt/tool", "/opt/tool2", "/opt/tool3", "/bin/busybox")
    got = {p: col.wait_for(lambda e, p=p: _in(cg)(e) and e["action"] == "exec" and e.get("path") == p, timeout=10)
           for p in paths}
    assert all(got.values()), got
    assert {p: e.get("drift_reason") for p, e in got.items()} == {
        "/opt/tool": "modified_in_container", "/opt/tool2": "modified_in_container",
        "/opt/tool3": "modified_in_container", "/bin/busybox": None}
