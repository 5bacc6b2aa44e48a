"""The C batch compaction (``podtrail/tables/_compact.c``) makes the very records of the Python
loop it replaces (``EventBuffers._compact_py`` with ``_Fast.record``, the reference): the same
values, types and shared objects, the same shapes, the same events on the general path, the
same exceptions, and so the same rows through the tables and the same Thrift bytes.

Every test feeds the same event objects to two buffers, one compacting in C and one in Python
(whatever ``PODTRAIL_NATIVE`` says), and compares them whole: realistic streams through the
real decoder and stages, those events with keys in another order, and hypothesis-made odd ones
(wrong types, None, huge and negative ints, bool for int, str/int/dict subclasses, argv with
NULs or non-str items, missing keys, foreign and non-canonical event ids, odd ``_ctx``)."""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wire_rows import _reply

from bench.stage_profile import enriched_events
from podtrail.model.context import EventDict
from podtrail.model.event import RUN_PREFIX
from podtrail.model.fields import Kind
from podtrail.tables import buffer
from podtrail.tables.buffer import EventBuffers, _Argv, _Shape
from podtrail.tables.schema import TABLES
from podtrail.tables.service import TableService

C = buffer._with_native(importlib.import_module("podtrail.tables._compact"))  # unbuilt: test_native_build says why
KINDS = (Kind.PROCESS, Kind.SOCKET, Kind.FILE, Kind.ALERT)
EVENT_TABLES = [t for t in TABLES.values() if t.kind is not None]


def pair(events_max: int = 100_000) -> tuple[EventBuffers, EventBuffers]:
    """(C, Python) buffers."""
    c = EventBuffers(events_max=events_max, expiry_s=10**12)
    c._c = C
    return c, EventBuffers(events_max=events_max, expiry_s=10**12, native=False)


@functools.cache
def stream() -> list[Any]:
    """Enough events through the real decoder and stages for every shape to learn and every
    layout to be proven (6 per cycle: fork, exec, two connects, an open, an exit)."""
    return [e for e in enriched_events(320) if e.get("event_type") != "alert"]


def feed(bufs: tuple[EventBuffers, ...], evs: list[Any], batch: int = 64) -> list[str | None]:
    """The same events into each buffer, batch by batch; the exception type each batch raised."""
    raised: list[str | None] = []
    for i in range(0, len(evs), batch):
        outcome: list[str | None] = []
        for b in bufs:
            for e in evs[i:i + batch]:
                b._pending.append(e)  # submit without its compaction at _PENDING_MAX
            try:
                b.end_batch()
                outcome.append(None)
            except Exception as e:  # noqa: BLE001 - compared between the two
                outcome.append(type(e).__name__)
                b._pending.clear()  # what Python's loop leaves after a raise is compared below
        assert len(set(outcome)) == 1, f"C and Python disagree: {outcome}"
        raised.append(outcome[0])
    return raised


def _shape_key(s: _Shape) -> tuple[Any, ...]:
    return (s.own, s.names, s.rep_names, s.own_at, s.cover, s.n_ents, s.const, s.packed, s.tid_is_pid)


def same_value(a: Any, b: Any, shapes: dict[int, int]) -> None:
    if a is b:
        return
    assert type(a) is type(b), (a, b)
    if type(a) is _Shape:
        assert _shape_key(a) == _shape_key(b)
        assert shapes.setdefault(id(a), id(b)) == id(b), "one shape in C is one shape in Python"
    elif type(a) is tuple:
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            same_value(x, y, shapes)
    else:  # new objects made alike: packed ints, event id counters, argv texts, plain copies
        assert type(a) in (int, _Argv, dict), (a, b)
        assert a == b
        if type(a) is dict:
            assert {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()}


def _objects(recs: list[tuple[Any, ...]]) -> int:
    """Distinct objects the records hold (beyond their first slot, new in each): sharing alike."""
    seen: set[int] = set()
    for r in recs:
        for v in r[1:]:
            seen.add(id(v))
            if type(v) is tuple:
                seen.update(map(id, v))
    return len(seen)


