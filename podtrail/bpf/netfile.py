"""What the socket and file sensors share: program text, the in-kernel filter config, and the
path patterns (write prefixes, sensitive files) in the two forms they take.

Patterns are matched twice. In the kernel they are FNV-1a hashes in BPF hash maps (one pass
over a path costs the same for 5 or 500 patterns, and the verifier accepts it); in user space
the exact pattern is applied to what the kernel let through. Both forms come from one parse
here, so they cannot disagree. Maps are filled at start-up from ``SensorConfig``: changing
the lists needs no recompile.
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from podtrail.bpf.bcc_compat import BccRingBufferSource as RingBufferSource
from podtrail.bpf.runtime import host_pidns_flags, kstr
from podtrail.config import ConfigError, SensorConfig

log = logging.getLogger(__name__)

BPF_DIR = Path(__file__).parent

# Kinds in the kernel hash sets (file.c K_*).
K_PREFIX, K_EXACT, K_DIR = 1, 2, 4
FIRST_W2 = 2  # sens_first: the first directory has patterns with '*' as second component
# Event flags set by the kernel (netfile.h KF_*).
KF_CONTAINER, KF_SENSITIVE, KF_DRIFT_ONLY, KF_RELATIVE = 1, 2, 4, 8
KF_PEER_USER, KF_SYN_SENT, KF_ESTABLISHED, KF_TRUNCATED = 16, 32, 64, 128
KF_PEER_KERNEL = 256  # accept: ends from the kernel's SYN_RECV -> ESTABLISHED transition

# The kernel wakes the reader only when 64 KiB wait (netfile.h WAKEUP_BYTES); below that,
# samples are picked up by this poll timeout.
POLL_MS = 50

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_GLOB = re.compile(r"[*?\[]")


def fnv1a(data: bytes) -> int:
    """64-bit FNV-1a, the same hash file.c computes while walking a path."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


# ---- program text and compile flags --------------------------------------------------------


def program_text(name: str) -> str:
    """``socket.c`` or ``file.c`` with netfile.h inlined: BCC rewrites map calls (``m.lookup``)
    only in the main text, not in included headers."""
    text = (BPF_DIR / name).read_text()
    return text.replace('#include "netfile.h"', (BPF_DIR / "netfile.h").read_text())


def cflags(cfg: SensorConfig) -> list[str]:
    """Compile-time constants: the host PID namespace (containers are tasks outside it) and
    the ring buffer size. Everything a user may change at run time is in maps instead."""
    flags = [*host_pidns_flags(), f"-DRINGBUF_PAGES={cfg.ringbuf_pages}"]
    if os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_fchmodat2"):
        flags.append("-DHAVE_FCHMODAT2")
    return flags


class NfCfg(ct.Structure):
    _fields_ = [
        ("self_tgid", ct.c_uint32),
        ("containers_only", ct.c_uint32),
        ("loopback", ct.c_uint32),
        ("n_excluded", ct.c_uint32),
        ("drift", ct.c_uint32),
    ]


class CommKey(ct.Structure):
    _fields_ = [("c", ct.c_char * 16)]


def configure_common(bpf: Any, cfg: SensorConfig) -> None:
    """Fill nf_cfg and excluded_comms (both programs have their own copies)."""
    comms = [c.encode()[:15] for c in cfg.exclude_comms]
    for c in comms:
        bpf["excluded_comms"][CommKey(c)] = ct.c_uint8(1)
    bpf["nf_cfg"][ct.c_int(0)] = NfCfg(
        os.getpid(), int(cfg.containers_only), int(cfg.loopback), len(comms), int(cfg.drift),
    )


def fill_set(table: Any, entries: dict[int, int]) -> None:
    for h, kind in entries.items():
        table[ct.c_uint64(h)] = ct.c_uint8(kind)


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
        """(sens_set, sens_first, sens_names) contents for file.c."""
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


# ---- the sources -----------------------------------------------------------------------------


class NetFileSource(RingBufferSource):
    """One of the two programs (socket.c, file.c) as a pipeline ``Source``: the shared
    ring-buffer reader (``podtrail.bpf.runtime``) plus the filter maps both programs share,
    which ``reconfigure`` rewrites without a recompile."""

    def __init__(self, name: str, program: str, decode: Callable[[bytes], Any],
                 configure: Callable[[Any], None], cfg: SensorConfig) -> None:
        self.program = program
        self._cfg = cfg

        def configure_all(bpf: Any) -> None:
            configure_common(bpf, self._cfg)
            configure(bpf)

        super().__init__(name, lambda: program_text(program), lambda: cflags(self._cfg), decode,
                         configure_all, poll_ms=POLL_MS)

    def reconfigure(self, cfg: SensorConfig) -> None:
        """New filter settings for the running program (maps only, no recompile)."""
        self._cfg = cfg
        self.bpf["excluded_comms"].clear()
        configure_common(self.bpf, cfg)


def build_socket_file_sources(cfg: SensorConfig) -> tuple[list[NetFileSource], list[Any], Any]:
    """The lead's entry point: (sources, stages, drift tracker) for the enabled sensors.

    Sources: socket and/or file per ``cfg.sockets`` / ``cfg.files``. Stages, to wire after
    the process-table stage: ``RelativePathStage`` (relative paths of processes that exited
    too soon, from the event's cwd/ppid) and ``DriftStage`` (needs exec events' pid, path,
    cgroup_id and mono_ns; file notes come straight from the file source).
    """
    from podtrail.bpf.file import FileDecoder
    from podtrail.bpf.socket import SocketDecoder
    from podtrail.enrich.drift import DriftStage, DriftTracker
    from podtrail.enrich.relpath import RelativePathStage

    sensitive = SensitiveMatcher(sensitive_patterns(cfg))
    writes = WriteMatcher(cfg.write_prefixes)
    tracker = DriftTracker()
    sources: list[NetFileSource] = []
    if cfg.sockets:
        sources.append(NetFileSource("ebpf-socket", "socket.c", SocketDecoder(sensitive).decode, lambda b: None, cfg))
    if cfg.files:
        def configure_file(bpf: Any) -> None:
            sens, first, names = sensitive.kernel_sets()
            fill_set(bpf["sens_set"], sens)
            fill_set(bpf["sens_first"], first)
            fill_set(bpf["sens_names"], names)
            fill_set(bpf["write_set"], writes.kernel_set())

        decoder = FileDecoder(writes, sensitive, tracker if cfg.drift else None)
        sources.append(NetFileSource("ebpf-file", "file.c", decoder.decode, configure_file, cfg))
    stages: list[Any] = [RelativePathStage(writes, sensitive)] if cfg.files else []
    if cfg.drift:
        stages.append(DriftStage(tracker))
    return sources, stages, tracker
