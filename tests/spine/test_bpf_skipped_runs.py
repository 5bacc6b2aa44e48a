"""Program runs the kernel skips (a BPF program was already running on that CPU) are events
never made, invisible to the ring buffer's ``lost`` counts: the sources read them from each
program's fdinfo and count them as drops (``reason="bpf_recursion"``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import require_core

from podtrail import metrics
from podtrail.bpf.libbpf import fdinfo_count, lib
from podtrail.bpf.runtime import RingReader


def _drops(stage: str, reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("podtrail_dropped_events_total", {"stage": stage, "reason": reason}) or 0.0


def test_fdinfo_counters_are_the_loaded_programs_own() -> None:
    """The fdinfo read is the program's: with run statistics on, an exec moves the exec
    program's run count, and every loaded program reports a recursion-miss count."""
    require_core()
    from podtrail.bpf.process import build_process_source
    from podtrail.config import SensorConfig

    stats = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = stats.read_text().strip()
    src = build_process_source(SensorConfig())
    src.load()
    try:
        stats.write_text("1\n")
        progs = src.obj.programs()  # type: ignore[union-attr]
        fds = {name: lib().c.bpf_program__fd(p) for name, p in progs.items()}
        loaded = {name: fd for name, fd in fds.items() if fd >= 0}
        assert loaded, "no program loaded"
        runs0 = sum(fdinfo_count(fd, "run_cnt") for fd in loaded.values())
        for _ in range(5):
            subprocess.run(["/bin/busybox", "true", "skipped-runs"], check=True)
        runs1 = sum(fdinfo_count(fd, "run_cnt") for fd in loaded.values())
        assert runs1 >= runs0 + 5, (runs0, runs1)
        for fd in loaded.values():
            assert "recursion_misses" in Path(f"/proc/self/fdinfo/{fd}").read_text()
        assert src.skipped() == sum(fdinfo_count(fd, "recursion_misses") for fd in loaded.values())
    finally:
        stats.write_text(before + "\n")
        src.close()


class _Counting(RingReader):
    """A source whose kernel counts are given (the counting logic alone)."""

    def __init__(self) -> None:
        super().__init__("skip-test", lambda raw: None, 50)
        self.k = 0

    def lost(self) -> int:
        return 0

    def skipped(self) -> int:
        return self.k


def test_skipped_runs_are_counted_as_drops_once() -> None:
    src = _Counting()
    base = _drops("skip-test", "bpf_recursion")
    src._count_lost()
    assert _drops("skip-test", "bpf_recursion") == base
    src.k = 3
    src._count_lost()
    src._count_lost()  # the same total again: nothing new
    assert _drops("skip-test", "bpf_recursion") == base + 3
    src.k = 7
    src._count_lost()
    assert _drops("skip-test", "bpf_recursion") == base + 7
