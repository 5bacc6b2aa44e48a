"""What the socket and file sensors share: loading their CO-RE objects, the in-kernel filter
config, and the path patterns (write prefixes, sensitive files) in the two forms they take.

Patterns are matched twice. In the kernel they are FNV-1a hashes in BPF hash maps (one pass
over a path costs the same for 5 or 500 patterns, and the verifier accepts it); in user space
the exact pattern is applied to what the kernel let through. Both forms come from one parse
here, so they cannot disagree. Maps are filled at start-up from ``SensorConfig``: changing
the lists needs no recompile (the objects are compiled once, by ``make bpf``).
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

import yaml
from prometheus_client import Counter

from podtrail import metrics
from podtrail.bpf.libbpf import BpfObject, SharedMaps
from podtrail.bpf.runtime import (
    IDLE_POLL_MS,
    PercpuCounters,
    RingBufferSource,
    kstr,
    ringbuf_bytes,
    take_older,
)
from podtrail.config import ConfigError, SensorConfig
from podtrail.metrics import REGISTRY
from podtrail.pipeline import Emit

log = logging.getLogger(__name__)

# Kinds in the kernel hash sets (file.bpf.c K_*).
K_PREFIX, K_EXACT, K_DIR = 1, 2, 4
FIRST_W2 = 2  # sens_first: the first directory has patterns with '*' as second component
# Event flags set by the kernel (include/netfile.bpf.h KF_*).
KF_CONTAINER, KF_SENSITIVE, KF_RELATIVE = 1, 2, 8
KF_SYN_SENT, KF_ESTABLISHED, KF_TRUNCATED = 32, 64, 128
KF_PEER_KERNEL = 256  # accept: both ends read from the new socket's struct sock
KF_PATH_CUT = 512  # the cwd/dirfd walk was cut, or the file is outside the task's root

# socket.bpf.c counts a process's identical socket events within this window instead of
# sending each (docs/fields.md, Fewer crossings); a window that ends without a next event is
# reported by the sweep, REPEAT_MARGIN_NS after its end (the kernel no longer counts into it).
REPEAT_WINDOW_NS = 1_000_000_000
REPEAT_MARGIN_NS = 50_000_000
REPEAT_SWEEP_S = 0.1
REPEAT_HEAD = 16  # struct rep_val_t: since (u64), count (u32), pad, then the kept event
REPEATS_OFF = 240  # struct sock_event_t.repeats (podtrail.bpf.socket reads it)

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_GLOB = re.compile(r"[*?\[]")


def fnv1a(data: bytes) -> int:
    """64-bit FNV-1a, the same hash file.c computes while walking a path."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


# file.bpf.c drift_stats slots: records made; opens/chmods whose inode could not be found;
# records dropped when their container's cgroup was removed.
DRIFT_OUTCOMES: Final = ("recorded", "no_inode", "container_gone")
DRIFT_RECORDS = Counter(
    "podtrail_drift_records_total",
    "Container file changes recorded in the kernel's drift map (file sensor), by outcome.",
    ["outcome"], registry=REGISTRY,
)


# ---- filter config ---------------------------------------------------------------------------


class NfCfg(ct.Structure):
    """struct nf_cfg_t in include/netfile.bpf.h."""

    _fields_ = [
        ("host_pidns_dev", ct.c_uint64),
        ("host_pidns_ino", ct.c_uint64),
        ("self_tgid", ct.c_uint32),
        ("containers_only", ct.c_uint32),
        ("loopback", ct.c_uint32),
        ("n_excluded", ct.c_uint32),
        ("drift", ct.c_uint32),
        ("pad", ct.c_uint32),
        ("repeat_window_ns", ct.c_uint64),
    ]


def nf_config(cfg: SensorConfig, n_excluded: int, repeat_window_ns: int = REPEAT_WINDOW_NS) -> NfCfg:
    """The agent's PID namespace (the host's, when run as intended: tasks outside it are in
    containers), the agent itself, and the switches."""
    st = os.stat("/proc/self/ns/pid")
    return NfCfg(st.st_dev, st.st_ino, os.getpid(), int(cfg.containers_only), int(cfg.loopback),
                 n_excluded, int(cfg.drift), 0, repeat_window_ns)


