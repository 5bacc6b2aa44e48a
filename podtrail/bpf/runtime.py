"""What every podtrail BPF program needs: mounts, the CO-RE object loader, a ring-buffer reader.

A program is a compiled object (``make bpf``) plus a ``decode(bytes) -> Event | None`` function. The reader polls the
ring buffer until told to stop and exports kernel-side losses (the program's per-CPU ``lost``
counter, bumped when ``ringbuf_output`` fails) as metrics, so no drop is silent.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from podtrail import metrics
from podtrail.bpf.libbpf import BpfError, BpfMap, BpfObject, RingBuffer, SharedMaps
from podtrail.bpf.objects import missing_message, object_path
from podtrail.pipeline import Emit, batch_emitter

log = logging.getLogger(__name__)

# The reader's poll timeout. The kernel wakes the reader at once for a sample that follows a
# quiet spell on its CPU of as long (include/ringbuf.h WAKE_QUIET_NS), and once per
# WAKEUP_EVERY samples per CPU under load; this picks up what is left between (a sample waits
# at most about this long). Each wake-up of an idle reader cost ~0.2 ms of CPU here: at
# 50 ms, an idle agent's readers alone took ~0.5 % of a core (docs/BENCHMARKS.md).
POLL_MS = 200
# A reader whose last wait of at least WAKE_QUIET_NS (= POLL_MS) ended with nothing may sleep
# this long: no sample came on any CPU for that long, so the kernel forces a wake-up for the
# next one wherever it comes. (The process reader does not: a fork the kernel holds sends
# nothing, and its sweep is due 100-150 ms later.)
IDLE_POLL_MS = 1000
# Runs the kernel skipped are read from each program's fdinfo (a file per program: ~0.5 ms
# for a source's programs) this often; the lost-sample counter (one map read) every second.
SKIPPED_EVERY_S = 10.0

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


def ringbuf_bytes(pages: int) -> int:
    """The ring buffer size: a power of two number of pages (rounded up), at least one."""
    n = 1
    while n < max(1, pages):
        n <<= 1
    return n * os.sysconf("SC_PAGE_SIZE")


def take_older(m: BpfMap, cutoff_ns: int, limit: int | None = None,
               counted: Callable[[bytes], bool] | None = None) -> Iterator[bytes]:
    """Take (lookup-and-delete) every entry of hash map ``m`` whose value starts with a
    CLOCK_MONOTONIC time (u64) at or before ``cutoff_ns``. An entry the kernel deletes at the
    same moment is the kernel's to report: each is taken by exactly one side. With ``limit``
    (the most entries there can be for which ``counted(value)`` holds), the walk ends once that
    many were seen: a hash map's walk visits every bucket, however few entries it has."""
    seen = 0
    due = []
    for key in m.keys():  # taken after the walk: a deleted key would restart it
        v = m.lookup(key)
        if v is None:
            continue
        if int.from_bytes(v[:8], "little") <= cutoff_ns:
            due.append(key)
        if limit is not None and (counted is None or counted(v)):
            seen += 1
            if seen >= limit:
                break
    for key in due:
        raw = m.lookup_and_delete(key)
        if raw is not None:
            yield raw


class PercpuCounters:
    """A per-CPU array of u64 counters a program bumps (one slot per name), exported as
    increments: ``export`` sums each slot over the CPUs and passes what is new to ``inc``."""

    def __init__(self, map_name: str, names: tuple[str, ...], inc: Callable[[str, int], None]) -> None:
        self.map_name = map_name
        self.names = names
        self._inc = inc
        self._seen = [0] * len(names)
        self._keys = [i.to_bytes(4, "little") for i in range(len(names))]

    def totals(self, obj: BpfObject) -> dict[str, int]:
        m = obj.map(self.map_name)
        return {name: m.sum_percpu_u64(k) for name, k in zip(self.names, self._keys, strict=True)}

    def export(self, obj: BpfObject) -> None:
        if not obj.has_map(self.map_name):
            return
        for i, n in enumerate(self.totals(obj).values()):
            if n > self._seen[i]:
                self._inc(self.names[i], n - self._seen[i])
                self._seen[i] = n


