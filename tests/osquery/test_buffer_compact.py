"""The compact event buffers give back exactly the events they were given: every field,
value and type, for events through the real stages (shared context entities) and for the
odd ones (plain dicts, foreign event ids, derived fields a source set differently, no time)."""

from __future__ import annotations

from typing import Any

from bench.stage_profile import enriched_events
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.tables.buffer import EventBuffers
from podtrail.tables.schema import TABLES
from podtrail.tables.service import TableService, to_row


def _round_trip(evs: list[dict[str, Any]]) -> None:
    b = EventBuffers(events_max=len(evs) + 1, expiry_s=10**9)
    for e in evs:
        b.submit(e)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        by_kind.setdefault(e["event_type"], []).append(e)
    for kind in (Kind.PROCESS, Kind.SOCKET, Kind.FILE):
        want = by_kind.get(kind.value, [])
        got = b.events(kind, since_s=None)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert dict(g) == dict(w)
            assert {k: type(v) for k, v in g.items()} == {k: type(v) for k, v in w.items()}
        table = next(t for t in TABLES.values() if t.kind is kind)
        rows = TableService(b).generate(table.name)
        assert rows == [to_row(table, w) for w in want]


def test_events_through_the_stages_come_back_exactly() -> None:
    evs = enriched_events(300)
    assert any(getattr(e, "ctx", ()) for e in evs)
    _round_trip(evs)


def test_odd_events_come_back_exactly() -> None:
    base: dict[str, Any] = dict(pid=7, uid=0, source="auditd", remote_address="10.0.0.1", remote_port=53, local_port=5353,
                                direction="outbound", transport="udp", result=-13)
    odd = [
        dict(finalize(new_event(Kind.SOCKET, "connect", **base))),  # plain dict, no entities
        finalize(new_event(Kind.SOCKET, "connect", **base, event_id="foreign-00ff")),  # not this run's id form
        finalize(new_event(Kind.SOCKET, "connect", **base, src_address="192.0.2.1")),  # a source's own src_address
        finalize(new_event(Kind.SOCKET, "connect", **base, severity=9, outcome="odd")),  # set before finalize
        {"event_type": "file", "action": "create", "pid": 1, "target_path": "/x/y", "event_id": "n", "time_ns": 2**62},  # no time
        finalize(new_event(Kind.FILE, "unlink", pid=1, target_path="/etc/", source="ebpf", mode=0o644)),
        finalize(new_event(Kind.PROCESS, "exec", pid=2**40, argv=["a", "b"], cmdline="a b", path="/bin/a", drift=True)),
    ]
    odd[1]["event_id"] = odd[1]["event_id"].upper()  # case: must not come back lower-cased
    _round_trip(odd)


def test_an_event_compaction_cannot_handle_is_kept_whole() -> None:
    """A value no declared type allows (a source bug) still reaches the tables unchanged."""
    ev = dict(finalize(new_event(Kind.FILE, "create", pid=3, target_path="/x", source="ebpf")))
    ev["pid"] = {"not": "an int"}  # unhashable where an integer is declared: kept as it is
    _round_trip_raw(ev)
    ev["target_path"] = 123  # deriving file_name from it raises: the event is kept as a plain copy
    _round_trip_raw(ev)


def _round_trip_raw(ev: dict[str, Any]) -> None:
    b = EventBuffers(events_max=10, expiry_s=10**12)
    b.submit(ev)
    assert [dict(e) for e in b.iter_events(Kind.FILE)] == [ev]


def test_values_a_shape_shares_keep_their_types_after_learning() -> None:
    """Once a shape has learned which values repeat (and shares them as one tuple), an event
    with an odd type in such a column (a bool or a text where an integer is declared, None)
    still comes back exactly, and never takes another event's shared tuple."""
    evs: list[dict[str, Any]] = []
    for i in range(400):
        evs.append(finalize(new_event(Kind.FILE, "open", pid=100 + i, uid=1000, gid=1000, comm="cat", target_path="/etc/hosts",
                                      flags=0, result=3, fd=3, source="ebpf")))
    for uid, comm in ((True, "cat"), ("1000", "cat"), (1000, None), (1000.0, "cat"), (1, "cat")):
        evs.append(finalize(new_event(Kind.FILE, "open", pid=7, uid=uid, gid=1000, comm=comm, target_path="/etc/hosts",
                                      flags=0, result=3, fd=3, source="ebpf")))
    b = EventBuffers(events_max=1000, expiry_s=10**9)
    for e in evs:
        b.submit(e)
    recs = b.records(Kind.FILE)
    assert any(r[2].own_at for r in recs), "the shape learned its repeating values"
    shared = {id(r[3]) for r in recs if r[2].own_at and type(r[3]) is tuple}
    assert len(shared) < 10, "records with the same repeating values share one tuple"
    _round_trip(evs)


def _proven(n: int = 300) -> list[Any]:
    """Events of one layout, enough for its shape to learn and the layout to be proven."""
    return [finalize(new_event(Kind.SOCKET, "connect", pid=4000 + i % 7, tid=4000 + i % 7, uid=1000, gid=1000, comm="curl",
                               source="ebpf", remote_address=f"10.0.0.{i % 40}", remote_port=443, local_port=30000 + i,
                               direction="outbound", transport="tcp", result=0, mono_ns=10**9 + i))
            for i in range(n)]


