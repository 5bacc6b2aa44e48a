"""The process decoder as it was before the struct-based one (ctypes Structures, ``new_event``
with keywords, ``kstr`` per field): kept as the readable reference the fast decoder is held
to, field by field and key by key (test_process_decode_equal.py). Not used by the agent."""

from __future__ import annotations

from typing import Any

from podtrail.bpf.process import (
    ARG_MAX_READ,
    ARGS_OFF,
    CWD_OFF,
    DRIFT_REASONS,
    EV_CGROUP_MKDIR,
    EV_CGROUP_RMDIR,
    EV_EXEC,
    EV_EXIT,
    EV_FORK,
    EXE_OFF,
    EXEC_FIXED,
    F_ARGS_TRUNCATED,
    F_CWD_OUTSIDE,
    F_CWD_TRUNCATED,
    F_EXE_OUTSIDE,
    F_EXE_TRUNCATED,
    F_EXIT_KNOWN,
    F_FORK_FOLDED,
    F_NO_ENTER,
    F_RUNTIME_SETUP,
    FD_KINDS,
    FORK_CWD,
    HDR_SIZE,
    MAX_ARGS_CAP,
    PT_PATH_BUF,
    PT_PATH_MAX,
    ExecFixed,
    Hdr,
    OnCgroup,
    absolute,
    kernel_dev,
    tty_name,
)
from podtrail.bpf.runtime import WallClock, kstr
from podtrail.model.event import Event, new_event
from podtrail.model.fields import Kind


def split_args(buf: bytes, argc: int, max_args: int = MAX_ARGS_CAP, arg_size: int = ARG_MAX_READ) -> tuple[list[str], bool]:
    parts = buf.split(b"\0")[:argc]
    cut = len(parts) > max_args
    if cut:
        parts = parts[:max_args]
    keep = arg_size - 1
    if any(len(p) > keep for p in parts):
        cut = True
        parts = [p[:keep] for p in parts]
    return [kstr(p) for p in parts], cut


def path_in(buf: bytes, off: int) -> str:
    return kstr(buf[off:PT_PATH_MAX]) if 0 <= off < PT_PATH_MAX else ""


class RefDecoder:
    def __init__(self, on_cgroup: OnCgroup | None = None, max_args: int = 32, arg_size: int = 256) -> None:
        self.clock = WallClock()
        self.on_cgroup = on_cgroup
        self.max_args = max_args
        self.arg_size = arg_size

    def decode(self, raw: bytes) -> Event | None:
        h = Hdr.from_buffer_copy(raw[:HDR_SIZE])
        if h.type == EV_CGROUP_MKDIR or h.type == EV_CGROUP_RMDIR:
            if self.on_cgroup is not None:
                path = kstr(raw[HDR_SIZE:HDR_SIZE + PT_PATH_BUF]) if h.type == EV_CGROUP_MKDIR else None
                self.on_cgroup(h.cgroup_id, path)
            return None
        base: dict[str, Any] = {
            "source": "ebpf", "pid": h.pid, "tid": h.tid, "uid": h.uid, "gid": h.gid, "ppid": h.ppid,
            "comm": kstr(h.comm), "cgroup_id": h.cgroup_id, "mono_ns": h.ktime, "start_ns": h.start_ns,
        }
        if h.flags & F_RUNTIME_SETUP:
            base["runtime_setup"] = True
        t = self.clock.wall(h.ktime)
        if h.type == EV_EXEC:
            return self._exec(h, raw, t, base)
        if h.type == EV_FORK or h.type == EV_EXIT:
            ev = new_event(Kind.PROCESS, "fork" if h.type == EV_FORK else "exit", time_ns=t, **base)
            if len(raw) >= FORK_CWD + PT_PATH_MAX:
                cwd = path_in(raw[FORK_CWD:FORK_CWD + PT_PATH_BUF], int.from_bytes(raw[HDR_SIZE:HDR_SIZE + 2], "little"))
                if cwd:
                    ev["cwd"] = cwd
                    if h.flags & (F_CWD_TRUNCATED | F_CWD_OUTSIDE):
                        ev["cwd_truncated"] = True
            if h.type == EV_EXIT and h.flags & F_EXIT_KNOWN:
                ev["exit_code"] = h.result
            return ev
        return None

    def _exec(self, h: Hdr, raw: bytes, t: int, base: dict[str, Any]) -> Event:
        e = ExecFixed.from_buffer_copy(raw[:EXEC_FIXED].ljust(EXEC_FIXED, b"\0"))
        cwd = path_in(raw[CWD_OFF:CWD_OFF + PT_PATH_BUF], e.cwd_off)
        name = kstr(e.name)
        stdin, stdout, stderr = (FD_KINDS[k] if k < len(FD_KINDS) else "other" for k in e.fd_kind)
        argv, cut = split_args(raw[ARGS_OFF:ARGS_OFF + e.args_size], e.argc, self.max_args, self.arg_size)
        ev = new_event(
            Kind.PROCESS, "exec", time_ns=t, path=absolute(name, cwd), argv=argv,
            cmdline=" ".join(argv), args_truncated=cut or bool(h.flags & F_ARGS_TRUNCATED), result=h.result,
            cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, euid=e.euid, auid=e.auid,
            session_id=e.sessionid, cap_effective=e.cap_effective, mnt_ns=e.mnt_ns, pid_ns=e.pid_ns,
            net_ns=e.net_ns, **base,
        )
        if h.flags & (F_CWD_TRUNCATED | F_CWD_OUTSIDE):
            ev["cwd_truncated"] = True
        tty = tty_name(kstr(e.tty))
        if tty:
            ev["tty"] = tty
        if h.result == 0:
            ev["exe_path"] = path_in(raw[EXE_OFF:EXE_OFF + PT_PATH_BUF], e.exe_off)
            ev["exe_inode"] = e.exe_ino
            ev["exe_dev"] = kernel_dev(e.exe_dev)
            if h.flags & (F_EXE_TRUNCATED | F_EXE_OUTSIDE):
                ev["exe_outside"] = True
        if e.drift:
            ev["drift"] = True
            ev["drift_reason"] = DRIFT_REASONS.get(e.drift, "other")
        if h.flags & F_FORK_FOLDED:
            ev["fork_folded"] = True
        if h.flags & F_NO_ENTER:
            ev.pop("argv")
            ev.pop("cmdline")
        return ev


