"""The process sensor: exec/fork/exit samples from process.bpf.c decoded into podtrail events.

Every fact of an exec comes from the sample, read in the kernel at the event (cwd, executable,
fd kinds, credentials, namespaces, drift): decoding is pure, nothing is read from /proc.
cgroup mkdir/rmdir samples are not events: they feed the cgroup id index (``on_cgroup``)
from the same ordered ring buffer, so a new container's cgroup is known before its first exec.

Forks are folded in the kernel into the exec that follows (process.bpf.c): the exec carries
``fork_folded``. A child that neither execs nor exits stays in the kernel's ``held_forks``
map until ``ProcessSource`` sweeps it (``FORK_HOLD_NS``): it is then reported from the stored
sample, exactly as the kernel would have sent it, only later.
"""

from __future__ import annotations

import ctypes as ct
import logging
import mmap
import os
import posixpath
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from podtrail import metrics, native
from podtrail.bpf.libbpf import BpfObject, SharedMaps
from podtrail.bpf.runtime import PercpuCounters, RingBufferSource, WallClock, kstr, ringbuf_bytes, take_older
from podtrail.config import SensorConfig
from podtrail.model.context import EventDict
from podtrail.model.event import _SEQ, HOSTNAME, RUN_PREFIX, Event, new_event_id
from podtrail.model.fields import Kind
from podtrail.pipeline import Emit

EV_EXEC, EV_FORK, EV_EXIT, EV_CGROUP_MKDIR, EV_CGROUP_RMDIR = 1, 2, 3, 4, 5
F_ARGS_TRUNCATED, F_CONTAINER, F_EXIT_KNOWN, F_NO_ENTER = 1, 2, 4, 8
F_RUNTIME_SETUP, F_CWD_TRUNCATED, F_CWD_OUTSIDE, F_EXE_TRUNCATED, F_EXE_OUTSIDE = 16, 32, 64, 128, 256
F_FORK_FOLDED = 512
# fold_stats slots (process.bpf.c FOLD_*), as podtrail_kernel_reductions_total outcomes
FOLD_OUTCOMES = ("fork_folded", "fork_map_full")
FORK_HOLD_NS = 100_000_000  # a held fork older than this is reported by the sweep
# task_facts.h
PT_PATH_MAX, PT_NAME_MAX = 1024, 256
PT_PATH_BUF = PT_PATH_MAX + PT_NAME_MAX
FD_KINDS = ("closed", "tty", "pipe", "socket", "file", "null", "other")
# drift.h
DRIFT_REASONS = {1: "created_in_container", 2: "modified_in_container", 3: "memfd", 4: "dev_shm"}
ARGS_CAP, ARG_MAX_READ, MAX_ARGS_CAP = 16384, 4096, 128
NAME_BUF, TTY_LEN = 512, 32

log = logging.getLogger(__name__)

OnCgroup = Callable[[int, str | None], None]  # (cgroup id, path or None when removed)


class Hdr(ct.Structure):
    _fields_ = [
        ("ktime", ct.c_uint64), ("cgroup_id", ct.c_uint64), ("start_ns", ct.c_uint64),
        ("type", ct.c_uint32), ("pid", ct.c_uint32), ("tid", ct.c_uint32), ("ppid", ct.c_uint32),
        ("uid", ct.c_uint32), ("gid", ct.c_uint32), ("result", ct.c_int32),
        ("flags", ct.c_uint32), ("comm", ct.c_char * 16),
    ]


class ExecFixed(ct.Structure):
    """struct exec_t up to ``args`` (process.bpf.c)."""

    _fields_ = [
        ("h", Hdr), ("exe_ino", ct.c_uint64), ("exe_dev", ct.c_uint64), ("cap_effective", ct.c_uint64),
        ("euid", ct.c_uint32), ("egid", ct.c_uint32), ("auid", ct.c_uint32), ("sessionid", ct.c_uint32),
        ("mnt_ns", ct.c_uint32), ("pid_ns", ct.c_uint32), ("net_ns", ct.c_uint32),
        ("argc", ct.c_uint32), ("args_size", ct.c_uint32),
        ("name_len", ct.c_uint16), ("cwd_off", ct.c_uint16), ("exe_off", ct.c_uint16),
        ("fd_kind", ct.c_uint8 * 3), ("drift", ct.c_uint8), ("tty", ct.c_char * TTY_LEN),
        ("name", ct.c_char * NAME_BUF), ("cwd", ct.c_char * PT_PATH_BUF), ("exe", ct.c_char * PT_PATH_BUF),
    ]


