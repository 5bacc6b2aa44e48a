"""Exited processes out of the cyclic garbage collector (issue 14, fifth pass;
podtrail/procs/_retire.c): what the table keeps through the exit grace period (the Proc, its
extra dict, its process entity with its values and rendered fragments) and the buffers' argv
texts are untracked once kept, on the real kernel through the real agent and through the real
stages with real kernel samples; reference counting still frees them when the table forgets
them; the events are the same; and whatever is not verified acyclic stays tracked (a cycle
among such objects is still collected)."""

from __future__ import annotations

import gc
import os
import pickle
import re
import subprocess
import sys
import time
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import process_only_config, start_agent
from conftest import IN_CI, require_core

from podtrail.model.context import PROCESS_CTX, Entity, EntityKind, snapshot
from podtrail.procs import table as table_mod
from podtrail.procs.table import Proc, ProcessTable

R = table_mod._retire
REAL_SAMPLES = Path("/work/wt/prof/samples.pkl")  # real kernel samples where this machine has them
_RUN_BOUND = re.compile(rb'"event_id":"[^"]*"|"time":\d+|"time_ns":\d+')
needs_native = pytest.mark.skipif(R is None and not IN_CI, reason="podtrail.procs._retire not built")


def test_the_accelerator_is_built_under_ci() -> None:
    if IN_CI:
        assert R is not None, "podtrail.procs._retire is not built: make native"


def _contents(p: Proc) -> Iterator[tuple[str, Any]]:
    """Every container the table keeps for an exited process, by name."""
    yield "Proc", p
    yield "extra", p.extra
    for k, v in p.extra.items():
        if gc.is_tracked(v) or isinstance(v, (list, tuple, dict, Entity)):
            yield f"extra[{k}]", v
    ent = p.extra.get("ctx")
    if isinstance(ent, Entity):
        yield "entity.vals", ent.vals
        yield "entity.names", ent.names
        yield "entity.keys", ent.keys
        if ent.memo is not None:
            yield "entity.memo", ent.memo
            for k, v in ent.memo.items():
                yield f"entity.memo[{k}]", v


def _tracked(p: Proc) -> list[str]:
    return [name for name, o in _contents(p) if gc.is_tracked(o)]


def _samples() -> list[bytes]:
    if not REAL_SAMPLES.exists():
        pytest.skip(f"{REAL_SAMPLES} (real ring-buffer samples) not on this machine")
    with open(REAL_SAMPLES, "rb") as f:
        raws: list[bytes] = pickle.load(f)
    return raws


def _run_stages(raws: list[bytes], devnull: Any, grace: float = 30.0) -> tuple[Any, list[Any], Any]:
    """The real decoder, the real process stage (the table as the agent keeps it with eBPF),
    the real JSON lines output and the real osquery buffers, as the pipeline drives them
    (submit per event, end_batch per batch, tick after), over real kernel samples."""
    from podtrail.bpf.process import ProcessDecoder
    from podtrail.outputs.stdout import StdoutSink
    from podtrail.procs.stage import ProcessStage
    from podtrail.tables.buffer import EventBuffers

    table = ProcessTable(grace, proc_fallback=False)
    dec = ProcessDecoder()
    evs = [e for e in map(dec.decode, raws) if e is not None]
    me = Proc(os.getpid(), 1, None, 0, sys.executable, "python -m pytest", "python", "/")
    for e in evs:  # the samples' parent (the benchmark that made them) as the table would have it
        pp = e.get("ppid")
        if pp and pp not in table.by_pid:
            table.by_pid[pp] = Proc(pp, 1, me, me.pid, sys.executable, "python paced", "python", "/", 0)
    stage, out = ProcessStage(table), list[Any]()
    sink, bufs = StdoutSink(devnull, linger_s=0), EventBuffers(50000)
    for i in range(0, len(evs), 64):
        for ev in evs[i:i + 64]:
            stage.process(ev, out.append)
        for ev in out:
            sink.submit(ev)
            bufs.submit(ev)
        sink.end_batch()
        bufs.end_batch()
        out.clear()
    sink.close()
    stage.tick(time.monotonic(), out.append)
    return stage, evs, bufs


@needs_native
def test_real_samples_exited_processes_untracked_after_the_tick(tmp_path: Path) -> None:
    raws = _samples()
    with open(os.devnull, "w") as devnull:
        stage, evs, bufs = _run_stages(raws, devnull)
    exited = list(stage.table._exited)
    assert len(exited) >= 9000, len(exited)  # the samples are 10,001 execs and their exits
    bad = {p.key: _tracked(p) for p in exited if _tracked(p)}
    assert not bad, list(bad.items())[:5]
    # the JSON lines output rendered the ancestry into the entity's memo: untracked too
    assert all(p.extra["ctx"].memo is not None and "jsonl" in p.extra["ctx"].memo for p in exited)
    # the buffers' argv texts (records are untracked by _compact.c already)
    from podtrail.model.fields import Kind
    from podtrail.tables.buffer import _Argv

    argvs = [v for r in bufs._q[Kind.PROCESS.value] for v in r if type(v) is _Argv]
    assert len(argvs) >= 9000
    if bufs._c is not None:  # the C loop untracks them; the general path (a shape's first events) does not
        assert sum(map(gc.is_tracked, argvs)) <= bufs.general, (sum(map(gc.is_tracked, argvs)), bufs.general)
    # a live process is left as it is (it changes: its exec, its memos)
    assert any(gc.is_tracked(p) for p in stage.table.by_pid.values() if p.exited_at is None)