# ---- hostile variants of a sample, for the equivalence tests ------------------------------------

FLAG_BITS = (F_ARGS_TRUNCATED, 2, F_EXIT_KNOWN, F_NO_ENTER, F_RUNTIME_SETUP, F_CWD_TRUNCATED, F_CWD_OUTSIDE,
             F_EXE_TRUNCATED, F_EXE_OUTSIDE, F_FORK_FOLDED, 1 << 12)
_TEXTS = (b"", b"a", b"\x01", b"pts3", b"pts", b"pts12x", b"tty1", b"\xff\xfe", b"\xe2\x82\0\xac", b"caf\xc3\xa9",
          b"\xed\xa0\x80", b"a\nb\rc\x1b[31m|=\\", b"x" * 40)


def _put(raw: bytearray, off: int, size: int, text: bytes, rng: Any) -> None:
    """``text`` into raw[off:off+size]: at the front (NUL-padded) or at the back (as paths are)."""
    text = text[:size]
    if rng.random() < 0.5:
        raw[off:off + size] = text.ljust(size, b"\0")
    else:
        raw[off + size - len(text):off + size] = text


def mutate(raw: bytes, rng: Any) -> bytes:
    """A random hostile variant of ``raw``: flags, types, offsets, fd kinds, drift, texts with
    invalid UTF-8 and NULs, argv counts and sizes, and truncation anywhere."""
    b = bytearray(raw)
    import struct

    if len(b) >= HDR_SIZE:
        flags = 0
        for bit in FLAG_BITS:
            if rng.random() < 0.3:
                flags |= bit
        struct.pack_into("<I", b, 52, flags)
        if rng.random() < 0.2:
            struct.pack_into("<I", b, 24, rng.choice((EV_EXEC, EV_FORK, EV_EXIT, 0, 6, 257, 0x101)))
        if rng.random() < 0.3:
            struct.pack_into("<i", b, 48, rng.choice((0, -2, -13, 1, 255, -(2 ** 31))))
        if rng.random() < 0.3:
            _put(b, 56, 16, rng.choice(_TEXTS), rng)
    if len(b) >= ARGS_OFF and struct.unpack_from("<I", b, 24)[0] == EV_EXEC:
        e = ExecFixed
        if rng.random() < 0.3:
            b[e.fd_kind.offset:e.fd_kind.offset + 4] = bytes(rng.randrange(256) if rng.random() < 0.3 else rng.randrange(8)
                                                             for _ in range(4))
        if rng.random() < 0.3:
            _put(b, e.tty.offset, 32, rng.choice(_TEXTS), rng)
        if rng.random() < 0.3:
            _put(b, e.name.offset, 512, rng.choice((*_TEXTS, b"./t", b"../../x", b"t", b"y" * 600)), rng)
        for field, base in ((e.cwd_off, CWD_OFF), (e.exe_off, EXE_OFF)):
            if rng.random() < 0.3:
                text = rng.choice((*_TEXTS, b"/a/b", b"/" + b"d" * 1100))
                _put(b, base, PT_PATH_MAX, text, rng)
                off = rng.choice((PT_PATH_MAX - len(text[:PT_PATH_MAX]), 0, 1023, 1024, 1025, 65535))
                struct.pack_into("<H", b, field.offset, off)
        if rng.random() < 0.4:
            args = [rng.choice((*_TEXTS, b"z" * rng.randrange(300))) for _ in range(rng.randrange(40))]
            blob = b"".join(a + b"\0" for a in args)
            if rng.random() < 0.3:
                blob = blob[:rng.randrange(len(blob) + 1)]
            b[ARGS_OFF:] = blob
            struct.pack_into("<II", b, e.argc.offset, rng.choice((len(args), 0, 1, len(args) + 3, 200)),
                             rng.choice((len(blob), 0, len(blob) // 2, len(blob) + 10, 5000)))
    if len(b) >= FORK_CWD and struct.unpack_from("<I", b, 24)[0] in (EV_FORK, EV_EXIT) and rng.random() < 0.3:
        if len(b) >= FORK_CWD + PT_PATH_MAX:
            text = rng.choice((*_TEXTS, b"/srv"))
            _put(b, FORK_CWD, PT_PATH_MAX, text, rng)
        struct.pack_into("<H", b, HDR_SIZE, rng.choice((0, 1000, 1023, 1024, 65535)))
    if rng.random() < 0.15:
        b = b[:rng.choice((0, 10, HDR_SIZE - 1, HDR_SIZE, HDR_SIZE + 1, HDR_SIZE + 2, FORK_CWD + PT_PATH_MAX - 1,
                           ARGS_OFF - 1, ARGS_OFF, rng.randrange(len(b) + 1)))]
    return bytes(b)
