"""The BCC runtime the socket and file sensors still use until they move to CO-RE objects.

Kept apart from ``podtrail.bpf.runtime`` (libbpf only) so the process sensor never imports BCC;
deleted when the last BCC program is gone.
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
from collections.abc import Callable
from typing import Any

from podtrail.bpf.runtime import RingReader, ensure_mounts

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


class BccRingBufferSource(RingReader):
    """A BCC program's ``events`` ring buffer as a pipeline ``Source``: ``load`` compiles
    (seconds: BCC runs clang) and calls ``configure(bpf)`` to fill maps."""

    def __init__(self, name: str, text: Callable[[], str], cflags: Callable[[], list[str]],
                 decode: Callable[[bytes], Any], configure: Callable[[Any], None] | None = None,
                 poll_ms: int = 50) -> None:
        super().__init__(name, decode, poll_ms)
        self._text = text
        self._cflags = cflags
        self._configure = configure
        self.bpf: Any = None

    def load(self) -> None:
        if self.bpf is not None:
            return
        self.bpf = compile_bpf(self._text(), self._cflags())
        if self._configure is not None:
            self._configure(self.bpf)
        self.bpf["events"].open_ring_buffer(lambda _ctx, data, size: self._deliver(ct.string_at(data, size)))

    def _poll(self, timeout_ms: int) -> None:
        if timeout_ms:
            self.bpf.ring_buffer_poll(timeout_ms)
        self.bpf.ring_buffer_consume()

    def lost(self) -> int:
        return int(sum(int(v) for v in self.bpf["lost"][ct.c_int(0)]))

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