class RingReader:
    """What every ring-buffer source shares: decode and emit what each consume collected (a
    decoding bug is counted, never stops the reader), the poll loop, and the kernel's
    lost-sample counter exported as metrics. Subclasses load the program and say how to poll
    and count losses.

    ``native_decoder``: a C decoder (``decode(raw)`` returning the event, or ``raw`` itself for
    the samples it leaves to ``decode``) that the ring buffer's C callback runs per sample; a
    batch then holds its events, and bytes only for the samples left to ``decode``."""

    def __init__(self, name: str, decode: Callable[[bytes], Any], poll_ms: int,
                 native_decoder: Any = None) -> None:
        self.name = name
        self._decode = decode
        self.native_decoder = native_decoder
        self._poll_ms = poll_ms
        self._emit_batch: Callable[[list[Any]], None] | None = None
        self._lost_seen = 0
        self._skipped_seen = 0
        self.samples = 0

    def load(self) -> None:
        raise NotImplementedError

    def lost(self) -> int:
        """Samples the kernel could not put in the ring buffer, since load."""
        raise NotImplementedError

    def skipped(self) -> int:
        """Program runs the kernel skipped (another BPF program was running on that CPU), since
        load: events never made. 0 for a source that cannot tell."""
        return 0

    def _poll(self, timeout_ms: int) -> None:
        """Wait for samples up to ``timeout_ms`` and consume every one there (0: no wait)."""
        raise NotImplementedError

    def _timeout_ms(self) -> int:
        """How long the next poll may wait (a source with timed work of its own says less)."""
        return self._poll_ms

    def _until_ms(self, deadline: float) -> int:
        """The poll timeout, or less: milliseconds until ``deadline`` (monotonic), at least 1."""
        return max(1, min(self._poll_ms, int((deadline - time.monotonic()) * 1000) + 1))

    def wake(self) -> None:
        """End the current wait now (the agent stopping)."""

    def _deliver(self, raw: bytes) -> None:
        """One sample from elsewhere than the ring buffer (a held fork, a counted repeat)."""
        item: Any = raw
        nd = self.native_decoder
        if nd is not None:
            try:
                item = nd.decode(raw)
            except Exception:  # noqa: BLE001 - the Python decoder takes it (and counts a refusal)
                item = raw
        self._take([item], 0, int(type(item) is bytes))

    def _take(self, items: list[Any], errors: int, left: int) -> None:
        """What one consume collected, in the kernel's order: events the C decoder made, and
        ``left`` samples (bytes) for ``decode``; handed over in one call. ``errors``: samples
        that could not be stored, counted as decode errors."""
        self.samples += len(items) + errors
        if errors:
            metrics.dropped(self.name, "decode_error", errors)
        if not left:  # all decoded in C
            if items and self._emit_batch is not None:
                self._emit_batch(items)
            return
        decode = self._decode
        out = []
        for item in items:
            if type(item) is bytes:
                try:
                    item = decode(item)
                except Exception:  # a decoding bug must not stop the reader
                    log.debug("cannot decode a %s sample", self.name, exc_info=True)
                    metrics.dropped(self.name, "decode_error")
                    continue
                if item is None:
                    continue
            out.append(item)
        if out and self._emit_batch is not None:
            self._emit_batch(out)

    def _count_lost(self, skipped: bool = True) -> None:
        """Export the kernel's lost samples and, with ``skipped``, its skipped runs."""
        n = self.lost()
        if n > self._lost_seen:
            metrics.LOST_SAMPLES.labels(self.name).inc(n - self._lost_seen)
            metrics.dropped(self.name, "ringbuf_full", n - self._lost_seen)
            self._lost_seen = n
        if not skipped:
            return
        k = self.skipped()
        if k > self._skipped_seen:
            metrics.dropped(self.name, "bpf_recursion", k - self._skipped_seen)
            self._skipped_seen = k

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self.load()
        self._emit_batch = batch_emitter(emit)
        last = last_skipped = 0.0
        while not stop.is_set():
            self._poll(self._timeout_ms())
            now = time.monotonic()
            if now - last > 1.0:
                every = now - last_skipped > SKIPPED_EVERY_S
                self._count_lost(every)
                last = now
                if every:
                    last_skipped = now
        self._poll(0)
        self._count_lost()


class RingBufferSource(RingReader):
    """A compiled CO-RE object's ``events`` ring buffer as a pipeline ``Source``.

    ``load`` opens ``podtrail/bpf/obj/<obj>.bpf.o``, lets ``prepare(obj)`` set read-only config
    and map sizes, loads (milliseconds: nothing is compiled), lets ``configure(obj)`` fill maps,
    then attaches every program. ``run`` polls until ``stop``; ``lost()`` is the kernel's count
    of samples that did not fit (the object's per-CPU ``lost`` array), exported as metrics.
    """

    def __init__(self, name: str, obj: str, decode: Callable[[bytes], Any], *,
                 prepare: Callable[[BpfObject], None] | None = None,
                 configure: Callable[[BpfObject], None] | None = None,
                 ringbuf_bytes: int | None = None, poll_ms: int = POLL_MS,
                 shared: SharedMaps | None = None, path: Path | None = None,
                 native_decoder: Any = None) -> None:
        super().__init__(name, decode, poll_ms, native_decoder)
        self.obj_name = obj
        self._path = path
        self._prepare = prepare
        self._configure = configure
        self._ringbuf_bytes = ringbuf_bytes
        self._shared = shared
        self.obj: BpfObject | None = None
        self._ring: RingBuffer | None = None
        self._shares = False  # counted as a user of ``shared``: released at close
        self.quiet = False  # the last wait, of at least POLL_MS, ended with nothing (IDLE_POLL_MS)

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
                self._shares = True
            if self._configure is not None:
                self._configure(obj)
            obj.attach()
            self._ring = RingBuffer(obj.map("events"), on_batch=self._take, decoder=self.native_decoder)
        except Exception:
            obj.close()
            self._release_shared()
            raise
        self.obj = obj

    def _poll(self, timeout_ms: int) -> None:
        ring = self._ring
        if ring is not None:
            t0 = time.monotonic()
            n = ring.poll(timeout_ms) if timeout_ms else 0
            n += ring.consume()  # samples sent without a wake-up (batched in the kernel)
            self.quiet = n == 0 and time.monotonic() - t0 >= POLL_MS / 1000

    def wake(self) -> None:
        if self._ring is not None:
            self._ring.wake()

    def lost(self) -> int:
        if self.obj is None:
            return 0
        return self.obj.map("lost").sum_percpu_u64(b"\0" * 4)

    def skipped(self) -> int:
        return 0 if self.obj is None else self.obj.recursion_misses()

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.obj is not None:
            self.obj.close()
            self.obj = None
        self._release_shared()

    def _release_shared(self) -> None:
        if self._shares and self._shared is not None:
            self._shares = False
            self._shared.release()


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