def same(c: EventBuffers, p: EventBuffers) -> None:
    assert not c._pending and not p._pending
    assert c.general == p.general, "the same events took the general path"
    assert len(c._fast) == len(p._fast) and sum(map(len, c._cfast.values())) == sum(map(len, p._fast.values()))
    shapes: dict[int, int] = {}
    for kind in c._q:
        rc, rp = list(c._q[kind]), list(p._q[kind])
        assert len(rc) == len(rp), kind
        for a, b in zip(rc, rp, strict=True):
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                same_value(x, y, shapes)
        assert _objects(rc) == _objects(rp)


def test_a_realistic_stream_makes_the_same_records_rows_and_bytes() -> None:
    c, p = pair(events_max=1000)  # full: evictions too
    evs = stream()
    feed((c, p), evs)
    same(c, p)
    general = c.general
    feed((c, p), evs)  # again, learned: all by the proven layouts, in C
    assert c._cfast and c.general - general < len(evs) / 100
    same(c, p)
    for spec in EVENT_TABLES:
        assert TableService(c).generate(spec.name) == TableService(p).generate(spec.name)
        assert _reply(TableService(c), spec.name) == _reply(TableService(p), spec.name)
    assert len(c) == len(p) == sum(min(1000, 2 * sum(e["event_type"] == k.value for e in evs)) for k in KINDS)


def test_evictions_are_counted_alike() -> None:
    from podtrail.metrics import REGISTRY
    evs = stream()

    def evicted(b: EventBuffers) -> float:
        before = sum(REGISTRY.get_sample_value("podtrail_table_events_expired_total", {"table_kind": k.value, "reason": "max"})
                     or 0.0 for k in KINDS)
        feed((b,), evs, batch=50)
        return sum(REGISTRY.get_sample_value("podtrail_table_events_expired_total", {"table_kind": k.value, "reason": "max"})
                   or 0.0 for k in KINDS) - before

    c, p = pair(events_max=300)
    assert evicted(c) == evicted(p) == len(evs) - len(c) > 0
    same(c, p)


def _reordered(e: Any) -> Any:
    """The event with its keys in reverse order (the same objects and entities)."""
    r = EventDict(reversed(list(e.items())))
    if hasattr(e, "_ctx"):
        r._ctx = e._ctx
    return r


def test_keys_in_another_order_give_the_same_records() -> None:
    c, p = pair()
    evs = stream()
    feed((c, p), evs)
    misses = sum(L.misses for fam in c._cfast.values() for L in fam)
    feed((c, p), [_reordered(e) for e in evs[:600]] + evs[:600])
    assert sum(L.misses for fam in c._cfast.values() for L in fam) > misses, "the other order missed the hints"
    same(c, p)


# -- odd values ----------------------------------------------------------------------------------

class S(str):
    pass


class I(int):  # noqa: E742 - an int subclass, named for what it is
    pass


class D(dict):  # type: ignore[type-arg]
    pass


class Meta(type):
    """A type equal to every type: Python's tuple comparison then takes it for int."""

    def __eq__(cls, other: object) -> bool:
        return True

    __hash__ = type.__hash__


class Odd(int, metaclass=Meta):
    pass


HEAD = f"{RUN_PREFIX}-"
_ids = st.one_of(
    st.integers(0, 2**64 - 1).map(lambda n: f"{HEAD}{n:x}"),  # canonical
    st.integers(0, 2**70).map(lambda n: f"{HEAD}{n:X}"),  # upper case
    st.integers(0, 2**20).map(lambda n: f"{HEAD}0{n:x}"),  # leading zero
    st.integers(2**64, 2**80).map(lambda n: f"{HEAD}{n:x}"),  # beyond 64 bits
    st.sampled_from([f"{HEAD}", f"{HEAD}-5", f"{HEAD}0x1f", f"{HEAD} 1f", f"{HEAD}1_f", f"{HEAD}\u0661", f"{HEAD}+1",
                     f"{HEAD}1f ", "foreign-1", "", HEAD[:-1], f"{HEAD}0", f"{HEAD}ffffffffffffffff"]),
    st.text(max_size=20),
    st.integers(),
)
_argv = st.one_of(
    st.lists(st.text(max_size=4), max_size=4),
    st.lists(st.one_of(st.text(max_size=3), st.text(max_size=2).map(lambda s: s + "\0"), st.builds(S, st.text(max_size=2)),
                       st.integers(), st.none()), min_size=1, max_size=4),
    st.tuples(st.text(max_size=3)),
)
_odd = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(2**63 - 3, 2**130), st.integers(-2**130, -1),
    st.floats(allow_nan=True), st.text(max_size=6), st.binary(max_size=4), st.builds(S, st.text(max_size=4)),
    st.builds(I, st.integers(-5, 2**70)), st.builds(D), st.just(Odd(3)), _argv,
)


