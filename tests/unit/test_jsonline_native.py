"""The C JSON lines (podtrail/outputs/_jsonline.c) against their reference, stdout.json_line:
byte for byte on real events (real decoder, process, container and Kubernetes stages) and on
hypothesis-made hostile events, or declined (then the sink writes the reference's line). Its
fragments of context entities are never stale: each is used only for the very object the
event holds, and a new entity version (a pod's labels, an exec, a container gone) has new ones."""

from __future__ import annotations

import enum
import gc
import os
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podtrail.model.context import CONTAINER_CTX, POD_CTX, PROCESS_CTX, EventDict, share
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import FIELDS, Kind
from podtrail.outputs import stdout
from podtrail.outputs.stdout import StdoutSink, _PyLines, json_line

J = stdout._native
pytestmark = pytest.mark.skipif(J is None and os.environ.get("CI") != "true", reason="_jsonline not built")
REAL_SAMPLES = Path("/work/wt/prof/samples.pkl")  # real kernel samples where this machine has them


def test_the_accelerator_is_built_under_ci() -> None:
    assert J is not None, "podtrail.outputs._jsonline is not built: make native"


def _sink_bytes(events: list[Any], native: bool, tmp_path: Path) -> bytes:
    """What a StdoutSink writes to a file for ``events``, with the C or the Python buffer."""
    path = tmp_path / ("native.jsonl" if native else "python.jsonl")
    with open(path, "w") as f:
        sink = StdoutSink(f, linger_s=0)
        if not native:
            sink._buf, sink._add = _PyLines(), None
        for ev in events:
            sink.submit(ev)
            sink.end_batch()
        sink.close()
    return path.read_bytes()


def _host_events() -> list[Any]:
    """bench/delivery's exec storm stream (exec and exit of busybox under this process's real
    ancestry) through the real decoder and the process, container and Kubernetes stages."""
    from bench.delivery import _samples

    return _through_host_stages(_samples(300))


def _through_host_stages(samples: list[bytes]) -> list[Any]:
    import sys

    from podtrail.bpf.process import ProcessDecoder
    from podtrail.config import KubernetesConfig
    from podtrail.enrich.cgroup_index import CgroupIndex
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s import build_k8s_stage
    from podtrail.procs.stage import ProcessStage
    from podtrail.procs.table import Proc, ProcessTable

    table = ProcessTable()
    table.seed()
    me = table.get(os.getpid())
    dec = ProcessDecoder()
    for s in samples[:200]:
        e = dec.decode(s)
        if e is not None and e.get("ppid") and e["ppid"] not in table.by_pid:
            table.by_pid[e["ppid"]] = Proc(e["ppid"], 1, me, os.getpid(), sys.executable, f"{sys.executable} -m pytest", "python", "/")
    procs, cont = ProcessStage(table), ContainerStage(CgroupIndex())
    k8s, stop, _ = build_k8s_stage(KubernetesConfig(), "node-1")
    out: list[Any] = []
    try:
        dec = ProcessDecoder()
        for s in samples:
            e = dec.decode(s)
            if e is None:
                continue
            evs: list[Any] = []
            procs.process(e, evs.append)
            for x in evs:
                cont.apply(x)
                k8s.process(x, lambda y: out.append(finalize(y)))
    finally:
        stop()
    return out


def _pod_events() -> list[Any]:
    """bench/stage_profile's processes in 250 pods (fork, exec, connects, an open, exit) through
    every stage the agent runs, detection included."""
    from bench.stage_profile import enriched_events

    return enriched_events(300)


@pytest.mark.parametrize("source", ["host", "pods", "kernel samples"])
def test_real_events_are_written_byte_for_byte_as_the_reference(source: str, tmp_path: Path) -> None:
    if source == "kernel samples":
        if not REAL_SAMPLES.exists():
            pytest.skip("no recorded kernel samples on this machine")  # host and pods above are always run
        events = _through_host_stages(pickle.loads(REAL_SAMPLES.read_bytes())[:6000])
    else:
        events = _host_events() if source == "host" else _pod_events()
    assert len(events) > 500 and all(type(e) is EventDict and e.ctx for e in events)
    ref = [json_line(e) for e in events]
    for _ in range(2):  # first renders the entities' fragments, then uses them
        got = [J.line(e) for e in events]
        assert got == ref  # none declined, and every byte the same
    assert _sink_bytes(events, True, tmp_path) == b"".join(x + b"\n" for x in ref) == _sink_bytes(events, False, tmp_path)
    frags = [e.memo["jsonl"] for ev in events for e in ev.ctx if e.memo and "jsonl" in e.memo]
    assert frags, "no entity fragment was kept"


