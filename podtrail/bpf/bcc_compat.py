"""The BCC runtime the socket and file sensors still use until they move to CO-RE objects.

Kept apart from ``podtrail.bpf.runtime`` (libbpf only) so the process sensor never imports BCC;
deleted when the last BCC program is gone.
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from podtrail import metrics
from podtrail.bpf.runtime import ensure_mounts
from podtrail.pipeline import Emit

log = logging.getLogger(__name__)


def has_tracepoint_field(category: str, event: str, field: str) -> bool:
    try:
        with open(f"/sys/kernel/tracing/events/{category}/{event}/format") as f:
            return any(f" {field};" in line for line in f)
    except OSError:
        return False


def compile_bpf(text: str, cflags: list[str]) -> Any:
    """Compile and attach (BCC attaches every TRACEPOINT_PROBE by itself)."""
    ensure_mounts()
    if not os.path.isdir("/sys/kernel/tracing/events"):
        raise RuntimeError("tracefs is not mounted at /sys/kernel/tracing (mount -t tracefs tracefs /sys/kernel/tracing)")
    from bcc import BPF

    return BPF(text=text, cflags=cflags)


class RingBufferSource:
    """A compiled program's ``events`` ring buffer as a pipeline ``Source``.

    ``load`` compiles (seconds: BCC runs clang) and calls ``configure(bpf)`` to fill maps;
    ``run`` polls until ``stop``; ``lost()`` is the kernel's count of samples that did not fit.
    """

    def __init__(self, name: str, text: Callable[[], str], cflags: Callable[[], list[str]],
                 decode: Callable[[bytes], Any], configure: Callable[[Any], None] | None = None,
                 poll_ms: int = 50) -> None:
        self.name = name
        self._text = text
        self._cflags = cflags
        self._decode = decode
        self._configure = configure
        self._poll_ms = poll_ms
        self.bpf: Any = None
        self._emit: Emit | None = None
        self._lost_seen = 0
        self.samples = 0

    def load(self) -> None:
        if self.bpf is not None:
            return
        self.bpf = compile_bpf(self._text(), self._cflags())
        if self._configure is not None:
            self._configure(self.bpf)
        self.bpf["events"].open_ring_buffer(self._on_sample)

    def _on_sample(self, _ctx: Any, data: Any, size: int) -> None:
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
        return int(sum(int(v) for v in self.bpf["lost"][ct.c_int(0)]))

    def _count_lost(self) -> None:
        n = self.lost()
        if n > self._lost_seen:
            metrics.LOST_SAMPLES.labels(self.name).inc(n - self._lost_seen)
            metrics.dropped(self.name, "ringbuf_full", n - self._lost_seen)
            self._lost_seen = n

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self.load()
        self._emit = emit
        last = 0.0
        while not stop.is_set():
            self.bpf.ring_buffer_poll(self._poll_ms)
            self.bpf.ring_buffer_consume()  # samples sent without a wake-up (batched in the kernel)
            now = time.monotonic()
            if now - last > 1.0:
                self._count_lost()
                last = now
        self.bpf.ring_buffer_consume()
        self._count_lost()

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


class BccRingBufferSource:
    """A compiled program's ``events`` ring buffer as a pipeline ``Source``.

    ``load`` compiles (seconds: BCC runs clang) and calls ``configure(bpf)`` to fill maps;
    ``run`` polls until ``stop``; ``lost()`` is the kernel's count of samples that did not fit.
    """

    def __init__(self, name: str, text: Callable[[], str], cflags: Callable[[], list[str]],
                 decode: Callable[[bytes], Any], configure: Callable[[Any], None] | None = None,
                 poll_ms: int = 50) -> None:
        self.name = name
        self._text = text
        self._cflags = cflags
        self._decode = decode
        self._configure = configure
        self._poll_ms = poll_ms
        self.bpf: Any = None
        self._emit: Emit | None = None
        self._lost_seen = 0
        self.samples = 0

    def load(self) -> None:
        if self.bpf is not None:
            return
        self.bpf = compile_bpf(self._text(), self._cflags())
        if self._configure is not None:
            self._configure(self.bpf)
        self.bpf["events"].open_ring_buffer(self._on_sample)

    def _on_sample(self, _ctx: Any, data: Any, size: int) -> None:
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
        return int(sum(int(v) for v in self.bpf["lost"][ct.c_int(0)]))

    def _count_lost(self) -> None:
        n = self.lost()
        if n > self._lost_seen:
            metrics.LOST_SAMPLES.labels(self.name).inc(n - self._lost_seen)
            metrics.dropped(self.name, "ringbuf_full", n - self._lost_seen)
            self._lost_seen = n

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self.load()
        self._emit = emit
        last = 0.0
        while not stop.is_set():
            self.bpf.ring_buffer_poll(self._poll_ms)
            self.bpf.ring_buffer_consume()  # samples sent without a wake-up (batched in the kernel)
            now = time.monotonic()
            if now - last > 1.0:
                self._count_lost()
                last = now
        self.bpf.ring_buffer_consume()
        self._count_lost()

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