@needs_native
def test_events_are_the_same_with_and_without_retiring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Untracking changes nothing an output or a table sees: the JSON lines of both runs are
    byte for byte the same, but for what differs between any two runs of the decoder (the
    event id's counter, and the wall clock it derives from the kernel's each time it starts)."""
    raws = _samples()[:6000]
    lines = []
    for retire in (R, None):
        monkeypatch.setattr(table_mod, "_retire", retire)
        path = tmp_path / f"{retire is not None}.jsonl"
        with open(path, "w") as f:
            stage, _, _ = _run_stages(raws, f, grace=0.0)
            stage.tick(time.monotonic() + 1, [].append)
        lines.append([_RUN_BOUND.sub(b"", ln) for ln in path.read_bytes().splitlines()])
    assert len(lines[0]) >= 5000 and lines[0] == lines[1]


def _held_and_left(raws: list[bytes]) -> tuple[int, int, list[int]]:
    """Traced bytes the stages hold after the storm (the table with its exited processes) and
    after the table forgets them and the stage is dropped, with the collector off (reference
    counting alone); and the reference counts of 50 retired processes just before the end."""
    with open(os.devnull, "w") as devnull:
        _run_stages(raws[:200], devnull)  # warm-up: imports, caches, interned names
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            stage, evs, bufs = _run_stages(raws, devnull, grace=5.0)
            del evs, bufs
            kept = list(stage.table._exited)[:50]
            if table_mod._retire is not None:
                assert kept and not any(_tracked(p) for p in kept)
            held = tracemalloc.get_traced_memory()[0] - before
            stage.tick(time.monotonic() + 10, [].append)  # reap: past the grace
            assert not stage.table._exited
            refs = [sys.getrefcount(p) for p in kept]
            del kept, stage
            left = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    return held, left, refs


@needs_native
def test_reference_counting_frees_what_the_table_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the collector off, the exited processes of a storm are freed by reference counting
    alone once the table forgets them: what stays is what stays without retiring too (the
    stage's and buffers' own start-up objects, some in cycles of their own), megabytes less
    than the table held; and a retired process the test still holds has no other referrer."""
    raws = _samples()[:10000]
    res = {}
    gc.collect()
    gc.disable()
    try:
        for retire in (None, R):
            monkeypatch.setattr(table_mod, "_retire", retire)
            res[retire is not None] = _held_and_left(raws)
    finally:
        gc.enable()
    (_, left0, refs0), (held1, left1, refs) = res[False], res[True]
    assert refs == refs0 and set(refs) == {3}, refs[:5]  # the list, the loop's name, getrefcount's argument
    assert held1 - left1 > 2_000_000, res  # ~5,000 processes' records were freed
    assert left1 <= left0 + 64 * 1024, res


