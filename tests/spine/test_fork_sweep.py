"""When the sweep walks ``held_forks`` (process.bpf.c): the reader starts a new generation of
the kernel's ``held_count`` every half hold time, and before a generation's slot is used again
it takes the forks still held from it, walking the map only when that slot's count (less the
forks it took itself) says some are left, and only up to the last of them. The real object is
loaded with its programs NOT attached, so only the test writes its maps (the kernel's own
counting is checked in tests/spine/test_fork_fold.py, attached)."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import require_core

from bench.process_samples import header_sample
from podtrail.bpf.libbpf import BpfObject
from podtrail.bpf.process import (
    EV_FORK,
    FORK_CWD,
    HDR_SIZE,
    HELD_GENERATIONS,
    PT_PATH_BUF,
    ProcessSource,
    build_process_source,
)
from podtrail.bpf.runtime import take_older
from podtrail.config import SensorConfig

HOLD_NS = 200_000_000
FORK_SIZE = FORK_CWD + PT_PATH_BUF


def fork_value(pid: int, ktime: int, gen: int) -> bytes:
    b = bytearray(header_sample(EV_FORK, pid, 1, 0, ktime).ljust(FORK_SIZE, b"\0"))
    struct.pack_into("<H", b, HDR_SIZE + 2, gen)  # held_epoch
    return bytes(b)


@pytest.fixture
def src(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessSource]:
    require_core()
    monkeypatch.setattr(BpfObject, "attach", lambda self: None)
    s = build_process_source(SensorConfig(), hold_ns=HOLD_NS)
    s.load()
    s.events: list[dict[str, Any]] = []  # type: ignore[misc]
    s._emit_batch = s.events.extend
    yield s
    s.close()


def hold(s: ProcessSource, pid: int, ktime: int, gen: int, counts: tuple[int, int, int]) -> None:
    """A held fork as the kernel stores it, and the kernel's counts of holds by generation."""
    assert s.obj is not None
    s.obj.map("held_forks").update(pid.to_bytes(4, "little"), fork_value(pid, ktime, gen))
    m = s.obj.map("held_count")
    m.update(b"\0" * 4, struct.pack("<3qII", *counts, s.epoch, 0))


def epoch_in_kernel(s: ProcessSource) -> int:
    assert s.obj is not None
    v = s.obj.map("held_count").lookup(b"\0" * 4)
    assert v is not None
    return int(struct.unpack_from("<I", v, 8 * HELD_GENERATIONS)[0])


def test_generations_turn_without_walks_while_nothing_is_held(src: ProcessSource) -> None:
    for k in range(1, 7):
        src.next_generation()
        assert src.epoch == k and epoch_in_kernel(src) == k  # what the kernel stamps new holds with
    assert src.walks == 0 and src.held() == 0


def test_a_fork_left_in_a_generation_is_taken_before_its_slot_is_reused(src: ProcessSource) -> None:
    old = time.monotonic_ns() - 2 * HOLD_NS
    hold(src, 4242, old, 2, (0, 0, 1))  # held in generation 2 (epoch 2, 5, ...)
    src.next_generation()  # slot 1 next: nothing left there
    assert src.walks == 0 and src.held() == 1 and src.held(2) == 1
    src.next_generation()  # slot 2 next: its fork is taken first
    assert src.walks == 1 and [(e["action"], e["pid"]) for e in src.events] == [("fork", 4242)]
    assert src.forks_sent_late == 1 and src.held() == 0
    for _ in range(3):
        src.next_generation()
    assert src.walks == 1  # taken here: the count no longer says it is left


def test_a_fork_younger_than_the_hold_time_stays(src: ProcessSource) -> None:
    hold(src, 4343, time.monotonic_ns(), 1, (0, 1, 0))
    src.next_generation()  # slot 1: walked, but too young to take
    assert src.walks == 1 and not src.events and src.held(1) == 1
    time.sleep(HOLD_NS / 1e9 + 0.01)
    for _ in range(HELD_GENERATIONS):
        src.next_generation()
    assert src.walks == 2 and [e["pid"] for e in src.events] == [4343]


def test_the_poll_turns_generations_every_half_hold_time(src: ProcessSource) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.45:
        src._poll(10)
    assert 3 <= src.epoch <= 6  # 0.45 s at 0.1 s per generation (the first at once)


def test_stop_takes_every_fork_whatever_the_count(src: ProcessSource) -> None:
    hold(src, 4444, time.monotonic_ns(), 0, (0, 0, 0))  # the counts are only a shortcut: the stop walks
    src.sweep(0)
    assert [e["pid"] for e in src.events] == [4444]


def test_a_walk_stops_once_every_counted_fork_was_seen(src: ProcessSource) -> None:
    assert src.obj is not None
    m = src.obj.map("held_forks")
    now = time.monotonic_ns()
    for pid in range(5000, 5010):
        m.update(pid.to_bytes(4, "little"), fork_value(pid, now - 2 * HOLD_NS, pid % 2))
    assert len(list(take_older(m, now, limit=3))) == 3  # the walk ended after three
    odd = list(take_older(m, now, limit=2, counted=lambda v: v[HDR_SIZE + 2] == 1))
    assert 2 <= len(odd) <= 7 and sum(1 for v in odd if v[HDR_SIZE + 2] == 1) == 2
    assert list(take_older(m, now - 3 * HOLD_NS)) == []  # none old enough
    rest = list(take_older(m, now))
    assert len(rest) == 10 - 3 - len(odd) and list(m.keys()) == []
