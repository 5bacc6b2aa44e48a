"""Raw process.bpf.c samples made in user space (the inverse of ``ProcessDecoder``), for the
decoder tests and the per-stage profile: the same bytes the ring buffer would carry."""

from __future__ import annotations

import ctypes as ct

from podtrail.bpf.process import (
    ARGS_OFF,
    CWD_OFF,
    EV_EXEC,
    EXE_OFF,
    FORK_CWD,
    HDR_SIZE,
    PT_PATH_BUF,
    PT_PATH_MAX,
    ExecFixed,
    Hdr,
)


def put_path(raw: bytearray, base: int, path: str) -> int:
    """Write ``path`` back to front in a path buffer, as the kernel's walk does; its offset."""
    off = PT_PATH_MAX - len(path)
    raw[base + off:base + PT_PATH_MAX] = path.encode()
    return off


def exec_sample(name: str, cwd: str, exe: str, args: list[str], flags: int = 0, *, pid: int = 10, ppid: int = 1,
                cgroup_id: int = 0, ktime: int = 0, uid: int = 0, comm: bytes = b"tool", start_ns: int = 0) -> bytes:
    e = ExecFixed()
    e.h.type, e.h.pid, e.h.tid, e.h.ppid, e.h.flags, e.h.comm = EV_EXEC, pid, pid, ppid, flags, comm
    e.h.start_ns = start_ns
    e.h.cgroup_id, e.h.ktime, e.h.uid, e.h.gid = cgroup_id, ktime, uid, uid
    e.name = name.encode()
    e.fd_kind[:] = [1, 2, 3]
    e.tty = b"pts7"
    e.exe_dev = (8 << 20) | 1
    blob = b"".join(a.encode() + b"\0" for a in args)
    e.argc, e.args_size = len(args), len(blob)
    raw = bytearray(bytes(e)[:ARGS_OFF])
    e.cwd_off = put_path(raw, CWD_OFF, cwd)
    e.exe_off = put_path(raw, EXE_OFF, exe)
    raw[ct.sizeof(e.h):CWD_OFF] = bytes(e)[ct.sizeof(e.h):CWD_OFF]  # the offsets just set
    return bytes(raw) + blob


def header_sample(kind: int, pid: int, ppid: int, cgroup_id: int, ktime: int, uid: int = 0, comm: bytes = b"sh") -> bytes:
    """A fork or exit sample without its cwd (the decoder then leaves ``cwd`` to the table)."""
    return bytes(Hdr(ktime=ktime, cgroup_id=cgroup_id, type=kind, pid=pid, tid=pid, ppid=ppid, uid=uid, gid=uid,
                     result=0, flags=0, comm=comm))


def fork_exit_sample(kind: int, pid: int, ppid: int, cgroup_id: int, ktime: int, cwd: str, uid: int = 0,
                     comm: bytes = b"sh", flags: int = 0, result: int = 0, start_ns: int = 0) -> bytes:
    """A fork or exit sample with the cwd the kernel reads at the event (as process.bpf.c sends
    them; an exit with ``F_EXIT_KNOWN`` in ``flags`` carries its exit code in ``result``)."""
    raw = bytearray(bytes(Hdr(ktime=ktime, cgroup_id=cgroup_id, type=kind, pid=pid, tid=pid, ppid=ppid, uid=uid, gid=uid,
                              result=result, flags=flags, comm=comm, start_ns=start_ns)))
    raw += bytes(FORK_CWD + PT_PATH_BUF - len(raw))
    raw[HDR_SIZE:HDR_SIZE + 2] = put_path(raw, FORK_CWD, cwd).to_bytes(2, "little")
    return bytes(raw)
