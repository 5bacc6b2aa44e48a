"""Wake-ups (docs/process-sensor.md, "Wake-ups"): samples do not wake the reader one by one,
yet a lone exec after a quiet spell is read at once, because the kernel forces that wake-up
(include/ringbuf.h); and the process reader sleeps its whole poll timeout unless a fork is held."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

from conftest import require_core

from podtrail.bpf.runtime import POLL_MS
from podtrail.config import SensorConfig


def _marked(events: list[Any], marker: str) -> list[Any]:
    return [e for e in events if marker in (e.get("argv") or ())]


def test_a_lone_exec_after_a_quiet_spell_wakes_the_reader() -> None:
    """Once its readiness is taken, the epoll wait on the ring buffer returns only for a
    forced wake-up: samples sent without one do not end it. A lone exec after more than the
    quiet spell must be there when a wait of up to 5 s returns (with wake-ups only every
    256th sample, as before, the wait times out with nothing). Tried three times: a sample of
    another task on the same CPU within the spell just before takes the wake-up."""
    require_core()
    from podtrail.bpf.process import build_process_source

    src = build_process_source(SensorConfig())
    got: list[Any] = []
    src._emit_batch = got.extend  # type: ignore[assignment]
    src.load()
    try:
        ring = src._ring
        assert ring is not None
        ring.consume()
        seen = []
        for _ in range(3):
            marker = f"lone-{uuid.uuid4().hex[:8]}"
            time.sleep(0.5)  # longer than WAKE_QUIET_NS (200 ms) on every CPU
            while ring.poll(0):  # epoll is level-triggered: take any readiness left from before
                pass
            subprocess.run(["/bin/busybox", "true", marker], check=True)
            deadline = time.monotonic() + 5
            while not _marked(got, marker) and time.monotonic() < deadline:
                if not ring.poll(int((deadline - time.monotonic()) * 1000) + 1):
                    break  # the wait ended with nothing: no wake-up came
            seen.append(bool(_marked(got, marker)))
            if seen[-1]:
                break
        assert any(seen), "no lone exec woke the reader (each waited 5 s for nothing)"
    finally:
        src.close()


def test_the_reader_sleeps_the_poll_timeout_unless_a_fork_is_held() -> None:
    """The process reader asks for no earlier wake-up than the poll timeout while the kernel
    holds no fork; with one held, for the next generation (at most hold_ns / 2 away)."""
    require_core()
    from podtrail.bpf.process import build_process_source

    src = build_process_source(SensorConfig())
    src.load()
    try:
        assert src._poll_ms == POLL_MS
        src._poll(0)
        if src.held() <= 0:
            assert src._timeout_ms() == POLL_MS
        src.held = lambda gen=None: 1  # type: ignore[method-assign]
        src._next_epoch = time.monotonic() + 0.03
        assert 1 <= src._timeout_ms() <= 31
    finally:
        src.close()


def test_wake_ends_a_wait_at_once() -> None:
    """``wake`` from another thread ends a reader's wait (the agent stopping): a poll of a
    minute returns; SIGALRM after 5 s turns a wait that does not end into a failure."""
    import signal
    import threading

    require_core()
    from podtrail.bpf.process import build_process_source

    src = build_process_source(SensorConfig())
    src._emit_batch = lambda evs: None  # type: ignore[assignment]
    src.load()

    def alarm(*_: Any) -> None:
        raise TimeoutError("wake did not end the wait")

    saved = signal.signal(signal.SIGALRM, alarm)
    try:
        ring = src._ring
        assert ring is not None
        threading.Timer(0.2, src.wake).start()
        signal.alarm(5)
        ring.poll(60_000)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, saved)
        src.close()
    src.wake()  # closed: nothing to wake, no error


def test_socket_and_file_readers_sleep_longer_after_a_quiet_wait() -> None:
    """After a wait of at least POLL_MS that found nothing, the next sample on any CPU is
    one the kernel wakes the reader for, so these readers may sleep IDLE_POLL_MS; while a
    socket repeat window may be open, they wake for its sweep instead."""
    from podtrail.bpf.netfile import REPEAT_SWEEP_S, build_socket_file_sources
    from podtrail.bpf.runtime import IDLE_POLL_MS

    for src in build_socket_file_sources(SensorConfig()):
        assert src._timeout_ms() == POLL_MS
        src.quiet = True
        assert src._timeout_ms() == IDLE_POLL_MS
        src.samples += 1  # a sample came: a repeat window may be open
        src._has_repeats = lambda: True  # type: ignore[method-assign]
        assert 1 <= src._timeout_ms() <= REPEAT_SWEEP_S * 1000 + 1
