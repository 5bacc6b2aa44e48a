"""osquery rows written as Thrift bytes straight from the buffer records (podtrail.tables.wire)
say exactly what the events said.

Every reply here is the real ``call`` reply of the extension's processor, decoded by thrift's
own readers (C-accelerated and pure Python, podtrail's bindings) and by osquery-python's
client (the `osquery` package's bindings); the expected rows are ``to_row`` of the events as
they were submitted. Events come from the real stages (process table, container, k8s:
shared context entities), plus odd and hostile ones. osqueryd itself cannot be installed
here: the manager stand-in is tests/osquery/fake_manager.py.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import osquery.extensions.Extension as PyExtension
import pytest
from fake_manager import FakeOsqueryd
from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.transport.TTransport import TMemoryBuffer

from bench.stage_profile import BASE_PID, PODS, World, _raw, cycle, decode_items, enriched_events, through
from podtrail.bpf.process import EV_EXEC, ProcessDecoder
from podtrail.enrich.container import ContainerStage
from podtrail.enrich.k8s.stage import K8sStage
from podtrail.model.context import PROCESS_CTX, EventDict, share
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.procs.stage import ProcessStage
from podtrail.tables import wire
from podtrail.tables.buffer import EventBuffers
from podtrail.tables.cells import text_bytes
from podtrail.tables.constraints import matcher, parse_context
from podtrail.tables.osquery_ext import ExtensionHandler, OsqueryExtension, StreamingProcessor
from podtrail.tables.osquery_thrift import Extension
from podtrail.tables.osquery_thrift.ttypes import ExtensionResponse
from podtrail.tables.schema import TABLES, TableSpec
from podtrail.tables.service import TableService, to_row, writer

EVENT_TABLES = [t for t in TABLES.values() if t.kind is not None]


def _reply(svc: TableService, table: str, constraints: list[dict[str, Any]] | None = None, wire_path: bool = True,
           proto: Any = TBinaryProtocolAccelerated) -> bytes:
    handler = ExtensionHandler(TABLES, svc.select_wire if wire_path else svc.select, lambda: None)
    req = TMemoryBuffer()
    ctx = json.dumps({"constraints": constraints or []})
    Extension.Client(TBinaryProtocol(req)).send_call("table", table, {"action": "generate", "context": ctx})
    out = TMemoryBuffer()
    StreamingProcessor(handler).process(proto(TMemoryBuffer(req.getvalue())), proto(out))
    return out.getvalue()


def _decoded(reply: bytes) -> list[dict[str, str]]:
    """The rows, decoded three ways, which must agree."""
    fast = Extension.Client(TBinaryProtocolAccelerated(TMemoryBuffer(reply))).recv_call()
    slow = Extension.Client(TBinaryProtocol(TMemoryBuffer(reply))).recv_call()
    theirs = PyExtension.Client(TBinaryProtocol(TMemoryBuffer(reply))).recv_call()
    assert fast.status.code == 0 and theirs.status.code == 0
    assert fast.response == slow.response == theirs.response
    return fast.response  # type: ignore[no-any-return]


def _wire_safe(row: dict[str, str]) -> dict[str, str]:
    """A row as it reads after the wire: text that is not valid Unicode escaped."""
    return {k: text_bytes(v).decode() for k, v in row.items()}


def _buffers(evs: list[Any]) -> EventBuffers:
    b = EventBuffers(events_max=len(evs) + 1, expiry_s=10**9)
    for e in evs:
        b.submit(e)
    return b


def _want(spec: TableSpec, evs: list[Any]) -> list[dict[str, str]]:
    return [_wire_safe(to_row(spec, e)) for e in evs if e.get("event_type") == spec.kind.value]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def staged() -> tuple[list[Any], TableService]:
    evs = enriched_events(400)  # > 256 records a shape: the learned split of repeating values is used too
    return evs, TableService(_buffers(evs))


@pytest.mark.parametrize("spec", EVENT_TABLES, ids=lambda s: s.name)
def test_select_all_reads_back_every_event_exactly(staged: tuple[list[Any], TableService], spec: TableSpec) -> None:
    evs, svc = staged
    want = _want(spec, evs)
    for _ in range(2):  # the second time from the entities' kept bytes and the learned plans
        got = _decoded(_reply(svc, spec.name))
        assert got == want
    assert _decoded(_reply(svc, spec.name, proto=TBinaryProtocol)) == want  # the pure-Python writer too
    assert _decoded(_reply(svc, spec.name, wire_path=False)) == want  # the dict path says the same
    assert all(writer(spec).plan(r[2]) for r in svc.buffers.records(spec.kind)), "every record written from itself"  # type: ignore[arg-type]


CONSTRAINTS = [
    [{"name": "pid", "list": [{"op": 2, "expr": "102610"}], "affinity": "INTEGER"}],
    [{"name": "pid", "list": [{"op": 2, "expr": "102610"}, {"op": 2, "expr": "102611"}], "affinity": "INTEGER"}],  # IN
    [{"name": "action", "list": [{"op": 2, "expr": "exec"}], "affinity": "TEXT"}],  # a shape's constant
    [{"name": "pod_name", "list": [{"op": 2, "expr": "web-7-7d9f"}], "affinity": "TEXT"}],  # from the pod entity
    [{"name": "container_id", "list": [{"op": 2, "expr": f"{3:064x}"}], "affinity": "TEXT"}],  # container entity
    [{"name": "namespace", "list": [{"op": 2, "expr": "ns5"}], "affinity": "TEXT"},
     {"name": "pid", "list": [{"op": 32, "expr": "102900"}], "affinity": "INTEGER"}],
    [{"name": "time", "list": [{"op": 32, "expr": "0"}], "affinity": "BIGINT"}],
    [{"name": "severity", "list": [{"op": 4, "expr": "2"}], "affinity": "INTEGER"}],  # derived on reading
    [{"name": "cmdline", "list": [{"op": 2, "expr": "nothing like this"}], "affinity": "TEXT"}],
]


@pytest.mark.parametrize("spec", EVENT_TABLES[:3], ids=lambda s: s.name)
@pytest.mark.parametrize("cs", CONSTRAINTS)
def test_constrained_queries_select_the_same_rows(staged: tuple[list[Any], TableService], spec: TableSpec,
                                                  cs: list[dict[str, Any]]) -> None:
    evs, svc = staged
    pred = matcher(parse_context({"constraints": cs}), {c.name: c.key for c in spec.columns})
    want = [_wire_safe(to_row(spec, e)) for e in evs if e["event_type"] == spec.kind.value and pred(e)]  # type: ignore[union-attr]
    assert _decoded(_reply(svc, spec.name, cs)) == want
    assert want or cs[0]["name"] == "cmdline" or (cs[0]["name"] == "action" and spec.kind is not Kind.PROCESS)
    n, rows = svc.select(spec.name, parse_context({"constraints": cs}))
    assert n == len(want) and [_wire_safe(r) for r in rows] == want


def _hostile() -> list[Any]:
    big = "x" * (1 << 20)
    evs: list[Any] = []
    for i, (path, cmd) in enumerate([
        ("/tmp/\udcff\udcfe", "sh -c '\udcc3(' \x00 nul"),  # undecodable bytes kept by surrogateescape; NUL
        ("/bin/\ud800lone", "lone surrogate \udfff"),  # not even surrogateescape
        ("/usr/bin/é", "ünïcødé \u2028 \"quoted\" \\ back \n newline \x1b[31m"),
        ("/bin/big", big),
    ]):
        ev = new_event(Kind.PROCESS, "exec", pid=5000 + i, tid=5000 + i, ppid=1, uid=0, comm="x\x00y", path=path, cmdline=cmd,
                       argv=[cmd, "a\"b", "null"], source="ebpf", process_key=f"{5000 + i}:1", cwd=path,
                       ancestors=[{"pid": 1, "path": path, "cmdline": cmd}])
        share(ev, PROCESS_CTX, None)
        evs.append(finalize(ev))
    evs.append(finalize(new_event(Kind.PROCESS, "exec", pid=1.5, comm=None, exit_code=True, argv=["a\x00b"])))  # odd types
    evs.append({"event_type": "process", "action": "exit", "pid": 9, "event_id": "plain-dict"})  # no entities, no time
    bad = dict(finalize(new_event(Kind.PROCESS, "exec", pid=3)))
    bad["pid"] = {"not": "an int"}  # kept whole by the buffers (a plain copy): the dict path writes it
    evs.append(bad)
    return evs


def test_hostile_values_never_break_the_reply() -> None:
    evs = _hostile()
    svc = TableService(_buffers(evs))
    spec = TABLES["container_process_events"]
    want = [_wire_safe(to_row(spec, e)) for e in evs]
    got = _decoded(_reply(svc, spec.name))
    assert got == want
    assert got[0]["path"] == "/tmp/\\xff\\xfe" and "\x00" in got[0]["cmdline"] and got[1]["path"] == "/bin/\\ud800lone"
    assert len(got[3]["cmdline"]) == 1 << 20 and got[4]["pid"] == "1.5" and got[4]["exit_code"] == "1"
    argv = next(c.name for c in spec.columns if c.key == "argv")
    assert json.loads(got[2][argv]) == [evs[2]["cmdline"], "a\"b", "null"]
    # the dict path (the local API proxy's) no longer fails on such text either
    assert _decoded(_reply(svc, spec.name, wire_path=False)) == want


def _pod_api_labels(world: World, i: int, labels: dict[str, str]) -> None:
    pod = world.cache.by_uid(str(uuid.UUID(int=i + 1)))
    assert pod is not None
    world.cache.upsert(dataclasses.replace(pod, labels=labels))


def test_entity_changes_reach_the_rows() -> None:
    """A pod's labels change, a process execs again, a container's pod is gone: the rows of
    later events say the new truth, earlier events' rows keep what they said."""
    world = World()
    dec = ProcessDecoder()
    stages: list[Any] = [ProcessStage(world.table), ContainerStage(world.index),
              K8sStage(world.cache, None, cluster_name="c", node_name="node-1", labels=["app"])]
    evs: list[Any] = []

    def run(items: list[tuple[str, Any]]) -> list[Any]:
        done = [finalize(e) for e in through(stages, decode_items(dec, items))]
        evs.extend(done)
        return done

    first = run(cycle(world, 0))
    _pod_api_labels(world, 0, {"app": "web0-v2"})
    relabelled = run(cycle(world, 250))  # pod 0 again, after its labels changed
    items = cycle(world, 500)  # fork, exec, two connects, a file open, exit
    run(items[:2])
    sh, cgid = world.pods[500 % PODS]
    pid = BASE_PID + 10 * PODS + 100 + 500
    re_exec = run([("raw", _raw(EV_EXEC, pid, sh, cgid, 1_000_000_000 + 50_000 * 501 + 1500, "/bin/other", ["other", "-x"]))])
    after = run(items[2:])
    uid = str(uuid.UUID(int=1))
    world.cache.delete(uid, now=0.0)
    world.cache.expire(now=10**9)
    gone = run(cycle(world, 750))

    svc = TableService(_buffers(evs))
    for spec in EVENT_TABLES[:3]:
        rows = _decoded(_reply(svc, spec.name))
        assert rows == _want(spec, evs)
    socks = {r["eid"]: r for r in _decoded(_reply(svc, "container_socket_events"))}
    by = {e["event_id"]: e for e in evs}

    def row_of(ev: Any) -> dict[str, str]:
        return socks[ev["event_id"]]

    s1 = next(e for e in first if e["event_type"] == "socket")
    s2 = next(e for e in relabelled if e["event_type"] == "socket")
    assert json.loads(row_of(s1)["pod_labels"]) == {"app": "web0"} and json.loads(row_of(s2)["pod_labels"]) == {"app": "web0-v2"}
    pods = {id(x) for e in (s1, s2) for x in e.ctx if x.kind.name == "pod"}
    assert len(pods) == 2, "a new pod version: a new entity, its own kept bytes"
    s4 = next(e for e in gone if e["event_type"] == "socket")
    assert row_of(s4)["pod_name"] == "" and row_of(s4)["pod_labels"] == "" and row_of(s4)["namespace"] == ""
    assert row_of(s4)["container_id"] == f"{0:064x}"  # the cgroup is still known, its pod is not
    procs = {r["eid"]: r for r in _decoded(_reply(svc, "container_process_events"))}
    execs = [e for e in evs if e["event_type"] == "process" and e["action"] == "exec" and e["pid"] == pid]
    assert [procs[e["event_id"]]["path"] for e in execs] == ["/usr/bin/curl", "/bin/other"] and execs[1] is re_exec[0]
    s3 = next(e for e in after if e["event_type"] == "socket")
    assert row_of(s3)["path"] == "/bin/other"
    assert row_of(s3)["cmdline"] == "other -x"
    assert next(x for x in s3.ctx if x.kind.name == "process") is not next(x for x in execs[0].ctx if x.kind.name == "process")
    assert all(by[k] for k in socks)