class Config(ct.Structure):
    """``const volatile struct config CFG`` (process.bpf.c), set before load."""

    _fields_ = [
        ("host_pidns_ino", ct.c_uint64), ("self_tgid", ct.c_uint32), ("containers_only", ct.c_uint32),
        ("max_args", ct.c_uint32), ("arg_size", ct.c_uint32), ("fold_forks", ct.c_uint32),
        ("pad", ct.c_uint32),
    ]


HDR_SIZE = ct.sizeof(Hdr)
FORK_CWD = HDR_SIZE + 8  # struct fork_t (fork and exit): header, cwd_off + padding, cwd
EXEC_FIXED = ct.sizeof(ExecFixed)
# char arrays read as fields stop at the first NUL: paths (written back to front) are sliced
CWD_OFF, EXE_OFF = ExecFixed.cwd.offset, ExecFixed.exe.offset
ARGS_OFF = ExecFixed.exe.offset + PT_PATH_BUF  # args follow exe (sizeof(ExecFixed) has tail padding)


def split_args(buf: bytes, argc: int, max_args: int = MAX_ARGS_CAP, arg_size: int = ARG_MAX_READ) -> tuple[list[str], bool]:
    """argv from its NUL-separated bytes: at most ``max_args`` arguments of at most
    ``arg_size - 1`` bytes (the kernel reads a successful exec's argv whole, from the new
    image); and whether anything was cut."""
    keep = arg_size - 1
    if len(buf) <= keep:  # no argument can be too long: decode once, split the text
        # (NUL is never inside a UTF-8 sequence, so each invalid byte is escaped as per part)
        parts = buf.decode("utf-8", "backslashreplace").split("\0", argc)[:argc]
        if len(parts) > max_args:
            return parts[:max_args], True
        return parts, False
    raw = buf.split(b"\0", argc)[:argc]
    cut = len(raw) > max_args
    if cut:
        raw = raw[:max_args]
    if any(len(p) > keep for p in raw):
        cut = True
        raw = [p[:keep] for p in raw]
    return [p.decode("utf-8", "backslashreplace") for p in raw], cut


def _generation(fork: bytes) -> int:
    """The held_count generation a held fork_t was stamped with (its ``held_epoch``)."""
    return int(_GEN.unpack_from(fork, HDR_SIZE + 2)[0])


def tty_name(raw: str) -> str:
    """The kernel's tty name to the /dev name ps shows: ``pts3`` → ``pts/3``."""
    if raw.startswith("pts") and raw[3:].isdigit():
        return f"pts/{raw[3:]}"
    return raw


def absolute(name: str, cwd: str) -> str:
    """The name exec was called with, made absolute against the cwd the kernel captured;
    absolute names are kept as the caller wrote them (``/bin/mkfifo`` stays, even when it
    is a link to busybox): rules and analysts key on the tool's name."""
    if not name or name.startswith("/") or not cwd:
        return name
    return posixpath.normpath(posixpath.join(cwd, name))