@st.composite
def _mutations(draw: Any) -> list[tuple[int, str, Any]]:
    """(event index, what, value) changes to a few events of the stream."""
    n = len(stream())
    out = []
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, n - 1))
        what = draw(st.sampled_from(["value", "value", "value", "delete", "event_id", "argv", "container", "ctx"]))
        val = draw(_ids if what == "event_id" else _argv if what == "argv" else _odd)
        out.append((i, what, val))
    return out


def _mutated(evs: list[Any], muts: list[tuple[int, str, Any]], name_at: int) -> list[Any]:
    out = []
    for i, what, val in muts:
        e = evs[i]
        m: Any = EventDict(e)
        m._ctx = e._ctx
        names = sorted(k for k in m if k not in ("event_type",))
        name = names[name_at % len(names)]
        if what == "value":
            m[name] = val
        elif what == "delete":
            del m[name]
        elif what == "event_id":
            m["event_id"] = val
        elif what == "argv":
            m["argv"] = val
        elif what == "container":  # the same fields in another mapping type (no entities)
            m = (D if name_at % 2 else dict)(m)
        elif what == "ctx":
            m._ctx = [(), e._ctx[:1], list(e._ctx), e._ctx + (val,), (frozenset(),) + e._ctx[1:]][name_at % 5]
        out.append(m)
    return out


@functools.cache
def _warm() -> tuple[EventBuffers, EventBuffers]:
    c, p = pair(events_max=5000)
    feed((c, p), stream())
    return c, p


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(muts=_mutations(), name_at=st.integers(0, 10**6), fixed=st.sampled_from(
    ["time_ns", "mono_ns", "event_id", "time", "tid", "pid", "uid", "comm", "argv", None]))
def test_odd_values_after_learning_give_the_same_records(muts: list[tuple[int, str, Any]], name_at: int,
                                                        fixed: str | None) -> None:
    """Odd events meeting proven layouts: each is refused or taken exactly as Python does."""
    c, p = _warm()
    evs = stream()
    odd = _mutated(evs, muts, name_at)
    if fixed is not None:  # one of the values the proven layout checks, made odd in every event
        for m, (_, _, val) in zip(odd, muts, strict=True):
            if isinstance(m, dict) and fixed in m:
                m[fixed] = val
    feed((c, p), odd + evs[:20], batch=7)
    same(c, p)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(muts=_mutations(), name_at=st.integers(0, 10**6))
def test_odd_values_while_learning_give_the_same_records(muts: list[tuple[int, str, Any]], name_at: int) -> None:
    """From empty buffers: odd events among the first (the shapes still learning)."""
    c, p = pair(events_max=700)
    evs = stream()
    feed((c, p), _mutated(evs, muts, name_at) + evs[:400] + _mutated(evs, muts, name_at + 1), batch=33)
    same(c, p)


def test_what_python_raises_c_raises() -> None:
    """An EventDict whose _ctx is empty makes Python's loop raise IndexError (ctx[0]); C too,
    and both keep the events after it pending, alike."""
    c, p = _warm()
    e = EventDict(stream()[1])
    e._ctx = ()
    for b in (c, p):
        b._pending.extend([stream()[0], e, stream()[2]])
    errs = []
    for b in (c, p):
        with pytest.raises(IndexError) as ei:
            b.end_batch()
        errs.append(str(ei.value))
    assert errs[0] == errs[1]
    assert list(c._pending) == list(p._pending) == [stream()[2]]
    for b in (c, p):
        b.end_batch()
    same(c, p)


