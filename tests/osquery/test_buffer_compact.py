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