def kernel_dev(dev: int) -> int:
    """Kernel dev_t (major << 20 | minor) to the user-space one ``stat`` reports."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


# The sample layouts as precompiled unpackers ("<": no padding; the offsets are checked against
# the ctypes declarations above at import). One unpack_from reads every number of a sample;
# text is cut out of the sample up to its NUL (decoded, then cut at the first "\0": NUL is never
# inside a UTF-8 sequence, so the text is the one ``kstr`` makes), never copied as a whole field.
# process.bpf.c struct held_count_t, mapped: the counts per generation (native: each one load),
# then the epoch user space writes
HELD_GENERATIONS = 3
_HELD = struct.Struct("3q")
_U32N = struct.Struct("I")
_EPOCH_OFF = _HELD.size
_GEN = struct.Struct("<H")
_HDR = struct.Struct("<QQQIIIIIIiI16s")  # hdr_t: ktime .. flags, comm
_HDR_OFF = struct.Struct("<QQQIIIIIIiI16sH")  # and fork_t's cwd_off (exec: the low half of exe_ino)
_HDR_OFF_SIZE, _unpack_hdr_off = _HDR_OFF.size, _HDR_OFF.unpack_from
_FORK_END = FORK_CWD + PT_PATH_MAX
_EXEC = struct.Struct("<QQQIIIIIIIIIHHH4B")  # exec_t after the header: exe_ino .. drift (fd_kind[3], drift)
TTY_OFF, NAME_OFF = ExecFixed.tty.offset, ExecFixed.name.offset
assert _HDR.size == HDR_SIZE and HDR_SIZE + _EXEC.size == TTY_OFF, "struct formats disagree with the C layout"
assert ExecFixed.exe_ino.offset == HDR_SIZE and ExecFixed.fd_kind.offset + 4 == TTY_OFF
_FD_KIND = FD_KINDS + ("other",) * (256 - len(FD_KINDS))  # by the kernel's u8
_CWD_END, _EXE_END, _NAME_END = CWD_OFF + PT_PATH_MAX, EXE_OFF + PT_PATH_MAX, NAME_OFF + NAME_BUF
_NO_CWD = F_CWD_TRUNCATED | F_CWD_OUTSIDE
_NO_EXE = F_EXE_TRUNCATED | F_EXE_OUTSIDE
_PROCESS = Kind.PROCESS.value
_U = "utf-8"
_BR = "backslashreplace"


class ProcessDecoder:
    """Raw samples to events: exactly what ``new_event`` plus the fields made before (same
    keys in the same order, an ``EventDict`` with the next ``event_id``), built by one
    ``EventDict(...)`` call per sample kind. Every exec and exit goes through here, so it is
    written for speed: one ``unpack_from`` per layout, text sliced out of the sample, no helper
    calls on the common path (tests/unit/test_process_decode_equal.py and
    tests/spine/test_process_decode_real.py hold it to the ctypes reading it replaced)."""

    def __init__(self, on_cgroup: OnCgroup | None = None, max_args: int = 32, arg_size: int = 256) -> None:
        self.clock = WallClock()
        self.on_cgroup = on_cgroup
        self.max_args = max_args  # the argv limits (SensorConfig argv_max_args, argv_max_arg_bytes)
        self.arg_size = arg_size
        self.native = native_decoder(self)

    def decode_any(self, raw: bytes) -> Event | None:
        """``decode`` through the C decoder where there is one (what the ring buffer's C
        callback does per sample): the same event, the same refusals."""
        n = self.native
        if n is not None:
            ev = n.decode(raw)
            if ev is not raw:
                return ev  # type: ignore[no-any-return]
        return self.decode(raw)

    def decode(self, raw: bytes) -> Event | None:
        size = len(raw)
        if size >= _HDR_OFF_SIZE:
            (ktime, cgroup_id, start_ns, typ, pid, tid, ppid, uid, gid, result, flags, comm,
             off) = _unpack_hdr_off(raw)
        else:  # a header alone (or too short: struct.error, counted by the reader)
            (ktime, cgroup_id, start_ns, typ, pid, tid, ppid, uid, gid, result, flags, comm) = _HDR.unpack_from(raw)
            off = PT_PATH_MAX
        if typ == EV_EXEC:
            return self._exec(raw, ktime, cgroup_id, start_ns, pid, tid, ppid, uid, gid, result, flags, comm)
        if typ != EV_EXIT and typ != EV_FORK:
            if typ == EV_CGROUP_MKDIR or typ == EV_CGROUP_RMDIR:
                if self.on_cgroup is not None:
                    path = kstr(raw[HDR_SIZE:HDR_SIZE + PT_PATH_BUF]) if typ == EV_CGROUP_MKDIR else None
                    self.on_cgroup(cgroup_id, path)
            return None
        t = ktime + self.clock.offset
        ev = EventDict(
            event_id=new_event_id(), event_type=_PROCESS, action="exit" if typ == EV_EXIT else "fork",
            time=t // 1_000_000_000, time_ns=t, hostname=HOSTNAME,
            source="ebpf", pid=pid, tid=tid, uid=uid, gid=gid, ppid=ppid,
            comm=comm.decode(_U, _BR).partition("\0")[0],
            cgroup_id=cgroup_id, mono_ns=ktime, start_ns=start_ns,
        )
        if flags & F_RUNTIME_SETUP:
            ev["runtime_setup"] = True
        if off < PT_PATH_MAX and size >= _FORK_END:
            cwd = raw[FORK_CWD + off:_FORK_END].decode(_U, _BR).partition("\0")[0]
            if cwd:
                ev["cwd"] = cwd
                if flags & _NO_CWD:
                    ev["cwd_truncated"] = True
        if typ == EV_EXIT and flags & F_EXIT_KNOWN:
            ev["exit_code"] = result
        return ev

    def _exec(self, raw: bytes, ktime: int, cgroup_id: int, start_ns: int, pid: int, tid: int, ppid: int,
              uid: int, gid: int, result: int, flags: int, comm: bytes) -> Event:
        if len(raw) < ARGS_OFF:  # a short sample reads as zeros past its end
            raw = raw.ljust(ARGS_OFF, b"\0")
        (exe_ino, exe_dev, cap_effective, euid, _egid, auid, sessionid, mnt_ns, pid_ns, net_ns, argc,
         args_size, _name_len, cwd_off, exe_off, k0, k1, k2, drift) = _EXEC.unpack_from(raw, HDR_SIZE)
        cwd = raw[CWD_OFF + cwd_off:_CWD_END].decode(_U, _BR).partition("\0")[0] if cwd_off < PT_PATH_MAX else ""
        n = raw.find(b"\0", NAME_OFF, _NAME_END)
        name = raw[NAME_OFF:_NAME_END if n < 0 else n].decode(_U, _BR)
        if name and name[0] != "/":
            name = absolute(name, cwd)
        argv, cut = split_args(raw[ARGS_OFF:ARGS_OFF + args_size], argc, self.max_args, self.arg_size)
        t = ktime + self.clock.offset
        ev = EventDict(
            event_id=new_event_id(), event_type=_PROCESS, action="exec",
            time=t // 1_000_000_000, time_ns=t, hostname=HOSTNAME,
            path=name, argv=argv, cmdline=" ".join(argv),
            args_truncated=cut or bool(flags & F_ARGS_TRUNCATED), result=result, cwd=cwd,
            stdin=_FD_KIND[k0], stdout=_FD_KIND[k1], stderr=_FD_KIND[k2],
            euid=euid, auid=auid, session_id=sessionid, cap_effective=cap_effective,
            mnt_ns=mnt_ns, pid_ns=pid_ns, net_ns=net_ns,
            source="ebpf", pid=pid, tid=tid, uid=uid, gid=gid, ppid=ppid,
            comm=comm.decode(_U, _BR).partition("\0")[0],
            cgroup_id=cgroup_id, mono_ns=ktime, start_ns=start_ns,
        )
        if flags & F_RUNTIME_SETUP:
            ev["runtime_setup"] = True
        if flags & _NO_CWD:
            ev["cwd_truncated"] = True
        if raw[TTY_OFF]:
            tty = tty_name(raw[TTY_OFF:TTY_OFF + TTY_LEN].decode(_U, _BR).partition("\0")[0])
            if tty:
                ev["tty"] = tty
        if result == 0:
            ev["exe_path"] = raw[EXE_OFF + exe_off:_EXE_END].decode(_U, _BR).partition("\0")[0] if exe_off < PT_PATH_MAX else ""
            ev["exe_inode"] = exe_ino
            ev["exe_dev"] = kernel_dev(exe_dev)
            if flags & _NO_EXE:
                ev["exe_outside"] = True
        if drift:
            ev["drift"] = True
            ev["drift_reason"] = DRIFT_REASONS.get(drift, "other")
        if flags & F_FORK_FOLDED:
            ev["fork_folded"] = True
        if flags & F_NO_ENTER:
            del ev["argv"], ev["cmdline"]
        return ev


# What podtrail/bpf/_process.c compiles in, as this module declares it: a C decoder that
# disagrees (a layout changed on one side only) is not used.
NATIVE_LAYOUT = {
    "HDR_SIZE": HDR_SIZE, "FORK_CWD": FORK_CWD, "ARGS_OFF": ARGS_OFF, "TTY_OFF": TTY_OFF, "NAME_OFF": NAME_OFF,
    "CWD_OFF": CWD_OFF, "EXE_OFF": EXE_OFF,
    **{f: getattr(ExecFixed, f).offset for f in ("exe_ino", "argc", "args_size", "cwd_off", "exe_off", "fd_kind", "drift")},
    **{f: getattr(Hdr, f).offset for f in ("comm", "flags", "result")},
    "PT_PATH_MAX": PT_PATH_MAX, "NAME_BUF": NAME_BUF, "TTY_LEN": TTY_LEN,
    "EV_EXEC": EV_EXEC, "EV_FORK": EV_FORK, "EV_EXIT": EV_EXIT, "F_ARGS_TRUNCATED": F_ARGS_TRUNCATED,
    "F_EXIT_KNOWN": F_EXIT_KNOWN, "F_NO_ENTER": F_NO_ENTER, "F_RUNTIME_SETUP": F_RUNTIME_SETUP, "F_CWD": _NO_CWD,
    "F_EXE": _NO_EXE, "F_FORK_FOLDED": F_FORK_FOLDED,
}


def native_decoder(dec: ProcessDecoder) -> Any:
    """``dec``'s twin in C (podtrail.bpf._process.Decoder: same clock, limits and event ids),
    or None where it is not built, turned off, or compiled for another layout."""
    mod = native.load("podtrail.bpf._process")
    if mod is None:
        return None
    if mod.layout() != NATIVE_LAYOUT:
        log.warning("podtrail.bpf._process was built for another sample layout: rebuild it (make native); "
                    "decoding in Python")
        return None
    if dec.max_args < 0 or dec.arg_size < 1:
        return None
    return mod.Decoder(EventDict, dec.clock, _SEQ, RUN_PREFIX, _PROCESS, HOSTNAME, _FD_KIND, DRIFT_REASONS,
                       dec.max_args, dec.arg_size)


def process_config(cfg: SensorConfig, fold_forks: bool = True) -> Config:
    """The read-only kernel config: self filter, containers_only, argv limits, host PID ns,
    fork folding."""
    return Config(
        host_pidns_ino=os.stat("/proc/self/ns/pid").st_ino, self_tgid=os.getpid(),
        containers_only=int(cfg.containers_only),
        max_args=max(1, min(cfg.argv_max_args, MAX_ARGS_CAP)),
        arg_size=max(16, min(cfg.argv_max_arg_bytes, ARG_MAX_READ)),
        fold_forks=int(fold_forks),
    )


class ProcessSource(RingBufferSource):
    """The process object's ring buffer, plus the sweep of forks held in the kernel.

    A child that neither execs nor exits (a daemon's worker, a long subshell) stays in the
    kernel's ``held_forks``; the reader thread takes such entries with lookup-and-delete and
    emits each as the fork event the kernel would have sent, while the child lives. The kernel
    deletes entries as well (exec, exit, a child's fork); whichever side deletes first reports,
    exactly once. At stop every held fork is reported.

    Walking the map is what costs (it visits every bucket: ~0.2 ms at every sweep for the
    8192 it had, even empty), so it is walked only when a fork is known to be held for the hold
    time: every ``hold_ns / 2`` the reader starts a new generation of the kernel's
    ``held_count`` (it writes the epoch; the kernel stamps each held fork with epoch % 3 and
    counts holds and its own takes per generation). Before a generation's slot is used again,
    the forks still held from it are at least ``hold_ns`` old: if its count, less the forks
    taken here, says some are, the map is walked, up to the last of them. A fork is reported
    ``hold_ns`` to 1.5 ``hold_ns`` after it happened; forks that exec or exit sooner (nearly
    all) never cost a walk."""

    def __init__(self, *a: Any, hold_ns: int = FORK_HOLD_NS, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.hold_ns = hold_ns
        self.forks_sent_late = 0
        self.walks = 0  # sweeps that walked the map
        self.epoch = 0  # the generation the kernel stamps new holds with (epoch % 3)
        self._next_epoch = 0.0
        self._taken = [0] * HELD_GENERATIONS  # forks taken here, by generation
        self._count: mmap.mmap | None = None  # the kernel's held_count, mapped
        self._folds = PercpuCounters("fold_stats", FOLD_OUTCOMES,
                                     lambda outcome, n: metrics.kernel_reduced(self.name, outcome, n))
        self._sweep_lock = threading.Lock()

    def load(self) -> None:
        super().load()
        obj = self.obj
        if obj is not None and obj.has_map("held_count") and self._count is None:
            self._count = mmap.mmap(obj.map("held_count").fd, mmap.PAGESIZE, mmap.MAP_SHARED,
                                    mmap.PROT_READ | mmap.PROT_WRITE)

    def _timeout_ms(self) -> int:
        """While the kernel may hold a fork, wake for the next generation (a held fork is so
        reported ``hold_ns`` to 1.5 ``hold_ns`` after it happened); else the poll timeout (an
        idle reader wakes 5 times a second, not 20; a late generation only makes the forks in
        it older, never reported early)."""
        return self._poll_ms if self.held() <= 0 else self._until_ms(self._next_epoch)

    def _poll(self, timeout_ms: int) -> None:
        super()._poll(timeout_ms)
        now = time.monotonic()
        if now >= self._next_epoch:
            self._next_epoch = now + self.hold_ns / 2e9
            self.next_generation()

    def next_generation(self) -> None:
        """Take the forks still held from the generation whose slot comes next (walking the
        map only if its count says there are some), then start that generation."""
        k = (self.epoch + 1) & 0xFFFFFFFF  # the kernel's u32
        gen = k % HELD_GENERATIONS
        left = self.held(gen)
        if left > 0:
            self.sweep(self.hold_ns, left, gen)
        self.epoch = k
        if self._count is not None:
            _U32N.pack_into(self._count, _EPOCH_OFF, k)

    def held(self, gen: int | None = None) -> int:
        """Forks the kernel may hold (in generation ``gen``, or in all): never fewer than it
        does; 1 when it cannot say."""
        if self._count is None:
            return 1
        counts = _HELD.unpack_from(self._count)
        gens = range(HELD_GENERATIONS) if gen is None else (gen,)
        return sum(counts[g] - self._taken[g] for g in gens)

    def close(self) -> None:
        super().close()
        if self._count is not None:
            self._count.close()
            self._count = None

    def sweep(self, min_age_ns: int, left: int | None = None, gen: int = 0) -> int:
        """Report the held forks at least ``min_age_ns`` old; how many were reported. With
        ``left``, the walk ends once it has seen that many forks of generation ``gen``."""
        obj = self.obj
        if obj is None or not obj.has_map("held_forks"):
            return 0
        with self._sweep_lock:
            n = 0
            self.walks += 1
            counted = None if left is None else (lambda v: _generation(v) == gen)
            for raw in take_older(obj.map("held_forks"), time.monotonic_ns() - min_age_ns, left, counted):
                n += 1
                g = _generation(raw)
                if g < HELD_GENERATIONS:
                    self._taken[g] += 1  # before its event: held() never counts it twice
                self._deliver(raw)  # the fork_t sample, as the kernel would have sent it
            if n:
                self.forks_sent_late += n
                metrics.kernel_reduced(self.name, "fork_sent_late", n)
            return n

    def _count_lost(self, skipped: bool = True) -> None:
        super()._count_lost(skipped)
        if self.obj is not None:
            self._folds.export(self.obj)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        super().run(emit, stop)
        self.sweep(0)  # nothing held is lost at stop


def build_process_source(cfg: SensorConfig, on_cgroup: OnCgroup | None = None,
                         shared: SharedMaps | None = None, *, fold_forks: bool = True,
                         hold_ns: int = FORK_HOLD_NS) -> ProcessSource:
    """The process sensor as a pipeline Source (name ``ebpf-process``). With ``shared``, its
    ``drift_inodes`` map is the file sensor's (whichever object loads first creates it).
    ``fold_forks=False`` sends every fork as it happens (the sensor as it was, for comparison)."""
    limits = process_config(cfg)
    decoder = ProcessDecoder(on_cgroup, limits.max_args, limits.arg_size)

    def prepare(obj: BpfObject) -> None:
        obj.set_rodata(bytes(process_config(cfg, fold_forks)))

    src = ProcessSource("ebpf-process", "process", decoder.decode, prepare=prepare,
                        ringbuf_bytes=ringbuf_bytes(cfg.ringbuf_pages), shared=shared, hold_ns=hold_ns,
                        native_decoder=decoder.native)
    src.decoder = decoder  # type: ignore[attr-defined]
    return src