def _with_ctx(ev: dict[str, Any]) -> Any:
    from podtrail.model.context import PROCESS_CTX, share
    share(ev, PROCESS_CTX, None)
    return ev


def test_events_unlike_a_proven_layout_come_back_exactly() -> None:
    """After a layout is proven (one getter, one type comparison), an event with the same
    names but another type, a foreign or non-canonical id, a thread whose tid is not its pid,
    a counter beyond 64 bits, a time that is not time_ns's second or a negative time still
    comes back exactly (the proven layout refuses it, the general path keeps it)."""
    from podtrail.model.event import RUN_PREFIX
    evs = [_with_ctx(e) for e in _proven()]
    b = EventBuffers(events_max=10_000, expiry_s=10**12)
    for e in evs:
        b.submit(e)
    b.end_batch()
    assert b._fast, "the layout was proven"
    general = b.general

    def like(**changes: Any) -> Any:
        e = _proven(1)[0]
        e.update(changes)
        return _with_ctx(e)

    odd = [like(uid=True), like(uid=1000.0), like(local_port="30000"), like(remote_address=None), like(tid=4001),
           like(event_id="foreign-1"), like(event_id=f"{RUN_PREFIX}-0ff"), like(event_id=f"{RUN_PREFIX}-FF"),
           like(event_id=f"{RUN_PREFIX}--5"), like(event_id=f"{RUN_PREFIX}-{1 << 70:x}"), like(mono_ns=-1),
           like(mono_ns=1 << 64), like(time=5), like(time_ns=-10**18, time=-10**9), like(time_ns=True)]
    for e in odd:
        b.submit(e)
    fine = _proven(3)
    for e in fine:
        b.submit(_with_ctx(e))
    got = b.events(Kind.SOCKET)[len(evs):]
    want = odd + fine
    assert [dict(g) for g in got] == [dict(w) for w in want]
    assert [{k: type(v) for k, v in g.items()} for g in got] == [{k: type(v) for k, v in w.items()} for w in want]
    # all but the two the proven layout keeps exactly itself (a time of its own, a negative time_ns)
    assert b.general - general == len(odd) - 2, "the odd ones took the general path"


def test_a_query_right_after_one_event_sees_it() -> None:
    """Compaction waits for the pipeline's batch end, but a read never misses a submitted event."""
    b = EventBuffers(events_max=100, expiry_s=10**12)
    ev = finalize(new_event(Kind.FILE, "open", pid=1, target_path="/etc/hosts", source="ebpf"))
    b.submit(ev)
    assert b._pending and [dict(e) for e in b.events(Kind.FILE)] == [dict(ev)]
    b.submit(ev)
    assert len(TableService(b).generate("container_file_events")) == 2 and len(b) == 2


def _sample(name: str, **labels: str) -> float:
    from podtrail.metrics import REGISTRY
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_max_count_and_expiry_drop_the_oldest_and_count_them() -> None:
    evs = [_with_ctx(e) for e in _proven(600)]
    before = _sample("podtrail_table_events_expired_total", table_kind="socket", reason="max")
    b = EventBuffers(events_max=250, expiry_s=10**12)
    for i, e in enumerate(evs):
        b.submit(e)
        if i % 50 == 49:
            b.end_batch()
    assert [e["event_id"] for e in b.events(Kind.SOCKET)] == [e["event_id"] for e in evs[-250:]]
    assert _sample("podtrail_table_events_expired_total", table_kind="socket", reason="max") - before == 350
    before = _sample("podtrail_table_events_expired_total", table_kind="socket", reason="expiry")
    cut = evs[-100]["time_ns"]
    b.expire(now_ns=cut + b.expiry_ns)
    assert [e["event_id"] for e in b.events(Kind.SOCKET, since_s=None)] == [e["event_id"] for e in evs[-100:]]
    assert _sample("podtrail_table_events_expired_total", table_kind="socket", reason="expiry") - before == 150
    old = _with_ctx(_proven(1)[0])
    b = EventBuffers(events_max=250, expiry_s=60)
    b.submit(old)  # pending, not yet compacted: expiry sees it too
    b.expire(now_ns=old["time_ns"] + 61 * 10**9)
    assert not b._pending and b.events(Kind.SOCKET) == []
    assert _sample("podtrail_table_events_expired_total", table_kind="socket", reason="expiry") - before == 151


def test_reads_while_the_pipeline_submits_lose_and_repeat_nothing() -> None:
    """A reader thread compacts what is pending while the pipeline thread keeps submitting:
    every event ends up once, in order."""
    import threading
    evs = [_with_ctx(e) for e in _proven(3000)]
    b = EventBuffers(events_max=10_000, expiry_s=10**12)
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not done.is_set():
            seen.append(len(b.records(Kind.SOCKET)))

    t = threading.Thread(target=read)
    t.start()
    for i, e in enumerate(evs):
        b.submit(e)
        if i % 97 == 0:
            b.end_batch()
    done.set()
    t.join()
    assert seen == sorted(seen)
    assert [e["event_id"] for e in b.events(Kind.SOCKET)] == [e["event_id"] for e in evs]
