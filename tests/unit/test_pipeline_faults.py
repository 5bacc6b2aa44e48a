"""The pipeline thread survives what a stage or an event does to it: a stage whose tick raises
while it releases held events, and an event whose own ``source`` cannot be a metric label.
Each fault is logged and counted as a drop; the events after it are delivered."""

from __future__ import annotations

import time
from typing import Any

from podtrail import metrics
from podtrail.pipeline import Emit, Pipeline


def _drops(source: str, reason: str) -> float:
    return float(metrics.DROPPED.labels(source, reason)._value.get())


class _Sink:
    name = "list"

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def submit(self, ev: Any) -> None:
        self.got.append(ev)

    def close(self) -> None:
        pass


class _BadTick:
    """Holds nothing, but its tick raises (as a release of an odd held event did)."""

    def __init__(self) -> None:
        self.ticks = 0

    def process(self, ev: Any, out: Emit) -> None:
        if ev.get("boom"):
            raise ValueError("enrichment bug")
        out(ev)

    def tick(self, now: float, out: Emit) -> None:
        self.ticks += 1
        raise RuntimeError("release failed")


def _run(events: list[dict[str, Any]]) -> tuple[_Sink, _BadTick]:
    sink, stage = _Sink(), _BadTick()
    p = Pipeline([stage], [sink], tick_interval=0.01, nap=0.0)
    p.start()
    for ev in events[:1]:
        p.emit(ev)
    deadline = time.monotonic() + 5
    while stage.ticks < 3 and time.monotonic() < deadline:  # several failing ticks in between
        time.sleep(0.01)
    for ev in events[1:]:
        p.emit(ev)
    p.close()
    return sink, stage


def test_a_stage_whose_tick_raises_does_not_stop_the_pipeline() -> None:
    before = _drops("unknown", "processing_error")
    sink, stage = _run([{"source": "t", "n": 1}, {"source": "t", "n": 2}])
    assert [ev["n"] for ev in sink.got] == [1, 2]  # the event after the failing ticks too
    assert stage.ticks >= 3
    assert _drops("unknown", "processing_error") - before >= 3


def test_an_event_with_an_unhashable_source_is_counted_not_fatal() -> None:
    before = _drops("unknown", "processing_error")
    sink, _ = _run([{"source": ["not", "a", "label"], "boom": True}, {"source": "t", "n": 2}])
    assert [ev["n"] for ev in sink.got] == [2]
    assert _drops("unknown", "processing_error") - before >= 1