# -- hostile events -------------------------------------------------------------------------

class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40) | st.sampled_from(
    ["…", "\u2028\u2029", "\udcff", "a\"b\\c\n\r\t\x00\x1f\x7f", "\U0001f600", "é" * 20, "x" * 300 + "\"…"])
_int = st.integers() | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63, -2**63 - 1, 0, -1, 10**30])
_scalar = (_text | _int | st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([Color.RED, Text("sub…"), Text("plain"), orjson.Fragment(b'{"f":1}'), b"bytes", object]))
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(_text, inner, max_size=4) | st.dictionaries(_int, inner, min_size=1, max_size=2),
                      max_leaves=12)
_key = st.sampled_from(sorted(FIELDS)) | _text


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_key, _value), max_size=12))
def test_hostile_events_are_the_reference_bytes_or_declined(pairs: list[tuple[str, Any]]) -> None:
    ev = new_event(Kind.PROCESS, "exec")
    for k, v in pairs:
        ev[k] = v
    try:
        ref: bytes | BaseException = json_line(ev)
    except Exception as e:  # the sink counts it as a format error
        ref = e
    got = J.line(ev)
    if got is None:
        return  # declined: the sink writes the reference's line
    assert got == ref
    assert got.isascii() and b"\n" not in got and b"\r" not in got


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_text, _value, max_size=3), max_size=4), st.dictionaries(_text, _value, max_size=4),
       st.lists(_value, max_size=3))
def test_hostile_entity_values_from_the_memo_are_the_reference_bytes_or_declined(
        ancestors: list[Any], labels: dict[str, Any], ips: list[Any]) -> None:
    """The list and dict values of attached entities (rendered once, then copied) with hostile
    contents: each line, first and again from the memo and the identity cache, is the
    reference's or declined."""
    ev = _ev_with(PROCESS_CTX, process_key="1:1", path="/bin/sh", ancestors=ancestors)
    ev.update(pod_name="p", pod_labels=labels, pod_ips=ips)
    share(ev, POD_CTX, None)
    try:
        ref: bytes | BaseException = json_line(ev)
    except Exception as e:
        ref = e
    for _ in range(2):
        got = J.line(ev)
        if got is not None:
            assert got == ref


@pytest.mark.parametrize("value", ["\udcff", 2**64, -2**63 - 1, {1: 2}, [{"a": [[[["x"]]]]}], object()],
                         ids=["surrogate", "int>u64", "int<i64", "int key", "deep-ok", "object"])
def test_what_orjson_refuses_is_declined_and_the_rest_is_written(value: Any) -> None:
    ev = new_event(Kind.PROCESS, "exec", comm=value)
    got = J.line(ev)
    if isinstance(value, list):
        assert got == json_line(ev)
    else:
        assert got is None


def test_plain_text_and_every_scalar_is_written_not_declined() -> None:
    """The decline path must stay the exception (else this would be the reference, slower)."""
    ev = new_event(Kind.PROCESS, "exec", comm="x\x00\"\\…\U0001f600é\u2028", pid=-5, exit_code=2**64 - 1, drift=True,
                   sensitive=False, cwd=None, argv=["a", ("b", 1.5)], pod_labels={"k": "v"}, severity=Color.RED)
    got = J.line(ev)
    assert got is not None and got == json_line(ev)


def test_deep_nesting_is_declined_not_a_crash() -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    assert J.line(new_event(Kind.PROCESS, "exec", argv=deep)) is None
    cyc: list[Any] = []
    cyc.append(cyc)
    assert J.line(new_event(Kind.PROCESS, "exec", argv=cyc)) is None


# -- entity fragments are never stale -------------------------------------------------------

def _ev_with(kind: Any, **fields: Any) -> EventDict:
    ev = new_event(Kind.PROCESS, "exit", pid=9, **fields)
    assert isinstance(ev, EventDict)
    share(ev, kind, None)
    return ev


def test_a_pods_labels_change_is_a_new_fragment() -> None:
    e1 = _ev_with(POD_CTX, pod_name="web", pod_labels={"app": "web", "tier": "v1"}, pod_ips=["10.0.0.1"])
    assert J.line(e1) == json_line(e1) and b'"tier":"v1"' in J.line(e1)
    pod1 = e1.ctx[0]
    assert pod1.memo is not None and "jsonl" in pod1.memo
    e2 = new_event(Kind.PROCESS, "exit", pid=9, pod_name="web", pod_labels={"app": "web", "tier": "v2"}, pod_ips=["10.0.0.1"])
    pod2 = share(e2, POD_CTX, pod1)
    assert pod2 is not pod1
    assert J.line(e2) == json_line(e2) and b'"tier":"v2"' in J.line(e2)


