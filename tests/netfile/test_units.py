"""Pure parts of the socket/file sensors: pattern parsing and hashing, the user-space matchers,
transport naming, decoding of hostile bytes and of kernel-joined paths, which programs a
kernel without a tracepoint leaves out."""

from __future__ import annotations

import struct

import pytest

from podtrail.bpf import netfile
from podtrail.bpf.file import _EVENT as FILE_EVENT
from podtrail.bpf.file import FileDecoder, fold
from podtrail.bpf.netfile import (
    K_DIR,
    K_EXACT,
    K_PREFIX,
    SensitiveMatcher,
    WriteMatcher,
    fnv1a,
    parse_sensitive,
    sensitive_patterns,
)
from podtrail.bpf.socket import _EVENT as SOCK_EVENT
from podtrail.bpf.socket import SocketDecoder, transport_of
from podtrail.config import ConfigError, SensorConfig
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


def _sock_raw(**kw: object) -> bytes:
    v = dict(mono=1, cg=7, sk=0, pid=10, tid=11, uid=0, gid=0, fd=3, ret=0, action=1, family=2, type=1, proto=0,
             lport=40000, rport=443, kf=netfile.KF_SYN_SENT | netfile.KF_ESTABLISHED,
             laddr=bytes([10, 0, 0, 1]) + bytes(12), raddr=bytes([10, 0, 0, 2]) + bytes(12), comm=b"curl", path=b"",
             repeats=0, pad=0)
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


def _file_raw(action: int, path: bytes, kf: int = 0, ret: int = 3, mode: int = 0o644, path2: bytes | None = None) -> bytes:
    raw = FILE_EVENT.pack(5, 9, 0, 0, 4242, 4242, 0, 0, ret, -100, -100, 0o1101, mode, action, kf, 0, b"sh", path)
    if path2 is not None:
        raw += path2.ljust(512, b"\0")
    return raw + bytes(4)  # the C struct's padding (sizeof is 1120)


def test_file_decoder_user_space_filters() -> None:
    dec = FileDecoder(WriteMatcher(["/watched/"]), SensitiveMatcher(sensitive_patterns(SensorConfig())))
    ev = dec.decode(_file_raw(2, b"/watched/a", kf=netfile.KF_CONTAINER))
    assert ev is not None and ev["action"] == "create" and ev["mode"] == 0o644 and ev["fd"] == 3
    assert validate(finalize(ev)) == []
    # sensitive directory read whose name does not match the pattern: dropped here
    assert dec.decode(_file_raw(3, b"/root/.ssh/known_hosts", kf=netfile.KF_SENSITIVE)) is None
    assert dec.decode(_file_raw(3, b"/proc/4242/environ", kf=netfile.KF_SENSITIVE)) is None  # its own
    other = dec.decode(_file_raw(3, b"/proc/1/environ", kf=netfile.KF_SENSITIVE))
    assert other is not None and other["sensitive"] == "proc_environ"
    assert "runtime_setup" not in other


def test_runtime_setup_is_marked() -> None:
    assert netfile.is_runtime_setup("runc:[2:INIT]") and netfile.is_runtime_setup("crun")
    assert not netfile.is_runtime_setup("runc") and not netfile.is_runtime_setup("sh")
    raw = FILE_EVENT.pack(5, 9, 0, 0, 1, 1, 0, 0, 0, -100, -100, 0, 0o755, 6, 0, 0, b"runc:[2:INIT]", b"/var/lib/x/rootfs/dev")
    ev = FileDecoder(WriteMatcher(["/var/"]), SensitiveMatcher([])).decode(raw + bytes(4))
    assert ev is not None and ev["runtime_setup"] is True and validate(finalize(ev)) == []
    sock = SocketDecoder().decode(_sock_raw(comm=b"runc:[1:CHILD]"))
    assert sock is not None and sock["runtime_setup"] is True


def test_file_decoder_folds_kernel_joined_paths() -> None:
    """A relative path arrives joined to the cwd the kernel walked; '.' and '..' are folded
    here and the watched/sensitive test runs again on the folded path."""
    dec = FileDecoder(WriteMatcher(["/watched/"]), SensitiveMatcher(sensitive_patterns(SensorConfig())))
    rel = netfile.KF_RELATIVE
    ev = dec.decode(_file_raw(2, b"/srv/app/../../watched/./f", kf=rel))
    assert ev is not None and ev["target_path"] == "/watched/f" and "path_unresolved" not in ev
    assert dec.decode(_file_raw(2, b"/watched/../srv/f", kf=rel)) is None  # folded: not watched
    shadow = dec.decode(_file_raw(3, b"/tmp/../etc/shadow", kf=rel | netfile.KF_SENSITIVE))
    assert shadow is not None and (shadow["target_path"], shadow["sensitive"]) == ("/etc/shadow", "shadow")
    assert dec.decode(_file_raw(3, b"/tmp/../etc/hostname", kf=rel | netfile.KF_SENSITIVE)) is None
    # the walk was cut (deeper than the kernel's bound): reported, flagged, category from the name
    cut = dec.decode(_file_raw(3, b"/a/b/shadow", kf=rel | netfile.KF_PATH_CUT | netfile.KF_SENSITIVE))
    assert cut is not None and cut["path_unresolved"] is True and cut["sensitive"] == "shadow"
    # rename: both paths, the second after the first path's padding
    ren = dec.decode(_file_raw(5, b"/tmp/x", kf=rel, path2=b"/watched/sub/../y"))
    assert ren is not None and (ren["old_path"], ren["target_path"]) == ("/tmp/x", "/watched/y")
    assert [fold("/.."), fold("/a/b/.."), fold("rel")] == ["/", "/a", "rel"]


def test_programs_for_missing_tracepoints_are_left_out() -> None:
    from podtrail.bpf.netfile import TRACEPOINT_OF, _syscall_event

    assert _syscall_event("enter_fchmodat2") == "syscalls/sys_enter_fchmodat2"
    assert _syscall_event("exit_openat") == "syscalls/sys_exit_openat"
    assert _syscall_event("sock_state") is None and _syscall_event("drift_ctime_xchg") is None
    assert TRACEPOINT_OF["drift_ctime_xchg"] == "timestamp/ctime_ns_xchg"


def test_event_layouts_match_the_c_structs() -> None:
    assert SOCK_EVENT.size == 248  # struct sock_event_t
    assert SOCK_EVENT.size - 8 == netfile.REPEATS_OFF
    assert FILE_EVENT.size == 604  # struct file_event_t up to path (sent: 608, the C struct's padding)
    assert struct.calcsize("<512s") == 512


def test_factory_follows_the_switches() -> None:
    from podtrail.bpf.netfile import build_socket_file_sources

    sources = build_socket_file_sources(SensorConfig())
    assert [s.name for s in sources] == ["ebpf-socket", "ebpf-file"]
    sources = build_socket_file_sources(SensorConfig(files=False, drift=False))
    assert [s.name for s in sources] == ["ebpf-socket"]
    with pytest.raises(ConfigError):
        build_socket_file_sources(SensorConfig(sensitive_paths=["/a/*b/c/d"]))