def configure_common(obj: BpfObject, cfg: SensorConfig, repeat_window_ns: int = REPEAT_WINDOW_NS) -> None:
    """Fill nf_cfg and excluded_comms (each object has its own copies)."""
    comms = [c.encode()[:15] for c in cfg.exclude_comms]
    m = obj.map("excluded_comms")
    for c in comms:
        m.update(c.ljust(16, b"\0"), b"\1")
    obj.map("nf_cfg").update(b"\0" * 4, bytes(nf_config(cfg, len(comms), repeat_window_ns)))


def fill_set(obj: BpfObject, name: str, entries: dict[int, int]) -> None:
    m = obj.map(name)
    for h, kind in entries.items():
        m.update(h.to_bytes(8, "little"), bytes([kind]))


# ---- patterns ----------------------------------------------------------------------------------


def _component_regex(pattern: str) -> re.Pattern[str]:
    """Glob to regex where ``*`` and ``?`` never cross a ``/``."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class SensitivePattern:
    pattern: str
    category: str
    regex: re.Pattern[str] = field(compare=False)
    kernel_hash: int  # of the exact path, or of the directory for last-component globs
    kernel_kind: int  # K_EXACT or K_DIR
    first_dir_hash: int
    name_hash: int | None  # literal last component, for relative paths
    second_wild: bool  # '*' is the whole second component


def parse_sensitive(pattern: str, category: str) -> SensitivePattern:
    """Check one pattern against what the kernel filter can express, and compile it."""
    if not pattern.startswith("/") or pattern.endswith("/"):
        raise ConfigError(f"sensitive path {pattern!r}: must be an absolute file path")
    comps = pattern.split("/")[1:]
    if len(comps) < 2:
        raise ConfigError(f"sensitive path {pattern!r}: must be inside a directory")
    for i, c in enumerate(comps[:-1]):
        if _GLOB.search(c) and not (i == 1 and c == "*"):
            raise ConfigError(
                f"sensitive path {pattern!r}: a wildcard may only be the whole second component "
                "(/proc/*/environ) or in the last component (/root/.ssh/id_*)"
            )
    last = comps[-1]
    if _GLOB.search(last):
        kind, key = K_DIR, pattern[: pattern.rfind("/") + 1]
        name_hash = None
    else:
        kind, key = K_EXACT, pattern
        name_hash = fnv1a(last.encode())
    return SensitivePattern(
        pattern=pattern,
        category=category,
        regex=_component_regex(pattern),
        kernel_hash=fnv1a(key.encode()),
        kernel_kind=kind,
        first_dir_hash=fnv1a(f"/{comps[0]}/".encode()),
        name_hash=name_hash,
        second_wild=len(comps) > 2 and comps[1] == "*",
    )


def shipped_sensitive() -> dict[str, list[str]]:
    """The shipped list: category -> patterns (podtrail/data/sensitive_paths.yaml)."""
    text = resources.files("podtrail").joinpath("data/sensitive_paths.yaml").read_text()
    data = yaml.safe_load(text)
    return {str(k): [str(p) for p in v] for k, v in data.items()}


def sensitive_patterns(cfg: SensorConfig) -> list[SensitivePattern]:
    """The configured list, or the shipped one. A configured pattern that is also shipped keeps
    its shipped category; ``category:pattern`` names one; others are ``custom``."""
    shipped = shipped_sensitive()
    known = {p: cat for cat, ps in shipped.items() for p in ps}
    if not cfg.sensitive_paths:
        return [parse_sensitive(p, cat) for cat, ps in shipped.items() for p in ps]
    out = []
    for entry in cfg.sensitive_paths:
        cat, sep, pat = entry.partition(":")
        if not sep or entry.startswith("/"):
            cat, pat = known.get(entry, "custom"), entry
        out.append(parse_sensitive(pat, cat))
    return out


@dataclass
class SensitiveMatcher:
    """User-space half of the sensitive list: the exact pattern and its category."""

    patterns: list[SensitivePattern]

    def category(self, path: str) -> str | None:
        for p in self.patterns:
            if p.regex.match(path):
                return p.category
        return None

    def category_of_name(self, name: str) -> str | None:
        """For a relative path that could not be resolved: the category whose pattern ends in
        this file name (what the kernel matched it on)."""
        for p in self.patterns:
            if p.name_hash is not None and p.pattern.rsplit("/", 1)[-1] == name:
                return p.category
        return None

    def kernel_sets(self) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        """(sens_set, sens_first, sens_names) contents for file.bpf.c."""
        sens: dict[int, int] = {}
        first: dict[int, int] = {}
        names: dict[int, int] = {}
        for p in self.patterns:
            if p.category == "runtime_socket":
                continue  # connect() targets, matched by the socket sensor
            sens[p.kernel_hash] = sens.get(p.kernel_hash, 0) | p.kernel_kind
            first[p.first_dir_hash] = first.get(p.first_dir_hash, 0) | 1 | (FIRST_W2 if p.second_wild else 0)
            if p.name_hash is not None:
                names[p.name_hash] = 1
        return sens, first, names


@dataclass
class WriteMatcher:
    """Watched write prefixes: ``/etc/`` (a directory and everything below) or an exact path
    (``/etc/passwd``, which also watches ``/etc/passwd/``)."""

    prefixes: list[str]

    def __post_init__(self) -> None:
        for p in self.prefixes:
            if not p.startswith("/") or _GLOB.search(p):
                raise ConfigError(f"write_prefixes: {p!r} must be an absolute path without wildcards")
        self._dirs = tuple(p if p.endswith("/") else p + "/" for p in self.prefixes)
        self._exact = frozenset(p for p in self.prefixes if not p.endswith("/"))

    def match(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._dirs)

    def kernel_set(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for d in self._dirs:
            out[fnv1a(d.encode())] = out.get(fnv1a(d.encode()), 0) | K_PREFIX
        for e in self._exact:
            out[fnv1a(e.encode())] = out.get(fnv1a(e.encode()), 0) | K_EXACT
        return out


text = kstr  # kernel bytes to text, shared with the process sensor

# Task names of a container runtime's own setup (runc's init stages, crun, youki): their file
# and socket activity happens before the workload runs and shows host paths.
_RUNTIME_COMMS: Final = ("crun", "youki")


def is_runtime_setup(comm: str) -> bool:
    """The process sensor marks these in the kernel (process.bpf.c is_runtime); socket and
    file events carry the same mark from the task name."""
    return comm.startswith("runc:[") or comm in _RUNTIME_COMMS


# ---- the sources -----------------------------------------------------------------------------


class NetFileSource(RingBufferSource):
    """One of the two objects (socket.bpf.o, file.bpf.o) as a pipeline ``Source``: the shared
    ring-buffer reader (``podtrail.bpf.runtime``) plus the filter maps both objects have,
    which ``reconfigure`` rewrites at run time."""

    def __init__(self, name: str, obj: str, decode: Callable[[bytes], Any],
                 configure: Callable[[BpfObject], None], cfg: SensorConfig,
                 shared: SharedMaps | None = None, repeat_window_ns: int = REPEAT_WINDOW_NS) -> None:
        self._cfg = cfg
        self.repeat_window_ns = repeat_window_ns

        def configure_all(o: BpfObject) -> None:
            configure_common(o, self._cfg, self.repeat_window_ns)
            configure(o)

        super().__init__(name, obj, decode, prepare=leave_out_missing, configure=configure_all,
                         ringbuf_bytes=ringbuf_bytes(cfg.ringbuf_pages), shared=shared)
        self._drift = PercpuCounters("drift_stats", DRIFT_OUTCOMES, lambda o, n: DRIFT_RECORDS.labels(o).inc(n))
        self._repeats = PercpuCounters("repeat_stats", ("socket_repeats",),
                                       lambda o, n: metrics.kernel_reduced(self.name, o, n))
        self._next_flush = 0.0
        self.repeat_flushes = 0
        self._samples_seen = 0
        self._windows_until = 0.0  # windows may be open until then: sweep every REPEAT_SWEEP_S
        self._repeats_map: bool | None = None  # the object has the socket sensor's repeats map

    def _count_lost(self, skipped: bool = True) -> None:
        super()._count_lost(skipped)
        if self.obj is not None:
            self._drift.export(self.obj)
            self._repeats.export(self.obj)

    def _timeout_ms(self) -> int:
        """A repeat window opens with a sent sample: for a window and its margin after the last
        one, wake for the sweep; after a quiet wait, IDLE_POLL_MS (an idle reader wakes once a
        second); else the poll timeout."""
        now = time.monotonic()
        if self.samples != self._samples_seen:
            self._samples_seen = self.samples
            self._windows_until = now + (self.repeat_window_ns + REPEAT_MARGIN_NS) / 1e9 + REPEAT_SWEEP_S
        if now < self._windows_until and self._has_repeats():
            return self._until_ms(self._next_flush)
        return IDLE_POLL_MS if self.quiet else self._poll_ms

    def _has_repeats(self) -> bool:
        if self._repeats_map is None and self.obj is not None:
            self._repeats_map = self.obj.has_map("repeats")
        return bool(self._repeats_map)

    def _poll(self, timeout_ms: int) -> None:
        super()._poll(timeout_ms)
        now = time.monotonic()
        if now >= self._next_flush:
            self._next_flush = now + REPEAT_SWEEP_S
            self.flush_repeats(self.repeat_window_ns + REPEAT_MARGIN_NS)

    def flush_repeats(self, min_age_ns: int) -> int:
        """Report the counted repeats of windows at least ``min_age_ns`` old that no later
        event carried: the last of them, with ``repeat_count`` = how many were counted."""
        obj = self.obj
        if obj is None or not self._has_repeats():
            return 0
        n = 0
        for raw in take_older(obj.map("repeats"), time.monotonic_ns() - min_age_ns):
            count = int.from_bytes(raw[8:12], "little")
            if count:  # an entry without repeats only held its window open
                last = bytearray(raw[REPEAT_HEAD:])
                last[REPEATS_OFF:REPEATS_OFF + 4] = (count - 1).to_bytes(4, "little")
                self._deliver(bytes(last))
                n += 1
        self.repeat_flushes += n
        return n

    def run(self, emit: Emit, stop: threading.Event) -> None:
        super().run(emit, stop)
        self.flush_repeats(0)  # counted repeats are reported at stop, not lost

    def reconfigure(self, cfg: SensorConfig) -> None:
        """New filter settings for the running object (maps only)."""
        assert self.obj is not None, "reconfigure before load"
        self._cfg = cfg
        self.obj.map("excluded_comms").clear()
        configure_common(self.obj, cfg)


def leave_out_missing(obj: BpfObject) -> None:
    """Programs for tracepoints this kernel lacks are left out: sys_*_fchmodat2 (Linux 6.6+)
    and the timestamp tracepoints that give a path-based chmod's inode (6.13+; without them
    only creates, writes and fchmod are recorded for drift)."""
    for name in obj.programs():
        event = TRACEPOINT_OF.get(name) or _syscall_event(name)
        if event and not os.path.exists(f"/sys/kernel/tracing/events/{event}"):
            log.info("%s: no tracepoint %s on this kernel; %s left out", obj.name, event, name)
            obj.set_autoload(name, False)


TRACEPOINT_OF: Final = {
    "drift_ctime_xchg": "timestamp/ctime_ns_xchg",
    "drift_ctime_skip": "timestamp/ctime_xchg_skip",
    "drift_ctime_set": "timestamp/inode_set_ctime_to_ts",
    "drift_cgroup_gone": "cgroup/cgroup_rmdir",
}


def _syscall_event(program: str) -> str | None:
    kind, _, sc = program.partition("_")
    return f"syscalls/sys_{kind}_{sc}" if kind in ("enter", "exit") and sc else None


def build_socket_file_sources(cfg: SensorConfig, shared: SharedMaps | None = None) -> list[NetFileSource]:
    """The socket and/or file sources per ``cfg.sockets`` / ``cfg.files``. With ``shared``, the
    file object's ``drift_inodes`` is the process object's map (include/drift.h): the file
    sensor records there, the process sensor judges each exec against it, both in the kernel.
    Relative paths and drift need no pipeline stage any more."""
    from podtrail.bpf.file import FileDecoder
    from podtrail.bpf.socket import SocketDecoder

    sensitive = SensitiveMatcher(sensitive_patterns(cfg))
    writes = WriteMatcher(cfg.write_prefixes)
    sources: list[NetFileSource] = []
    if cfg.sockets:
        sources.append(NetFileSource("ebpf-socket", "socket", SocketDecoder(sensitive).decode, lambda o: None, cfg))
    if cfg.files:
        def configure_file(o: BpfObject) -> None:
            sens, first, names = sensitive.kernel_sets()
            fill_set(o, "sens_set", sens)
            fill_set(o, "sens_first", first)
            fill_set(o, "sens_names", names)
            fill_set(o, "write_set", writes.kernel_set())

        decoder = FileDecoder(writes, sensitive)
        sources.append(NetFileSource("ebpf-file", "file", decoder.decode, configure_file, cfg,
                                     shared=shared or SharedMaps()))
    return sources
