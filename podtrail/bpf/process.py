"""The process sensor: exec/fork/exit samples from process.c decoded into podtrail events.

cgroup mkdir/rmdir samples are not events: they feed the cgroup id index (``on_cgroup``)
from the same ordered ring buffer, so a new container's cgroup is known before its first exec.
"""

from __future__ import annotations

import ctypes as ct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podtrail.bpf.bcc_compat import BccRingBufferSource as RingBufferSource
from podtrail.bpf.bcc_compat import has_tracepoint_field
from podtrail.bpf.runtime import WallClock, host_pidns_flags, kstr
from podtrail.config import SensorConfig
from podtrail.model.event import Event, new_event
from podtrail.model.fields import Kind

EV_EXEC, EV_FORK, EV_EXIT, EV_CGROUP_MKDIR, EV_CGROUP_RMDIR = 1, 2, 3, 4, 5
F_ARGS_TRUNCATED, F_CONTAINER, F_EXIT_KNOWN, F_NO_ENTER = 1, 2, 4, 8
PATH_LEN = 512

OnCgroup = Callable[[int, str | None], None]  # (cgroup id, path or None when removed)


class Hdr(ct.Structure):
    _fields_ = [
        ("ktime", ct.c_uint64), ("cgroup_id", ct.c_uint64), ("type", ct.c_uint32),
        ("pid", ct.c_uint32), ("tid", ct.c_uint32), ("ppid", ct.c_uint32),
        ("uid", ct.c_uint32), ("gid", ct.c_uint32), ("result", ct.c_int32),
        ("flags", ct.c_uint32), ("comm", ct.c_char * 16),
    ]


HDR_SIZE = ct.sizeof(Hdr)
EXEC_FIXED = HDR_SIZE + 8 + PATH_LEN  # header, argc, args_size, path; then args


def split_args(buf: bytes, argc: int) -> list[str]:
    parts = buf.split(b"\0")
    return [kstr(p) for p in parts[:argc]]


class ProcessDecoder:
    def __init__(self, on_cgroup: OnCgroup | None = None) -> None:
        self.clock = WallClock()
        self.on_cgroup = on_cgroup

    def decode(self, raw: bytes) -> Event | None:
        h = Hdr.from_buffer_copy(raw[:HDR_SIZE])
        if h.type == EV_CGROUP_MKDIR or h.type == EV_CGROUP_RMDIR:
            if self.on_cgroup is not None:
                path = kstr(raw[HDR_SIZE:HDR_SIZE + PATH_LEN]) if h.type == EV_CGROUP_MKDIR else None
                self.on_cgroup(h.cgroup_id, path)
            return None
        base: dict[str, Any] = {
            "source": "ebpf", "pid": h.pid, "tid": h.tid, "uid": h.uid, "gid": h.gid,
            "comm": kstr(h.comm), "cgroup_id": h.cgroup_id, "mono_ns": h.ktime,
        }
        t = self.clock.wall(h.ktime)
        if h.type == EV_EXEC:
            argc, args_size = ct.c_uint32.from_buffer_copy(raw, HDR_SIZE).value, ct.c_uint32.from_buffer_copy(raw, HDR_SIZE + 4).value
            path = kstr(raw[HDR_SIZE + 8:EXEC_FIXED])
            argv = split_args(raw[EXEC_FIXED:EXEC_FIXED + args_size], argc)
            ev = new_event(Kind.PROCESS, "exec", time_ns=t, path=path, argv=argv,
                           cmdline=" ".join(argv), args_truncated=bool(h.flags & F_ARGS_TRUNCATED),
                           result=h.result, **base)
            if h.flags & F_NO_ENTER:
                ev.pop("argv")
                ev.pop("cmdline")
            return ev
        if h.type == EV_FORK:
            return new_event(Kind.PROCESS, "fork", time_ns=t, ppid=h.ppid, **base)
        if h.type == EV_EXIT:
            ev = new_event(Kind.PROCESS, "exit", time_ns=t, **base)
            if h.flags & F_EXIT_KNOWN:
                ev["exit_code"] = h.result
            return ev
        return None


class CfgT(ct.Structure):
    _fields_ = [("self_tgid", ct.c_uint32), ("containers_only", ct.c_uint32)]


def build_process_source(cfg: SensorConfig, on_cgroup: OnCgroup | None = None) -> RingBufferSource:
    """The process sensor as a pipeline Source (name ``ebpf-process``)."""
    import os

    decoder = ProcessDecoder(on_cgroup)

    def cflags() -> list[str]:
        flags = [
            f"-DMAX_ARGS={max(1, min(cfg.argv_max_args, 128))}",
            f"-DARG_SIZE={max(16, min(cfg.argv_max_arg_bytes, 4096))}",
            f"-DRINGBUF_PAGES={cfg.ringbuf_pages}",
            *host_pidns_flags(),
        ]
        if has_tracepoint_field("sched", "sched_process_exit", "group_dead"):
            flags.append("-DHAVE_GROUP_DEAD")
        return flags

    def configure(bpf: Any) -> None:
        bpf["cfg"][ct.c_int(0)] = CfgT(os.getpid(), int(cfg.containers_only))

    src = RingBufferSource(
        "ebpf-process", lambda: (Path(__file__).parent / "process.c").read_text(), cflags,
        decoder.decode, configure,
    )
    src.decoder = decoder  # type: ignore[attr-defined]
    return src