def test_wire_rows_through_the_manager_stand_in(tmp_path: Path, staged: tuple[list[Any], TableService]) -> None:
    """Registered with the stand-in manager, called as osqueryd calls (its client is the
    `osquery` package's): the same rows, unconstrained and constrained."""
    evs, svc = staged
    osq = FakeOsqueryd(str(tmp_path / "osquery.em"))
    ext = OsqueryExtension(osq.path, TABLES, svc.select_wire, interval_s=0.2)
    try:
        ext.start()
        assert ext.uuid is not None
        spec = TABLES["container_process_events"]
        resp = osq.generate(ext.uuid, spec.name)
        assert resp.status.code == 0 and resp.response == _want(spec, evs)
        cs = CONSTRAINTS[1]
        resp = osq.generate(ext.uuid, spec.name, cs)
        pred = matcher(parse_context({"constraints": cs}), {c.name: c.key for c in spec.columns})
        assert resp.response == [to_row(spec, e) for e in evs if e["event_type"] == "process" and pred(e)] != []
        state = osq.generate(ext.uuid, "containers")  # a state table: dict rows on the same path
        assert state.status.code == 0 and state.response == []
    finally:
        ext.stop()
        osq.stop()


def test_pieces_are_protocol_exact() -> None:
    """One row, byte by byte: map header with the column count, then length-prefixed pairs."""
    spec = TABLES["container_file_events"]
    ev = finalize(new_event(Kind.FILE, "open", pid=7, tid=7, target_path="/x", source="ebpf"))
    svc = TableService(_buffers([ev]))
    (n, body), = list(wire.TableWriter(spec, lambda r: {}).chunks(svc.buffers.records(Kind.FILE)))
    assert n == 1 and body[:6] == struct.pack(">bbi", 11, 11, len(spec.columns))
    resp = ExtensionResponse()
    resp.read(TBinaryProtocolAccelerated(TMemoryBuffer(b"\x0f\x00\x02" + struct.pack(">bi", 13, 1) + body + b"\x00")))
    assert resp.response == [to_row(spec, ev)]
    assert isinstance(ev, EventDict)


