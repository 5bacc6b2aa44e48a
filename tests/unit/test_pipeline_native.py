"""The pipeline's per-event glue in C (podtrail/_pipeline.c) against its references: the chain's
``Link`` against the lambda, ``finalize_count`` against ``finalize`` + ``metrics.event_out``,
on real events through the real stages and on hypothesis-made hostile events (same fields in
the same order, same counts, same exceptions); and the Pipeline itself with both."""

from __future__ import annotations

import copy
import os
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail import metrics, pipeline
from podtrail.model.context import EventDict
from podtrail.model.event import Event, new_event
from podtrail.model.fields import Kind

C = pipeline._native
pytestmark = pytest.mark.skipif(C is None and os.environ.get("CI") != "true", reason="_pipeline not built")


def test_the_accelerator_is_built_under_ci() -> None:
    assert C is not None, "podtrail._pipeline is not built: make native"


def _fresh(ev: Event) -> Event:
    """A copy of ``ev`` with its class (and no derived fields yet, as the stages hand it over)."""
    out = EventDict(ev) if type(ev) is EventDict else dict(ev)
    for k in ("outcome", "severity", "file_name", "src_address", "src_port", "dst_address", "dst_port"):
        out.pop(k, None)
    return out


def _both(ev: Event) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(result of the reference, result of C): the event's items, the counts it added, or the exception."""
    out = []
    for fn in (pipeline._finalize_count, C.finalize_count):
        e = copy.copy(ev)
        before = dict(metrics._event_counts)
        try:
            fn(e)
            err: Any = None
        except Exception as x:  # compared: the same type and message
            err = (type(x), str(x))
        added = {k: n - before.get(k, 0) for k, n in metrics._event_counts.items() if n != before.get(k, 0)}
        out.append((list(e.items()), [type(v) for v in e.values()], added, err))
    return out[0], out[1]


def test_real_events_are_finalized_and_counted_as_the_reference() -> None:
    from bench.stage_profile import enriched_events

    evs = [_fresh(e) for e in enriched_events(200)]
    assert {e["event_type"] for e in evs} >= {"process", "socket", "file"}
    for ev in evs:
        ref, got = _both(ev)
        assert got == ref


_val = st.none() | st.booleans() | st.integers() | st.text(max_size=6) | st.floats() | st.lists(st.integers(), max_size=2)


@settings(max_examples=1500, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "event_type": st.sampled_from(["process", "socket", "file", "agent", "other"]) | _val,
    "action": st.sampled_from(["exec", "exit", "fork", "connect", "read"]) | _val,
    "result": _val, "outcome": _val, "target_path": _val, "file_name": _val, "severity": _val, "drift": _val,
    "sensitive": _val, "source": _val, "dropped_before": _val, "direction": _val, "local_address": _val}),
    st.booleans())
def test_hostile_events_are_finalized_and_counted_as_the_reference(fields: dict[str, Any], entity_dict: bool) -> None:
    ev: Event = EventDict(fields) if entity_dict else dict(fields)
    ref, got = _both(ev)
    assert got == ref


class _Odd(dict):  # type: ignore[type-arg]
    """A dict whose get says otherwise: both paths read it through get."""

    def get(self, key: Any, default: Any = None) -> Any:
        return "odd" if key == "source" else super().get(key, default)


def test_another_mapping_is_finalized_and_counted_through_its_own_get() -> None:
    ref, got = _both(_Odd(event_type="process", action="exec", result=0, source="ebpf"))
    assert got == ref and ("odd", "process", "exec") in ref[2]


def test_link_calls_the_stage_with_the_next_step_and_passes_its_errors() -> None:
    seen: list[Any] = []

    def process(ev: Any, out: Any) -> None:
        if ev == "bad":
            raise ValueError("stage bug")
        out(ev + 1)

    link = C.Link(process, seen.append)
    link(1)
    assert seen == [2]
    with pytest.raises(ValueError, match="stage bug"):
        link("bad")
    with pytest.raises(TypeError):
        link(1, 2)


class _Stage:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def process(self, ev: Event, out: Any) -> None:
        ev.setdefault("stages", []).append(self.tag)
        if ev.get("pid") == 13 and self.tag == "b":
            raise RuntimeError("a stage bug")
        out(ev)

    def tick(self, now: float, out: Any) -> None:
        return None


class _Keep:
    name = "keep"

    def __init__(self) -> None:
        self.got: list[Event] = []
        self.batches = 0

    def submit(self, ev: Event) -> None:
        self.got.append(ev)

    def end_batch(self) -> None:
        self.batches += 1

    def close(self) -> None:
        return None


@pytest.mark.parametrize("native", [True, False], ids=["C", "python"])
def test_the_pipeline_delivers_the_same_with_either_glue(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not native:
        monkeypatch.setattr(pipeline, "_native", None)
    sink = _Keep()
    p = pipeline.Pipeline([_Stage("a"), _Stage("b")], [sink], tick_interval=0.05)
    before = dict(metrics._event_counts)
    t = threading.Thread(target=p.run)
    t.start()
    for i in range(20):
        p.emit(new_event(Kind.PROCESS, "exec", pid=i, result=-2 if i == 3 else 0, source="test-glue", drift=i == 5))
    p.close()
    t.join(10)
    got = {e["pid"]: e for e in sink.got}
    assert sorted(got) == [i for i in range(20) if i != 13]  # the failing one is dropped, counted, the rest go on
    assert all(e["stages"] == ["a", "b"] for e in got.values())
    assert got[3]["outcome"] == "failure" and got[4]["outcome"] == "success"
    assert got[5]["severity"] == 8 and got[4]["severity"] == 3
    key = ("test-glue", "process", "exec")
    assert metrics._event_counts[key] - before.get(key, 0) == 19
    assert sink.batches >= 1
