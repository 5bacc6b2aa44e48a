"""The pipeline's whole chain in one C call (``_pipeline.Chain``) against the Python chain it
stands for (``Pipeline._outs``, the reference): the same JSON lines, table records, alerts in
the same order, event and drop counters and rule statistics, on real kernel samples through
the agent's real stages (process table, container, Kubernetes, Sigma detection) and sinks
(stdout JSON lines, the osquery event buffers), including every way off the C path: an event
the process stage holds, a cgroup no container stage knows yet, a rule that fires, a detector
and a stage that raise, a line the C line maker declines, a Python stage in the chain."""

from __future__ import annotations

import itertools
import os
import pickle
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail import metrics, pipeline
from podtrail.model import event as event_mod
from podtrail.model.context import EventDict
from podtrail.model.fields import Kind

C = pipeline._native
pytestmark = pytest.mark.skipif(C is None and os.environ.get("CI") != "true", reason="_pipeline not built")
REAL_SAMPLES = Path("/work/wt/prof/samples.pkl")  # real kernel samples where this machine has them
MARK = "fastchain-marker"  # in the command line of the execs the test's rule fires on


def _samples(n: int) -> list[Any]:
    """Real ring-buffer samples (exec and exit) where recorded, else bench/delivery's made ones,
    decoded once (each run gets copies: the same ids and times)."""
    from podtrail.bpf.process import ProcessDecoder

    if REAL_SAMPLES.exists():
        raw = list(pickle.loads(REAL_SAMPLES.read_bytes())[:n])
    else:
        from bench.delivery import _samples as made

        raw = made(n // 2)
    dec = ProcessDecoder()
    return [e for e in map(dec.decode, raw) if e is not None]


def _rule() -> tuple[str, str]:
    doc = {"title": "fast chain marker", "id": "00000000-0000-4000-8000-00000000fc01", "name": "fast_chain_marker",
           "status": "test", "logsource": {"category": "process_creation", "product": "linux"}, "level": "high",
           "detection": {"sel": {"CommandLine|contains": MARK}, "condition": "sel"}}
    return "fast_chain_marker.yml", yaml.safe_dump(doc)


class _Flaky:
    """A detector with a bug: raises on every 7th event it sees."""

    def __init__(self) -> None:
        self.n = 0

    def process(self, ev: Any) -> list[Any]:
        self.n += 1
        if self.n % 7 == 0:
            raise RuntimeError("detector bug")
        return []

    def tick(self, now: float) -> list[Any]:
        return []


class _Tag:
    """A plain Python stage (as baselines or an extra stage would be): the chain stops before it."""

    def process(self, ev: Any, out: Callable[[Any], None]) -> None:
        ev.setdefault("message", "tagged")
        out(ev)

    def tick(self, now: float, out: Callable[[Any], None]) -> None:
        return None


def _dropped() -> dict[tuple[str, str], float]:
    out = {}
    for fam in metrics.REGISTRY.collect():
        for s in fam.samples:
            if s.name == "podtrail_dropped_events_total":
                out[(s.labels["stage"], s.labels["reason"])] = s.value
    return out


def _run(samples: list[Any], fast: bool, tmp: Path, *, extra: Any = None, odd: bool = True) -> dict[str, Any]:
    """The samples through fresh real stages and sinks, by the C chain or the Python chain."""
    from podtrail.config import KubernetesConfig
    from podtrail.detect.engine import Engine
    from podtrail.detect.ruleset import load_texts, rule_texts
    from podtrail.detect.stage import DetectStage, SigmaDetector
    from podtrail.enrich.cgroup_index import CgroupIndex
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s import build_k8s_stage
    from podtrail.outputs.stdout import StdoutSink
    from podtrail.procs.stage import ProcessStage
    from podtrail.procs.table import Proc, ProcessTable
    from podtrail.tables.buffer import EventBuffers

    table = ProcessTable()
    table.seed()
    me = table.get(os.getpid())
    evs = [EventDict({k: list(v) if type(v) is list else v for k, v in e.items()}) for e in samples]
    for e in evs:
        if e.get("ppid") and e["ppid"] not in table.by_pid:
            table.by_pid[e["ppid"]] = Proc(e["ppid"], 1, me, os.getpid(), sys.executable, f"{sys.executable} -m pytest",
                                           "python", "/")
    texts, outputs = rule_texts([], shipped=True)
    engine = Engine(load_texts([*texts, _rule()], outputs=outputs))
    index = CgroupIndex()
    procs, cont = ProcessStage(table), ContainerStage(index)
    k8s, stop, _ = build_k8s_stage(KubernetesConfig(), "node-1")
    detect = DetectStage([SigmaDetector(engine), *([_Flaky()] if odd else [])])
    out = tmp / ("fast.jsonl" if fast else "python.jsonl")
    f = open(out, "w")  # noqa: SIM115 - closed at the end below
    sink = StdoutSink(f, linger_s=0)
    buffers = EventBuffers(100000, 1e9)
    stages = [procs, cont, k8s, *([extra] if extra is not None else []), detect]
    p = pipeline.Pipeline(stages, [sink, buffers])
    assert p._fast is not None
    first = p._fast if fast else p._outs[0]
    bad_cg = 987654321
    if odd:  # every way off the C path, the same in both runs
        known = index.known

        def known_or_bug(cg: Any) -> Any:
            if cg == bad_cg:
                raise RuntimeError("stage bug")
            return known(cg)

        index.known = known_or_bug  # the container stage's C step calls it: a stage that raises
        for i, e in enumerate(evs):
            if e["action"] == "exec" and i % 97 == 5:
                e["cmdline"] += " " + MARK  # a rule fires
            if i % 211 == 17:
                e["cgroup_id"] = 4242 + i  # a cgroup the index does not know: the container stage's Python
            if i % 401 == 33:
                e["cgroup_id"] = bad_cg
            if i % 307 == 11:
                e["exit_code"] = 2**70  # beyond 64 bits: the C line maker declines, the sink's Python writes it
        held = []
        for i in range(0, len(evs), 500):  # a socket event of a process the table does not know (held), and one it does
            held.append((i, {"event_type": "socket", "action": "connect", "pid": 999999 - i, "source": "ebpf", "uid": 0,
                             "remote_address": "127.0.0.1", "remote_port": 9, "cgroup_id": 1}))
        for i, h in reversed(held):
            from podtrail.model.event import new_event

            evs.insert(i + 1, new_event(Kind.SOCKET, "connect", time_ns=evs[i]["time_ns"], event_id=f"held-{i}",
                                        **{k: v for k, v in h.items() if k not in ("event_type", "action")}))
    counts0, dropped0 = dict(metrics._event_counts), _dropped()
    seq, event_mod._SEQ = event_mod._SEQ, itertools.count(1 << 40)  # the same alert ids in both runs
    stats0 = [(s.evaluated, s.matched, s.alerts) for s in engine.sig_stats]
    frames: Counter[str] = Counter()  # Python functions called while the events went through

    def note(frame: Any, what: str, arg: Any) -> None:
        if what == "call":
            frames[frame.f_code.co_qualname] += 1

    try:
        for i in range(0, len(evs), 64):
            sys.setprofile(note)
            p._run_batch(first, evs[i:i + 64])
            sys.setprofile(None)
            p._end_batch()
        p._tick(float("inf"))
        p._end_batch()
        p.close()
    finally:
        sys.setprofile(None)
        event_mod._SEQ = seq
        stop()
        f.close()
    counts = {k: n - counts0.get(k, 0) for k, n in metrics._event_counts.items() if n != counts0.get(k, 0)}
    dropped = {k: n - dropped0.get(k, 0) for k, n in _dropped().items() if n != dropped0.get(k, 0)}
    stats = [(s.evaluated, s.matched, s.alerts) for s in engine.sig_stats]
    records = {k.value: buffers.events(k) for k in (Kind.PROCESS, Kind.SOCKET, Kind.ALERT)}
    return {"lines": out.read_bytes(), "records": records, "counts": counts, "dropped": dropped,
            "stats": [(a - b[0], m - b[1], al - b[2]) for (a, m, al), b in zip(stats, stats0, strict=True)],
            "frames": frames, "events": len(evs)}


def test_the_accelerator_is_built_under_ci() -> None:
    assert C is not None and hasattr(C, "Chain"), "podtrail._pipeline is not built: make native"


@pytest.mark.parametrize("odd", [False, True], ids=["common", "every-way-off"])
def test_real_samples_give_the_same_output_by_either_chain(odd: bool, tmp_path: Path) -> None:
    samples = _samples(4000)
    ref = _run(samples, False, tmp_path, odd=odd)
    got = _run(samples, True, tmp_path, odd=odd)
    lines = ref["lines"].splitlines()
    assert len(lines) >= len(samples) * 0.9
    assert got["lines"] == ref["lines"]
    assert got["records"] == ref["records"]
    assert got["counts"] == ref["counts"] and got["dropped"] == ref["dropped"] and got["stats"] == ref["stats"]
    n, py, c = ref["events"], ref["frames"], got["frames"]
    stage_frames = ("ProcessStage.process", "ContainerStage.process", "K8sStage.process", "DetectStage.process",
                    "StdoutSink.submit", "EventBuffers.submit", "Engine.process")
    assert all(py[f] >= n * 0.9 for f in stage_frames[:-1])  # the reference runs each per event
    if not odd:  # the common event: none of them in Python (the execs' generated scan still is)
        # a few are not common (the first exec of a parent, the first exit; how many depends on
        # the host's live pids and cgroups): at most 1 %, where the Python chain runs each per event
        assert all(c[f] <= max(2, n // 100) for f in stage_frames), c
        assert sum(c.values()) <= n // 2 + n // 10, c.most_common(8)  # the scan per exec, and the few above
    else:  # only the events off the C path
        assert 0 < c["ProcessStage.process"] < n // 10 and c["StdoutSink.submit"] < n // 10
    if odd:
        assert b'"exit_code":1180591620717411303424' in ref["lines"]
        assert ref["dropped"][("detect", "detector_error")] > 0
        assert ref["dropped"][("ebpf", "processing_error")] > 0
        alerts = [x for x in lines if b'"event_type":"alert"' in x]
        assert alerts and len(ref["records"]["alert"]) == len(alerts)
        assert any(b'"pid":999999' in x for x in lines)  # the held socket event, released
        # every alert right after its trigger
        for i, x in enumerate(lines):
            if b"fast chain marker" in x:
                assert MARK.encode() in lines[i - 1] and b'"action":"exec"' in lines[i - 1]
    else:
        assert not ref["dropped"]


def test_a_python_stage_in_the_chain_keeps_the_rest_in_python(tmp_path: Path) -> None:
    samples = _samples(1200)
    ref = _run(samples, False, tmp_path, extra=_Tag())
    got = _run(samples, True, tmp_path, extra=_Tag())
    py, c = ref.pop("frames"), got.pop("frames")
    assert got == ref and b'"message":"tagged"' in ref["lines"]
    n = ref["events"]
    assert c["_Tag.process"] == py["_Tag.process"] >= n * 0.9 and c["DetectStage.process"] >= n * 0.9
    assert c["ProcessStage.process"] < n // 10 <= py["ProcessStage.process"]  # the stages before it: C


def test_no_chain_without_the_accelerator_or_a_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from podtrail.procs.stage import ProcessStage
    from podtrail.procs.table import ProcessTable

    assert pipeline.Pipeline([_Tag(), ProcessStage(ProcessTable())], [])._fast is None
    monkeypatch.setattr(pipeline, "_native", None)
    assert pipeline.Pipeline([ProcessStage(ProcessTable())], [])._fast is None


# -- hostile streams ------------------------------------------------------------------------

_RULES: list[Any] = []


def _rules() -> Any:
    if not _RULES:
        from podtrail.detect.ruleset import load_texts

        _RULES.append(load_texts([_rule()]))
    return _RULES[0]


def _stream_through(evs: list[Any], fast: bool, tmp: Path) -> dict[str, Any]:
    """``evs`` through fresh real stages (a table that knows the samples' parent, no /proc
    fallback; the host's cgroups; no Kubernetes API; the marker rule) and the real sinks."""
    from bench.stage_chain import parents_table
    from podtrail.config import KubernetesConfig
    from podtrail.detect.engine import Engine
    from podtrail.detect.stage import DetectStage, SigmaDetector
    from podtrail.enrich.cgroup_index import CgroupIndex
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s import build_k8s_stage
    from podtrail.outputs.stdout import StdoutSink
    from podtrail.procs.stage import ProcessStage
    from podtrail.tables.buffer import EventBuffers

    table = parents_table(evs)
    k8s, stop, _ = build_k8s_stage(KubernetesConfig(), "node-1")
    out = tmp / ("fast.jsonl" if fast else "python.jsonl")
    f = open(out, "w")  # noqa: SIM115 - closed at the end below
    buffers = EventBuffers(100000, 1e9)
    engine = Engine(_rules())
    p = pipeline.Pipeline([ProcessStage(table), ContainerStage(CgroupIndex()), k8s, DetectStage([SigmaDetector(engine)])],
                          [StdoutSink(f, linger_s=0), buffers])
    assert p._fast is not None
    counts0, dropped0 = dict(metrics._event_counts), _dropped()
    seq, event_mod._SEQ = event_mod._SEQ, itertools.count(1 << 40)
    try:
        p._run_batch(p._fast if fast else p._outs[0], evs)
        try:
            p._tick(float("inf"))  # the held events, by the Python chain (both ways)
            tick_error = ""
        except Exception as e:  # noqa: BLE001 - compared: a held event's error escapes the tick either way
            tick_error = repr(e)
        p._end_batch()
        p.close()
    finally:
        event_mod._SEQ = seq
        stop()
        f.close()
    return {"lines": out.read_bytes(), "records": {k.value: buffers.events(k) for k in Kind if k.value in buffers._q},
            "counts": {k: n - counts0.get(k, 0) for k, n in metrics._event_counts.items() if n != counts0.get(k, 0)},
            "dropped": {k: n - dropped0.get(k, 0) for k, n in _dropped().items() if n != dropped0.get(k, 0)},
            "stats": [(s.evaluated, s.matched, s.alerts) for s in engine.sig_stats], "events": [dict(e) for e in evs],
            "tick_error": tick_error}


_TEMPLATES: list[Any] = []
_odd = st.sampled_from([None, "", "0", -1, 0, 1, 2**64, 2**70, 1.5, True, "\udcff", ["x"], ("t",)])
_FIELDS = {"pid": _odd, "ppid": _odd, "event_type": st.sampled_from(["process", "socket", "file", "alert", "x"]) | _odd,
           "action": st.sampled_from(["exec", "exit", "fork", "connect", "open"]) | _odd,
           "cgroup_id": st.sampled_from([1, 4242]) | _odd, "container_id": st.sampled_from(["ab" * 32, ""]) | _odd,
           "cmdline": st.sampled_from([f"/bin/sh -c {MARK}", "x"]) | _odd, "result": st.sampled_from([-2, 0]) | _odd,
           "node_name": st.just("other") | _odd, "cwd": st.sampled_from(["/", "rel"]) | _odd, "uid": _odd,
           "user": _odd, "severity": _odd, "outcome": _odd, "target_path": st.just("/etc/shadow") | _odd,
           "mnt_ns": _odd, "start_ns": _odd, "stdin": _odd, "source": st.sampled_from(["auditd", ""]), "ancestors": _odd}


@st.composite
def _streams(draw: Any) -> list[Any]:
    if not _TEMPLATES:
        _TEMPLATES.extend(_samples(200))
    out = []
    for _ in range(draw(st.integers(1, 24))):
        e = EventDict({k: list(v) if type(v) is list else v for k, v in draw(st.sampled_from(_TEMPLATES)).items()})
        if draw(st.booleans()):  # most events as the kernel sent them; the others changed
            for name in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=3)):
                if draw(st.booleans()):
                    e[name] = draw(_FIELDS[name])
                else:
                    e.pop(name, None)
        out.append(e)
    return out


@settings(max_examples=200, deadline=None)
@given(_streams())
def test_hostile_streams_give_the_same_output_by_either_chain(evs: list[Any]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        ref = _stream_through([EventDict({k: list(v) if type(v) is list else v for k, v in e.items()}) for e in evs],
                              False, Path(d))
        got = _stream_through(evs, True, Path(d))
    assert got == ref


# -- the Chain object itself ------------------------------------------------------------------

def _step(ok: bool, seen: list[Any], tag: str) -> Callable[..., bool]:
    def fn(head: Any, ev: Any, *tail: Any) -> bool:
        seen.append((tag, head, tail))
        if ok:
            ev.setdefault("path_of", []).append(tag)
        return ok
    return fn


def test_a_decline_hands_the_event_to_the_python_chain_from_that_stage() -> None:
    assert C is not None
    seen: list[Any] = []
    outs = [lambda ev, i=i: seen.append(("py", i, ev.get("n"))) for i in range(3)]  # type: ignore[misc]
    got: list[Any] = []
    chain = C.Chain([("step", _step(True, seen, "a"), "A", (1, 2)), ("step", _step(False, seen, "b"), "B", ())], outs,
                    [("plain", got.append)], False)
    chain(EventDict(n=1))
    assert seen == [("a", "A", (1, 2)), ("b", "B", ()), ("py", 1, 1)] and not got  # stage b's own process, then Python
    seen.clear()

    class Mapping(dict):  # type: ignore[type-arg]
        pass

    chain(Mapping(n=2))  # not a dict or an EventDict: the Python chain from the start
    assert seen == [("py", 0, 2)]


def test_a_detector_that_raises_is_handed_over_but_not_a_base_exception() -> None:
    assert C is not None
    failed: list[Any] = []

    class Bad:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def process(self, ev: Any) -> list[Any]:
            raise self.exc

    class Stage:
        detectors = [Bad(ValueError("x")), Bad(KeyboardInterrupt())]

    got: list[Any] = []
    chain = C.Chain([("detect", object(), Stage(), lambda d, e: failed.append((type(d).__name__, repr(e))))],
                    [got.append, got.append], [("plain", got.append)], True)
    ev = EventDict(event_type="process", action="exec", source="t")
    with pytest.raises(KeyboardInterrupt):
        chain(ev)
    assert failed == [("Bad", "ValueError('x')")] and got == [ev] and ev["severity"] == 3


@pytest.mark.parametrize("args", [
    ([], [print], None, False),  # no step
    ([("step", print, None, ())], [print], None, False),  # outs one short
    ([("other", print, None, ())], [print, print], None, False),
    ([("step", print, None, (1, 2, 3, 4, 5))], [print, print], None, False),
    ([("step", 1, None, ())], [print, print], None, False),
    ([("step", print, None, ())], [print, print], [("nosuch", print)], False),
    ([("step", print, None, ())], [print, print], [("queue", [], "x", print)], False),
    ([("step", print)], [print, print], None, False),
])
def test_a_bad_spec_is_refused_at_once(args: tuple[Any, ...]) -> None:
    assert C is not None
    with pytest.raises((TypeError, ValueError)):
        C.Chain(*args)