@needs_native
def test_anything_not_verified_acyclic_stays_tracked() -> None:
    assert R is not None
    # data: verified and untracked, bottom-up
    inner = [{"pid": 1, "path": "/bin/sh"}, ("a", 2, None, 1.5, b"x")]
    outer = {"ancestors": inner, "t": (inner, frozenset({"x"}))}
    assert R.data(outer) and not gc.is_tracked(outer) and not gc.is_tracked(inner)
    # a list that contains itself, a set, an object of another class, a Proc: refused
    class Other:
        pass

    loop: list[Any] = []
    loop.append(loop)
    assert not R.data(loop) and gc.is_tracked(loop)
    odds: list[Any] = [{1, 2}, Other(), Proc(1, 1), [Proc(1, 1)], {"k": [set()]}]
    for odd in odds:
        wrapped = {"v": odd}
        assert not R.data(wrapped) and gc.is_tracked(wrapped), odd
    # an object the collector does not track is a leaf (a cycle through it is never collected
    # anyway): a retired list, a plain object() (no references the collector could see)
    assert R.data({"v": inner, "o": object()})
    deep: Any = "leaf"
    for _ in range(20):
        deep = [deep]
    assert not R.data(deep) and gc.is_tracked(deep)

    t = ProcessTable(0.0, proc_fallback=False)
    t.on_fork(0, 930000, 1, 0.0)
    ok = t.on_exec(930001, "/bin/true", "true", "true", 0, 0, 2, 930000, cwd="/", start_ns=2)
    odd_extra = t.on_exec(930002, "/bin/true", "true", "true", 0, 0, 3, 930000, cwd="/", start_ns=3)
    odd_extra.extra["peer"] = t.by_pid[930000]  # a (live) Proc in extra: never done by the table, refused if it were
    odd_ent = t.on_exec(930003, "/bin/true", "true", "true", 0, 0, 4, 930000, cwd="/", start_ns=4)
    odd_ent.extra["ctx"] = snapshot(PROCESS_CTX, {"path": "/bin/true", "ancestors": [{1, 2}]})  # a set inside
    a = t.on_exec(930004, "/bin/a", "a", "a", 0, 0, 5, 930000, cwd="/", start_ns=5)
    b = t.on_exec(930005, "/bin/b", "b", "b", 0, 0, 6, 930000, cwd="/", start_ns=6)
    a.parent, b.parent = b, a  # a parent loop (only a racy /proc seed could make one)
    unset = Proc.__new__(Proc)  # no slot set at all
    for p in (ok, odd_extra, odd_ent, a, b):
        t.on_exit(p.pid, 10.0)
    t._exited.append(unset)
    assert R.retire(list(t._exited)) == 1
    assert not gc.is_tracked(ok) and not gc.is_tracked(ok.extra)
    assert gc.is_tracked(odd_extra) and gc.is_tracked(odd_extra.extra)
    assert gc.is_tracked(odd_ent) and gc.is_tracked(odd_ent.extra) and gc.is_tracked(odd_ent.extra["ctx"])
    assert gc.is_tracked(a) and gc.is_tracked(b) and gc.is_tracked(unset)
    # a loop left tracked is still collected once nothing else holds it
    class Probe:
        pass

    x = t.on_exec(930006, "/bin/x", "x", "x", 0, 0, 7, 0, cwd="/", start_ns=7)
    y = t.on_exec(930007, "/bin/y", "y", "y", 0, 0, 8, 0, cwd="/", start_ns=8)
    x.parent, y.parent = y, x
    probe = Probe()
    y.extra["probe"] = probe  # refused too; only to see the loop freed
    gone = weakref.ref(probe)
    t.by_pid.clear()
    t._exited.clear()
    assert R.retire([x]) == 0 and gc.is_tracked(x)
    del x, y, probe
    gc.collect()
    assert gone() is None


@needs_native
def test_a_retired_extra_dict_tracks_itself_again_when_an_entity_comes() -> None:
    """What later events may do to an exited process's extra (the general path's new entity
    version): CPython tracks the dict again on that insert, so nothing unverified is hidden."""
    t = ProcessTable(30.0, proc_fallback=False)
    p = t.on_exec(940001, "/bin/true", "true", "true", 0, 0, 2, 0, cwd="/", start_ns=2)
    p.extra["user"] = "root"
    t.on_exit(p.pid, 1.0)
    t.reap(1.0)
    assert not gc.is_tracked(p) and not gc.is_tracked(p.extra)
    p.extra["uid"] = 0  # a number: stays untracked
    assert not gc.is_tracked(p.extra)
    p.extra["ctx"] = snapshot(PROCESS_CTX, {"path": "/bin/true"})
    assert gc.is_tracked(p.extra)
    # reap retires each exit once: later calls only look at newer exits
    q = t.on_exec(940002, "/bin/true", "true", "true", 0, 0, 3, 0, cwd="/", start_ns=3)
    t.on_exit(q.pid, 2.0)
    t.reap(2.0)
    assert not gc.is_tracked(q) and gc.is_tracked(p.extra)


@needs_native
def test_setup_refuses_types_whose_references_it_cannot_see() -> None:
    assert R is not None

    class WithDict:
        pass

    with pytest.raises(TypeError):
        R.setup(WithDict, (Entity,))
    with pytest.raises(TypeError):
        R.setup(Proc, (WithDict,))
    R.setup(Proc, (Entity, EntityKind))


@needs_native
def test_real_agent_exited_processes_untracked() -> None:
    """On the real kernel, through the real agent: busybox children's Procs, their extra
    dicts and entities are untracked once the pipeline's tick has seen their exits, and the
    osquery buffers' argv texts of their execs too."""
    require_core()
    a, sink = start_agent(process_only_config())
    try:
        for _ in range(400):  # past the buffers' learning of the exec shape: its later records by the C loop
            subprocess.run(["/bin/busybox", "true", "gc-retire-warm-up"], check=True)
        marker = f"gc-retire-{os.getpid()}"
        for i in range(20):
            subprocess.run(["/bin/busybox", "true", marker, str(i)], check=True)
        exits = sink.wait_for(lambda e: e.get("action") == "exit" and marker in (e.get("cmdline") or ""), count=20)
        assert len(exits) == 20
        time.sleep(0.5)  # the pipeline ticks every 0.1 s
        table = a.table
        assert table is not None
        procs = [p for p in list(table._exited) if marker in p.cmdline]
        assert len(procs) == 20
        assert not {p.key: _tracked(p) for p in procs if _tracked(p)}
        from podtrail.model.fields import Kind
        from podtrail.tables.buffer import _Argv

        bufs = a.tables.buffers
        recs = bufs.records(Kind.PROCESS)
        argvs = [v for r in recs for v in r if type(v) is _Argv and marker in v]
        assert len(argvs) == 20
        if bufs._c is not None:
            assert not any(map(gc.is_tracked, argvs))
    finally:
        a.stop()