def test_no_reference_is_lost_or_kept() -> None:
    """Every object an event holds has the same reference count after C and after Python
    compacted it and the buffers are gone (a leak or a lost reference would differ)."""
    import gc
    evs = stream()[:900]
    vals = [v for e in evs[:60] for v in (*e.values(), *e._ctx)
            if not (v is None or type(v) is bool or (type(v) is int and -5 <= v <= 256))]  # shared by all code

    def after(native: bool) -> list[int]:
        c, p = pair(events_max=400)
        feed((c if native else p,), evs * 2)
        del c, p
        gc.collect()
        return [sys.getrefcount(v) for v in vals]

    after(True), after(False)  # what is made once (metric labels) is made
    gc.collect()
    before = [sys.getrefcount(v) for v in vals]
    assert after(True) == before
    assert after(False) == before


class _Getter(dict):  # type: ignore[type-arg]
    """A mapping whose get is its own (observe must call it, as Python does)."""

    def get(self, k: Any, default: Any = None) -> Any:
        return "got-" + k if k == "comm" else super().get(k, default)


@settings(max_examples=100, deadline=None)
@given(vals=st.lists(_odd, min_size=1, max_size=40), kind=st.sampled_from([EventDict, dict, D, _Getter]))
def test_observe_counts_alike(vals: list[Any], kind: type) -> None:
    """_Shape.observe's loop in C and in Python leave the same counts and values."""
    names = ("comm", "uid", "path", "absent")

    def counted(c: Any) -> dict[str, tuple[int, set[Any]]]:
        seen: dict[str, set[Any]] = {n: set() for n in names}
        for i in range(80):  # uid: 40 values, across the 32 that still count as repeating
            v = vals[i % len(vals)]
            ev = kind(comm=v, uid=i % 40, path=v if i % 3 else "/bin/sh")
            if c is None:
                shape = _Shape.__new__(_Shape)
                shape.seen, shape.n_seen = seen, 0
                shape.observe(ev)
            else:
                C.observe(seen, ev, buffer._REPEAT_MAX)
        return {n: (len(s), {v for v in s if type(v) is not object}) for n, s in seen.items()}

    assert counted(C) == counted(None)


def test_real_kernel_events_give_the_same_records_and_rows() -> None:
    """Samples the real kernel wrote (process.bpf.c through its ring buffer) for 320 execs of a
    real dash and busybox, through the real decoder, process table and container stages and
    finalize: the same records, rows and Thrift bytes from C and from Python."""
    import subprocess

    from conftest import require_core

    from bench.stage_profile import through
    from podtrail.bpf.libbpf import RingBuffer
    from podtrail.bpf.process import ProcessDecoder, build_process_source
    from podtrail.config import SensorConfig
    from podtrail.enrich.container import ContainerStage
    from podtrail.model.event import finalize
    from podtrail.procs.stage import ProcessStage
    from podtrail.procs.table import ProcessTable

    require_core()
    src = build_process_source(SensorConfig(ringbuf_pages=4096))
    src.load()
    assert src.obj is not None
    raw: list[bytes] = []
    try:  # a shell running 320 commands, each an exec and an exit (its fork folded into the exec)
        subprocess.run(["/bin/dash", "-c", "i=0; while [ $i -lt 320 ]; do /bin/busybox true buffers-$i; i=$((i+1)); done"],
                       check=True)
        rb = RingBuffer(src.obj.map("events"), raw.append)
        rb.consume()
        rb.close()
    finally:
        src.close()
    dec = ProcessDecoder()
    evs = [finalize(e) for e in through([ProcessStage(ProcessTable()), ContainerStage()],
                                        [e for e in map(dec.decode, raw) if e is not None])]
    assert sum(e.get("action") == "exec" for e in evs) >= 320
    c, p = pair(events_max=5000)
    feed((c, p), evs)
    general = c.general
    feed((c, p), evs)
    # the second time, the workload's 640 execs and exits took proven layouts, in C (events of
    # other processes on the machine meanwhile may be of shapes too rare to learn)
    assert c._cfast and c.general - general <= len(evs) - 600
    same(c, p)
    for spec in EVENT_TABLES:
        assert TableService(c).generate(spec.name) == TableService(p).generate(spec.name)
        assert _reply(TableService(c), spec.name) == _reply(TableService(p), spec.name)
