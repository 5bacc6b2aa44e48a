"""Pure parts of the socket/file sensors: pattern parsing and hashing, the user-space matchers,
transport naming, /proc address parsing, decoding of hostile bytes, the drift tracker."""

from __future__ import annotations

import struct

import pytest

from podtrail.bpf import netfile
from podtrail.bpf.file import _EVENT as FILE_EVENT
from podtrail.bpf.file import FileDecoder
from podtrail.bpf.netfile import (
    K_DIR,
    K_EXACT,
    K_PREFIX,
    KF_DRIFT_ONLY,
    SensitiveMatcher,
    WriteMatcher,
    fnv1a,
    parse_sensitive,
    sensitive_patterns,
)
from podtrail.bpf.socket import _EVENT as SOCK_EVENT
from podtrail.bpf.socket import SocketDecoder, _proc_addr, transport_of
from podtrail.config import ConfigError, SensorConfig
from podtrail.enrich.drift import CREATED, MODIFIED, DriftStage, DriftTracker, memory_exec_reason
from podtrail.model.event import finalize, validate


def test_fnv1a_matches_the_reference_vectors() -> None:
    # FNV-1a 64 test vectors (the kernel computes the same with FNV_OFFSET/FNV_PRIME)
    assert fnv1a(b"") == 0xCBF29CE484222325
    assert fnv1a(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a(b"foobar") == 0x85944171F73967E8


def test_shipped_list_parses_and_covers_the_issue() -> None:
    pats = sensitive_patterns(SensorConfig())
    cats = {p.category for p in pats}
    assert {"shadow", "sudoers", "ssh_key", "ssh_authorized_keys", "sa_token", "kubelet_credentials",
            "cloud_credentials", "proc_environ", "runtime_socket"} <= cats
    m = SensitiveMatcher(pats)
    assert m.category("/etc/shadow") == "shadow"
    assert m.category("/run/secrets/kubernetes.io/serviceaccount/token") == "sa_token"
    assert m.category("/home/bob/.ssh/id_ed25519") == "ssh_key"
    assert m.category("/root/.ssh/known_hosts") is None  # same directory, not a key
    assert m.category("/proc/1234/environ") == "proc_environ"
    assert m.category("/proc/1234/task/1/environ") is None  # '*' never crosses '/'
    assert m.category("/etc/passwd") is None


def test_pattern_kinds_and_rejections() -> None:
    p = parse_sensitive("/proc/*/environ", "x")
    assert (p.kernel_kind, p.kernel_hash, p.second_wild) == (K_EXACT, fnv1a(b"/proc/*/environ"), True)
    d = parse_sensitive("/root/.ssh/id_*", "x")
    assert (d.kernel_kind, d.kernel_hash, d.name_hash) == (K_DIR, fnv1a(b"/root/.ssh/"), None)
    assert d.first_dir_hash == fnv1a(b"/root/")
    for bad in ("etc/shadow", "/shadow", "/etc/", "/a*/b/c", "/etc/*/x/*/y", "/e?c/shadow"):
        with pytest.raises(ConfigError):
            parse_sensitive(bad, "x")


def test_configured_list_keeps_shipped_categories() -> None:
    cfg = SensorConfig(sensitive_paths=["/etc/shadow", "secrets:/opt/app/key.pem", "/opt/other"])
    cats = {p.pattern: p.category for p in sensitive_patterns(cfg)}
    assert cats == {"/etc/shadow": "shadow", "/opt/app/key.pem": "secrets", "/opt/other": "custom"}


def test_write_matcher_and_its_kernel_set() -> None:
    w = WriteMatcher(["/etc/", "/var/spool/cron", "/tmp/"])
    assert w.match("/etc/passwd") and w.match("/tmp/x/y") and w.match("/var/spool/cron")
    assert w.match("/var/spool/cron/root") and not w.match("/var/spool/cronx") and not w.match("/etcx")
    ks = w.kernel_set()
    assert ks[fnv1a(b"/etc/")] == K_PREFIX and ks[fnv1a(b"/var/spool/cron")] == K_EXACT
    with pytest.raises(ConfigError):
        WriteMatcher(["relative/"])
    with pytest.raises(ConfigError):
        WriteMatcher(["/etc/*.conf"])


@pytest.mark.parametrize(
    ("family", "stype", "proto", "kf", "action", "ret", "want"),
    [
        (1, 1, 0, 0, "connect", 0, (0, "unix")),
        (2, 0, 0, netfile.KF_SYN_SENT, "connect", -111, (6, "tcp")),
        (10, 1, 0, 0, "bind", 0, (6, "tcp")),
        (2, 2, 0, 0, "connect", 0, (17, "udp")),
        (2, 0, 0, 0, "connect", 0, (17, "udp")),  # socket older than the agent, no SYN_SENT
        (2, 0, 0, 0, "connect", -101, (0, "")),  # failed before any state: unknown
        (2, 0, 0, 0, "accept", 4, (6, "tcp")),
    ],
)
def test_transport_inference(family: int, stype: int, proto: int, kf: int, action: str, ret: int, want: tuple[int, str]) -> None:
    assert transport_of(family, stype, proto, kf, action, ret) == want


def test_proc_net_addresses() -> None:
    assert _proc_addr("0100007F:1F90", 2) == ("127.0.0.1", 8080)
    assert _proc_addr("00000000000000000000000001000000:0050", 10) == ("::1", 80)
    assert _proc_addr("0000000000000000FFFF00000100007F:01BB", 10) == ("::ffff:127.0.0.1", 443)


def _sock_raw(**kw: object) -> bytes:
    v = dict(mono=1, cg=7, sk=0, pid=10, tid=11, uid=0, gid=0, fd=3, ret=0, action=1, family=2, type=1, proto=0,
             lport=40000, rport=443, kf=netfile.KF_SYN_SENT | netfile.KF_ESTABLISHED,
             laddr=bytes([10, 0, 0, 1]) + bytes(12), raddr=bytes([10, 0, 0, 2]) + bytes(12), comm=b"curl", path=b"")
    v.update(kw)
    return SOCK_EVENT.pack(*v.values())


def test_socket_decode_is_a_valid_event_with_initiator_view() -> None:
    ev = finalize(SocketDecoder().decode(_sock_raw()))  # type: ignore[arg-type]
    assert validate(ev) == []
    assert (ev["src_address"], ev["src_port"], ev["dst_address"], ev["dst_port"]) == ("10.0.0.1", 40000, "10.0.0.2", 443)
    hostile = SocketDecoder().decode(_sock_raw(family=1, comm=b"a|b=c\n\xff", path=b"/tmp/x\ny\xfe\0junk"))
    assert hostile is not None
    assert hostile["comm"] == "a|b=c\n\\xff" and hostile["socket_path"] == "/tmp/x\ny\\xfe"
    abstract = SocketDecoder().decode(_sock_raw(family=1, path=b"\0name"))
    assert abstract is not None and abstract["socket_path"] == "@name"
    assert SocketDecoder().decode(_sock_raw(action=99)) is None


def _file_raw(action: int, path: bytes, kf: int = 0, ret: int = 3, mode: int = 0o644) -> bytes:
    return FILE_EVENT.pack(5, 9, 4242, 4242, 0, 0, ret, -100, -100, 0o1101, mode, action, kf, b"sh", path)


def test_file_decoder_user_space_filters_and_drift_notes() -> None:
    tracker = DriftTracker()
    dec = FileDecoder(WriteMatcher(["/watched/"]), SensitiveMatcher(sensitive_patterns(SensorConfig())), tracker)
    ev = dec.decode(_file_raw(2, b"/watched/a", kf=netfile.KF_CONTAINER))
    assert ev is not None and ev["action"] == "create" and ev["mode"] == 0o644 and ev["fd"] == 3
    assert validate(finalize(ev)) == []
    # exec-bit create outside the watched prefixes: noted for drift, not reported
    assert dec.decode(_file_raw(2, b"/opt/dropper", kf=netfile.KF_CONTAINER | KF_DRIFT_ONLY, mode=0o755)) is None
    assert tracker.check(9, "/opt/dropper", 10) == CREATED
    # sensitive directory read whose name does not match the pattern: dropped here
    assert dec.decode(_file_raw(3, b"/root/.ssh/known_hosts", kf=netfile.KF_SENSITIVE)) is None
    assert dec.decode(_file_raw(3, b"/proc/4242/environ", kf=netfile.KF_SENSITIVE)) is None  # its own
    other = dec.decode(_file_raw(3, b"/proc/1/environ", kf=netfile.KF_SENSITIVE))
    assert other is not None and other["sensitive"] == "proc_environ"
    # relative path of a process that is gone: reported unresolved with the name's category
    gone = FileDecoder(WriteMatcher(["/w/"]), SensitiveMatcher(sensitive_patterns(SensorConfig())))
    raw = FILE_EVENT.pack(5, 9, 2**31 - 2, 1, 0, 0, 3, -100, -100, 0, 0, 3, netfile.KF_RELATIVE, b"cat", b"shadow")
    rel = gone.decode(raw)
    assert rel is not None and rel["path_unresolved"] is True and rel["sensitive"] == "shadow"


def test_drift_tracker_ordering_renames_and_unlinks() -> None:
    t = DriftTracker(max_paths=2)
    t.note(1, "/tmp/bb", MODIFIED, 100)
    assert t.check(1, "/tmp/bb", 50) is None  # written after the exec: not drift
    assert t.check(1, "/tmp/bb", 150) == MODIFIED
    assert t.check(2, "/tmp/bb", 150) is None  # another container
    assert t.check(1, "/var/lib/x/rootfs/tmp/bb", 150) == MODIFIED  # host view of the same file
    t.rename(1, "/tmp/bb", "/usr/bin/ls", 200)
    assert t.check(1, "/tmp/bb", 300) is None and t.check(1, "/usr/bin/ls", 300) == CREATED
    t.note(1, "/a", CREATED, 1)
    t.note(1, "/a", MODIFIED, 2)
    assert t.check(1, "/a", 3) == CREATED
    t.note(1, "/b", MODIFIED, 4)  # bound: the oldest path goes
    assert t.check(1, "/usr/bin/ls", 300) is None
    t.forget(1, "/b")
    assert t.check(1, "/b", 10) is None


def test_drift_stage_marks_execs() -> None:
    t = DriftTracker()
    t.note(7, "/tmp/bb", CREATED, 10)
    stage = DriftStage(t)
    out: list = []
    stage.process({"event_type": "process", "action": "exec", "pid": 1, "path": "/tmp/bb", "cgroup_id": 7, "mono_ns": 20}, out.append)
    stage.process({"event_type": "process", "action": "exec", "pid": 1, "path": "/bin/sh", "cgroup_id": 7, "mono_ns": 20}, out.append)
    stage.process({"event_type": "process", "action": "exec", "pid": 1, "path": "/dev/shm/x", "cgroup_id": 0, "mono_ns": 20}, out.append)
    assert [(e.get("drift"), e.get("drift_reason")) for e in out] == [(True, CREATED), (None, None), (True, "dev_shm")]
    assert memory_exec_reason("/memfd:payload (deleted)") == "memfd"
    assert memory_exec_reason("/dev/fd/3", "/memfd: (deleted)") == "memfd"
    assert memory_exec_reason("/usr/bin/env") is None


def test_event_layouts_match_the_c_structs() -> None:
    assert SOCK_EVENT.size == 240  # struct sock_event_t
    assert FILE_EVENT.size == 328  # struct file_event_t without path2
    assert struct.calcsize("<256s") == 256


def test_factory_follows_the_switches() -> None:
    from podtrail.bpf.netfile import build_socket_file_sources

    sources, stages, _ = build_socket_file_sources(SensorConfig())
    assert [s.name for s in sources] == ["ebpf-socket", "ebpf-file"]
    assert [type(s).__name__ for s in stages] == ["RelativePathStage", "DriftStage"]
    sources, stages, _ = build_socket_file_sources(SensorConfig(files=False, drift=False))
    assert [s.name for s in sources] == ["ebpf-socket"] and stages == []
    with pytest.raises(ConfigError):
        build_socket_file_sources(SensorConfig(sensitive_paths=["/a/*b/c/d"]))


def test_relative_path_stage_resolves_from_the_parent() -> None:
    import subprocess

    from podtrail.enrich.relpath import RelativePathStage

    stage = RelativePathStage(WriteMatcher(["/tmp/"]), SensitiveMatcher(sensitive_patterns(SensorConfig())))
    parent = subprocess.Popen(["sleep", "30"], cwd="/etc")
    try:
        out: list = []
        base = {"event_type": "file", "pid": 2**22 + 1, "ppid": parent.pid, "path_unresolved": True}
        stage.process({**base, "action": "read", "target_path": "shadow", "sensitive": "shadow"}, out.append)
        stage.process({**base, "action": "read", "target_path": "hostname"}, out.append)  # not sensitive: dropped
        stage.process({**base, "action": "create", "target_path": "x.conf"}, out.append)  # /etc not watched here
        stage.process({**base, "action": "create", "target_path": "../tmp/y"}, out.append)
        stage.process({**base, "ppid": None, "action": "create", "target_path": "z"}, out.append)  # stays unresolved
    finally:
        parent.kill()
        parent.wait()
    assert [(e["target_path"], e.get("path_unresolved"), e.get("sensitive")) for e in out] == [
        ("/etc/shadow", None, "shadow"), ("/tmp/y", None, None), ("z", True, None)]