def test_an_event_value_that_is_not_the_entitys_object_is_rendered_from_the_event() -> None:
    """The fragment is the entity's; an event given another value after the entity was attached
    (a contract breach, or a stage that changed it) shows its own value, never the fragment."""
    ev = _ev_with(POD_CTX, pod_name="web", pod_labels={"tier": "v1"})
    assert b'"tier":"v1"' in J.line(ev)
    ev["pod_labels"] = {"tier": "v9"}  # equal names, another object
    assert J.line(ev) == json_line(ev) and b'"tier":"v9"' in J.line(ev)


def test_a_process_that_execs_again_and_a_container_that_is_gone() -> None:
    anc1 = [{"pid": 1, "path": "/sbin/init", "cmdline": "init"}]
    e1 = _ev_with(PROCESS_CTX, process_key="5:1", path="/bin/sh", cmdline="sh", ancestors=anc1)
    e1["container_id"], e1["pod_uid"] = "c" * 64, "u1"
    share(e1, CONTAINER_CTX, None)
    assert len(e1.ctx) == 2 and J.line(e1) == json_line(e1) and J.line(e1) == J.line(e1)
    # the process execs: a new entity with the new image and the ancestry below it
    anc2 = [{"pid": 1, "path": "/sbin/init", "cmdline": "init"}, {"pid": 5, "path": "/bin/sh", "cmdline": "sh"}]
    e2 = _ev_with(PROCESS_CTX, process_key="5:2", path="/usr/bin/curl", cmdline="curl x", ancestors=anc2)
    assert J.line(e2) == json_line(e2) and b'"/usr/bin/curl"' in J.line(e2) and b'"pid":5' in J.line(e2)
    # the container is gone: the next event has no container entity and no container fields
    e3 = _ev_with(PROCESS_CTX, process_key="5:1", path="/bin/sh", cmdline="sh", ancestors=anc1)
    assert J.line(e3) == json_line(e3) and b"container_id" not in J.line(e3) and b"pod_uid" not in J.line(e3)


def test_a_shared_list_freed_and_its_address_reused_is_not_mistaken() -> None:
    """The identity caches hold the objects they describe, so an address is never reused
    while its text is kept: many short-lived entity lists in a row stay exact."""
    for i in range(3000):
        ev = _ev_with(PROCESS_CTX, process_key=f"{i}:1", ancestors=[{"pid": i, "cmdline": f"sh -c {i}"}])
        assert J.line(ev) == json_line(ev)
        del ev
        if i % 500 == 0:
            gc.collect()


# -- the buffer ------------------------------------------------------------------------------

def test_lines_buffer_writes_drops_what_was_written_and_takes_the_rest() -> None:
    r, w = os.pipe()
    try:
        lines = J.Lines()
        assert lines.write(w) == 0 and len(lines) == 0
        lines.extend(b"a\n")
        assert lines.add(new_event(Kind.PROCESS, "exit", pid=1)) is True
        n = len(lines)
        assert lines.write(w) == n and len(lines) == 0
        data = os.read(r, 1 << 16)
        assert data.startswith(b"a\n{") and data.endswith(b"}\n")
        lines.extend(b"x" * 10)
        assert lines.take() == b"x" * 10 and len(lines) == 0
        os.set_blocking(w, False)
        lines.extend(b"y" * (1 << 20))  # more than the pipe holds
        with pytest.raises(BlockingIOError):
            while True:
                lines.write(w)
        assert 0 < len(lines) < 1 << 20
        lines.clear()
        assert len(lines) == 0
    finally:
        os.close(r)
        os.close(w)
    bad = J.Lines()
    bad.extend(b"z")
    with pytest.raises(OSError):
        bad.write(-1)
    assert len(bad) == 1  # nothing written, nothing dropped


def test_a_declined_event_goes_out_as_the_reference_line_in_order(tmp_path: Path) -> None:
    evs = [new_event(Kind.PROCESS, "exec", pid=i, comm="\udcff" if i == 1 else "ok", exit_code=2**70 if i == 2 else 0)
           for i in range(4)]
    out = _sink_bytes(evs, True, tmp_path)
    assert out == b"".join(json_line(e) + b"\n" for e in evs) == _sink_bytes(evs, False, tmp_path)