def test_one_busy_process_whose_pid_and_tid_repeat() -> None:
    """A long-lived pid's many events (an exec chain, a busy proxy's connects): its pid is one
    of the values its shape shares (learned), and the tid made from it on reading is right."""
    evs = [finalize(new_event(Kind.PROCESS, "exec", pid=4242, tid=4242 if i % 7 else 4243, uid=0, comm="sh", source="ebpf",
                              path=f"/bin/step{i % 3}", cmdline=f"step {i}", argv=["step", str(i)], result=0, mono_ns=10**9 + i))
           for i in range(600)]
    evs += [finalize(new_event(Kind.SOCKET, "connect", pid=4242, tid=4242, uid=0, comm="envoy", source="ebpf",
                               remote_address=f"10.0.{i % 3}.1", remote_port=443, local_port=30000 + i,
                               direction="outbound", transport="tcp", result=0)) for i in range(600)]
    svc = TableService(_buffers(evs))
    for kind, table in ((Kind.PROCESS, "container_process_events"), (Kind.SOCKET, "container_socket_events")):
        assert any("pid" in r[2].rep_names for r in svc.buffers.records(kind) if r[2].own_at)
        spec = TABLES[table]
        assert _decoded(_reply(svc, spec.name)) == _want(spec, evs)
        assert all(writer(spec).plan(r[2]) for r in svc.buffers.records(kind))
        cs = [{"name": "pid", "list": [{"op": 2, "expr": "4242"}], "affinity": "INTEGER"}]
        assert len(_decoded(_reply(svc, spec.name, cs))) == 600


def test_a_reader_gone_mid_reply_fails_the_call_without_hanging(staged: tuple[list[Any], TableService]) -> None:
    """The sender thread's write fails (osqueryd went away): the call raises that error (the
    server then closes the connection) instead of blocking the rendering thread."""
    _, svc = staged

    class Gone(TMemoryBuffer):
        def __init__(self) -> None:
            super().__init__()
            self.flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            if self.flushes > 1:
                raise BrokenPipeError("osqueryd went away")

    req = TMemoryBuffer()
    Extension.Client(TBinaryProtocol(req)).send_call("table", "container_process_events", {"action": "generate"})
    processor = StreamingProcessor(ExtensionHandler(TABLES, svc.select_wire, lambda: None))
    with pytest.raises(BrokenPipeError):
        processor.process(TBinaryProtocolAccelerated(TMemoryBuffer(req.getvalue())), TBinaryProtocolAccelerated(Gone()))
