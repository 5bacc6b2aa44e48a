"""When the sweep walks ``held_forks`` (process.bpf.c): only when the kernel's ``held_count``
says a fork may be held that user space has not taken, and not again before the youngest fork
left can be due; a walk stops once it has seen every fork counted. The real object is loaded
with its programs NOT attached, so only the test writes its maps (the kernel's own counting
is checked in tests/spine/test_fork_fold.py, attached)."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import require_core

from bench.process_samples import header_sample
from podtrail.bpf.libbpf import BpfObject
from podtrail.bpf.process import EV_FORK, FORK_CWD, PT_PATH_BUF, ProcessSource, build_process_source
from podtrail.bpf.runtime import take_older
from podtrail.config import SensorConfig

HOLD_NS = 200_000_000
FORK_SIZE = FORK_CWD + PT_PATH_BUF


def fork_value(pid: int, ktime: int) -> bytes:
    return header_sample(EV_FORK, pid, 1, 0, ktime).ljust(FORK_SIZE, b"\0")


@pytest.fixture
def src(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessSource]:
    require_core()
    monkeypatch.setattr(BpfObject, "attach", lambda self: None)
    s = build_process_source(SensorConfig(), hold_ns=HOLD_NS)
    s.load()
    s.events: list[dict[str, Any]] = []  # type: ignore[misc]
    s._emit = s.events.append  # type: ignore[attr-defined]
    yield s
    s.close()


def hold(s: ProcessSource, pid: int, ktime: int, count: int) -> None:
    """A held fork as the kernel stores it, and the kernel's count of holds."""
    assert s.obj is not None
    s.obj.map("held_forks").update(pid.to_bytes(4, "little"), fork_value(pid, ktime))
    s.obj.map("held_count").update(b"\0" * 4, struct.pack("<q", count))


def tick(s: ProcessSource) -> None:
    s._next_sweep = 0.0
    s._poll(0)


def test_no_walk_while_nothing_is_held(src: ProcessSource) -> None:
    for _ in range(3):
        tick(src)
    assert src.walks == 0 and src.held() == 0


def test_a_counted_old_fork_is_taken_then_no_more_walks(src: ProcessSource) -> None:
    hold(src, 4242, time.monotonic_ns() - 2 * HOLD_NS, 1)
    assert src.held() == 1
    tick(src)
    assert src.walks == 1 and [(e["action"], e["pid"]) for e in src.events] == [("fork", 4242)]
    assert src.forks_sent_late == 1 and src.held() == 0
    tick(src)
    assert src.walks == 1  # counted as taken here: nothing held


def test_a_young_fork_waits_for_its_due_time(src: ProcessSource) -> None:
    t = time.monotonic_ns()
    hold(src, 4343, t, 1)
    tick(src)
    assert src.walks == 1 and not src.events  # seen, too young
    tick(src)
    tick(src)
    assert src.walks == 1  # held, but not due before t + hold
    time.sleep((t + HOLD_NS - time.monotonic_ns()) / 1e9 + 0.01)
    tick(src)
    assert src.walks == 2 and [e["pid"] for e in src.events] == [4343]


def test_stop_takes_every_fork_whatever_the_count(src: ProcessSource) -> None:
    hold(src, 4444, time.monotonic_ns(), 0)  # the count is only a shortcut: the stop walks
    src.sweep(0)
    assert [e["pid"] for e in src.events] == [4444]


def test_a_walk_stops_once_every_counted_fork_was_seen(src: ProcessSource) -> None:
    assert src.obj is not None
    m = src.obj.map("held_forks")
    now = time.monotonic_ns()
    for pid in range(5000, 5010):
        m.update(pid.to_bytes(4, "little"), fork_value(pid, now - 2 * HOLD_NS))
    taken = list(take_older(m, now, limit=3, as_of=now))
    assert len(taken) == 3  # the walk ended after three
    young: list[int] = []
    rest = list(take_older(m, now - 3 * HOLD_NS, young))
    assert rest == [] and len(young) == 7  # none old enough; the times of those left
    assert len(list(take_older(m, now))) == 7 and list(m.keys()) == []

