"""What every podtrail BPF program needs: mounts, the CO-RE object loader, a ring-buffer reader.

A program is a compiled object (``make bpf``) plus a ``decode(bytes) -> Event | None`` function. The reader polls the
ring buffer until told to stop and exports kernel-side losses (the program's per-CPU ``lost``
counter, bumped when ``ringbuf_output`` fails) as metrics, so no drop is silent.
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podtrail import metrics
from podtrail.bpf.libbpf import BpfError, BpfObject, RingBuffer, SharedMaps
from podtrail.bpf.objects import missing_message, object_path
from podtrail.pipeline import Emit

log = logging.getLogger(__name__)

MOUNTS = (
    ("tracefs", "/sys/kernel/tracing"),
    ("debugfs", "/sys/kernel/debug"),
    ("bpf", "/sys/fs/bpf"),
)


def is_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def ensure_mounts() -> list[str]:
    """Mount tracefs, debugfs and bpffs where missing (idempotent); returns what was mounted."""
    done = []
    for fstype, path in MOUNTS:
        if os.path.isdir(path) and not is_mounted(path):
            r = subprocess.run(["mount", "-t", fstype, fstype, path], capture_output=True, text=True)
            if r.returncode == 0:
                done.append(path)
            else:
                log.warning("cannot mount %s at %s: %s", fstype, path, r.stderr.strip())
    return done


def host_pidns_flags() -> list[str]:
    """The agent's PID namespace (the host's, when run as intended): tasks outside it are in containers."""
    st = os.stat("/proc/self/ns/pid")
    return [f"-DHOST_PIDNS_DEV={st.st_dev}", f"-DHOST_PIDNS_INO={st.st_ino}"]


class RingBufferSource:
    """A compiled CO-RE object's ``events`` ring buffer as a pipeline ``Source``.

    ``load`` opens ``podtrail/bpf/obj/<obj>.bpf.o``, lets ``prepare(obj)`` set read-only config
    and map sizes, loads (milliseconds: nothing is compiled), lets ``configure(obj)`` fill maps,
    then attaches every program. ``run`` polls until ``stop``; ``lost()`` is the kernel's count
    of samples that did not fit (the object's per-CPU ``lost`` array), exported as metrics.
    """

    def __init__(self, name: str, obj: str, decode: Callable[[bytes], Any], *,
                 prepare: Callable[[BpfObject], None] | None = None,
                 configure: Callable[[BpfObject], None] | None = None,
                 ringbuf_bytes: int | None = None, poll_ms: int = 50,
                 shared: SharedMaps | None = None, path: Path | None = None) -> None:
        self.name = name
        self.obj_name = obj
        self._path = path
        self._decode = decode
        self._prepare = prepare
        self._configure = configure
        self._ringbuf_bytes = ringbuf_bytes
        self._poll_ms = poll_ms
        self._shared = shared
        self.obj: BpfObject | None = None
        self._ring: RingBuffer | None = None
        self._emit: Emit | None = None
        self._lost_seen = 0
        self.samples = 0

    def load(self) -> None:
        if self.obj is not None:
            return
        ensure_mounts()
        path = self._path or object_path(self.obj_name)
        if not path.exists():
            raise BpfError(missing_message(self.obj_name))
        obj = BpfObject(path)
        try:
            if self._ringbuf_bytes:
                obj.map("events").set_max_entries(self._ringbuf_bytes)
            if self._shared is not None:
                self._shared.before_load(obj)
            if self._prepare is not None:
                self._prepare(obj)
            obj.load()
            if self._shared is not None:
                self._shared.after_load(obj)
            if self._configure is not None:
                self._configure(obj)
            obj.attach()
            self._ring = RingBuffer(obj.map("events"), self._on_sample)
        except Exception:
            obj.close()
            raise
        self.obj = obj

    def _on_sample(self, data: int, size: int) -> None:
        self.samples += 1
        try:
            out = self._decode(ct.string_at(data, size))
        except Exception:  # a decoding bug must not stop the reader
            log.debug("cannot decode a %s sample", self.name, exc_info=True)
            metrics.dropped(self.name, "decode_error")
            return
        if out is not None and self._emit is not None:
            self._emit(out)

    def lost(self) -> int:
        if self.obj is None:
            return 0
        return self.obj.map("lost").sum_percpu_u64(b"\0" * 4)

    def _count_lost(self) -> None:
        n = self.lost()
        if n > self._lost_seen:
            metrics.LOST_SAMPLES.labels(self.name).inc(n - self._lost_seen)
            metrics.dropped(self.name, "ringbuf_full", n - self._lost_seen)
            self._lost_seen = n

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self.load()
        assert self._ring is not None
        self._emit = emit
        last = 0.0
        while not stop.is_set():
            self._ring.poll(self._poll_ms)
            self._ring.consume()  # samples sent without a wake-up (batched in the kernel)
            now = time.monotonic()
            if now - last > 1.0:
                self._count_lost()
                last = now
        self._ring.consume()
        self._count_lost()

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.obj is not None:
            self.obj.close()
            self.obj = None


def kstr(raw: bytes) -> str:
    """Kernel bytes to text: up to the first NUL; invalid UTF-8 kept visible (``\\xff``), never raised."""
    n = raw.find(b"\0")
    if n >= 0:
        raw = raw[:n]
    return raw.decode("utf-8", "backslashreplace")


class WallClock:
    """bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall-clock ns, via one offset taken at start.

    Re-taken on demand (``resync``) so a stepped wall clock does not skew events for long."""

    def __init__(self) -> None:
        self.offset = 0
        self.resync()

    def resync(self) -> None:
        self.offset = time.time_ns() - time.monotonic_ns()

    def wall(self, mono_ns: int) -> int:
        return mono_ns + self.offset
