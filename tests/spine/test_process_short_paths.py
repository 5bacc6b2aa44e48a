"""The process stage's short paths (an eBPF exec, a process's later events and its exit) give
exactly the general path's result: the same fields in the same order and the same context
entity values, on random streams that mix what the paths must tell apart (fork-folded and
failed execs, re-exec, a parent's or ancestor's exec, uid and cwd changes, runtime setup,
no mount namespace or cwd, unnamed uids, relative and hostile paths, the exit of an unknown
pid, pid reuse). The C twin of the short paths (podtrail/procs/_short.c) gives the same results
again, on the same streams. Pids are above pid_max: nothing is read from /proc."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail.model.context import consistent, covered
from podtrail.model.event import new_event
from podtrail.model.fields import Kind
from podtrail.procs import stage as stage_mod
from podtrail.procs.stage import ProcessStage
from podtrail.procs.table import Proc, ProcessTable

NS_A, NS_B, NS_C = 4026530001, 4026530002, 4026530003  # C: its root is readable from the second process on
PIDS = [4_300_000 + i for i in range(6)]
LONG = "java " + " ".join(f"-Dopt{i}=value{i}" for i in range(80))  # longer than an ancestor keeps
IMAGES = [("/bin/sh", "sh -c 'curl x'"), ("/usr/bin/curl", "curl -s https://api/x"), ("/usr/bin/curl", "curl other"),
          ("/tmp/x\nCEF:0|evil|", "x|y=z\\w\r\n"), ("./tool", "./tool a"), ("/usr/bin/java", LONG), ("", "")]
CWDS = [None, "", "/", "/tmp", "/srv/app"]
NAMES = {(NS_A, 0): "root", (NS_A, 1000): "app", (NS_B, 0): "root", (NS_B, 1000): "web", (None, 0): "root"}


class Users:
    """UserNames' interface with fixed answers (uid 4242 has no name anywhere)."""

    def __init__(self) -> None:
        self.asked_c = 0

    def name(self, uid: int, pid: int, cgroup_id: int, mnt_ns: int | None = None, setup: bool = False) -> str:
        if mnt_ns == NS_C:
            self.asked_c += 1
            return "late" if self.asked_c > 1 and uid == 1000 else ""
        return "" if setup and uid else NAMES.get((mnt_ns, uid), "")

    def note(self, pid: int, mnt_ns: int) -> None:
        pass


# Mostly what the short paths take (so that they are taken often), with every exception mixed in.
CWD = st.sampled_from(["/srv/app"] * 6 + CWDS)
PID = st.sampled_from([0] * 4 + [1] * 2 + list(range(6)))
ANY_PID = st.sampled_from([0] * 4 + [1] * 2 + list(range(9)))  # 6: never seen; 7, 8: the seeded parents
HOW = st.sampled_from(["folded"] * 6 + ["plain"] * 3 + ["failed", "failed-folded", "setup", "auditd", "no-argv"])
EXEC = st.tuples(st.just("exec"), PID, st.sampled_from([-1] * 4 + list(range(-3, 6))),
                 st.sampled_from([1] * 4 + list(range(len(IMAGES)))), CWD, st.sampled_from([NS_A] * 4 + [NS_B, NS_C, None]),
                 st.sampled_from([1000] * 4 + [0, 4242, None]), HOW)
LATER = st.one_of(
    st.tuples(st.just("exit"), ANY_PID, st.sampled_from([None] * 3 + ["/srv/app"] * 3 + CWDS),
              st.sampled_from([1000] * 4 + [0, None])),
    st.tuples(st.just("sock"), ANY_PID, st.sampled_from([None] * 6 + CWDS), st.sampled_from([1000] * 4 + [0, 4242]),
              st.sampled_from([False] * 4 + [True])),
    st.tuples(st.just("reexec"), st.sampled_from([7, 8]), st.integers(0, len(IMAGES) - 1)),  # a parent's, an ancestor's
    st.tuples(st.just("tick")),
)
# A story: a process execs, then its later events (and others' between them); or one stray op.
op = st.one_of(
    st.tuples(st.just("story"), EXEC, st.lists(st.tuples(st.sampled_from([True] * 3 + [False]), LATER), max_size=5)),
    EXEC, LATER,
    st.tuples(st.just("fork"), PID, st.integers(-3, 5), st.sampled_from(CWDS)),
)


def flat(ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Stories as plain ops: a later op marked True is about the story's own process."""
    out: list[tuple[Any, ...]] = []
    for o in ops:
        if o[0] != "story":
            out.append(o)
            continue
        out.append(o[1])
        for own, later in o[2]:
            out.append((later[0], o[1][1], *later[2:]) if own and later[0] in ("exit", "sock") else later)
    return out


def events(ops: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The ops as events, with start times that follow pid reuse (an exited pid starts anew)."""
    start: dict[int, int] = {3: 3, 2: 2}  # the seeded parents (see run)
    clock = [10]

    def pid_of(i: int) -> int:
        return PIDS[i] if i < len(PIDS) else {6: 4_399_999, 7: 3, 8: 2}[i]  # 6: a pid the table never saw

    def ppid_of(i: int) -> int:
        return {-3: 2, -2: 1, -1: 3}.get(i, PIDS[i] if i >= 0 else 1)

    def start_of(pid: int) -> int:
        if pid not in start:
            clock[0] += 1
            start[pid] = clock[0]
        return start[pid]

    out: list[dict[str, Any]] = []
    for o in flat(ops):
        clock[0] += 1
        if o[0] == "reexec":  # a seeded parent runs a new program (the same process)
            _, i, img = o
            pid = pid_of(i)
            path, cmd = IMAGES[img]
            out.append(new_event(Kind.PROCESS, "exec", pid=pid, ppid=2 if pid == 3 else 1, path=path or "/bin/x",
                                 cmdline=cmd or "x", comm="t", uid=0, cwd="/", mnt_ns=NS_A, source="ebpf", stdin="pipe",
                                 result=0, mono_ns=clock[0], start_ns=start_of(pid)))
        elif o[0] == "exec":
            _, i, pi, img, cwd, ns, uid, how = o
            pid = pid_of(i)
            path, cmd = IMAGES[img]
            f: dict[str, Any] = {"pid": pid, "ppid": ppid_of(pi), "path": path, "comm": "t", "cgroup_id": 7,
                                 "mono_ns": clock[0], "source": "ebpf", "stdin": "pipe"}
            if how != "no-argv":
                f["cmdline"] = cmd
            if cwd is not None:
                f["cwd"] = cwd
            if ns is not None:
                f["mnt_ns"] = ns
            if uid is not None:
                f["uid"] = uid
            f["result"] = -2 if how.startswith("failed") else 0
            if how in ("folded", "failed-folded"):
                f["fork_folded"] = True
            if how == "setup":
                f["runtime_setup"] = True
            if how == "auditd":
                f["source"] = "auditd"
                f.pop("stdin")
            else:
                f["start_ns"] = start_of(pid)
            out.append(new_event(Kind.PROCESS, "exec", **f))
        elif o[0] == "fork":
            _, i, pi, cwd = o
            pid = pid_of(i)
            start.pop(pid, None)  # a fork makes a new process under this pid
            f = {"pid": pid, "ppid": ppid_of(pi), "uid": 0, "source": "ebpf", "mono_ns": clock[0], "start_ns": start_of(pid)}
            if cwd is not None:
                f["cwd"] = cwd
            out.append(new_event(Kind.PROCESS, "fork", **f))
        elif o[0] == "exit":
            _, i, cwd, uid = o
            pid = pid_of(i)
            f = {"pid": pid, "ppid": 1, "source": "ebpf", "mono_ns": clock[0], "start_ns": start_of(pid)}
            if cwd is not None:
                f["cwd"] = cwd
            if uid is not None:
                f["uid"] = uid
            out.append(new_event(Kind.PROCESS, "exit", **f))
            start.pop(pid, None)
        elif o[0] == "sock":
            _, i, cwd, uid, own_path = o
            f = {"pid": pid_of(i), "uid": uid, "source": "ebpf", "mono_ns": clock[0], "remote_address": "10.0.0.1",
                 "remote_port": 443}
            if cwd:
                f["cwd"] = cwd
            if own_path:
                f["path"] = "/proc/self/exe"
            out.append(new_event(Kind.SOCKET, "connect", **f))
        else:
            out.append({"tick": True})
    return out


NATIVE = stage_mod._short
MODES = ["python", "native"] if NATIVE is not None else ["python"]


def run(ops: list[tuple[Any, ...]], short: bool | str, taken: list[bool] | None = None,
        odd: tuple[tuple[int, str, Any], ...] | list[tuple[int, str, Any]] = ()) -> list[Any]:
    """The stream through a fresh stage: ``short`` False, the general path only; True or
    "python", the Python short paths; "native", the C twin in front of them (``taken``
    collects what it answered)."""
    t = ProcessTable(30.0, proc_fallback=True)
    init = t.by_pid[1] = Proc(1, 1, None, 0, "/sbin/init", "/sbin/init splash", "init", "/")
    shell = t.by_pid[2] = Proc(2, 2, init, 1, "/bin/bash", "-bash", "bash", "/root", 0)
    t.by_pid[3] = Proc(3, 3, shell, 2, "/usr/bin/python3", LONG, "python3", "/work", 0)
    stage = ProcessStage(t, Users())  # type: ignore[arg-type]
    if short == "native":
        assert NATIVE is not None
        c = NATIVE.apply

        def noted(s: Any, ev: dict[str, Any]) -> bool:
            r = c(s, ev)
            if taken is not None:
                taken.append(r)
            return r
        stage._c = noted
    else:
        stage._c = None
    if not short:
        stage._exec_short = lambda *a: False  # type: ignore[method-assign]
        stage._again = lambda ev, p: False  # type: ignore[method-assign]
    out: list[dict[str, Any]] = []
    evs = events(ops)
    for i, name, value in odd:  # hostile values put in (the event i modulo their number)
        evs[i % len(evs)][name] = value
    errors: list[Any] = []
    for ev in evs:
        try:
            if "tick" in ev:
                stage.tick(0.0, out.append)
            else:
                stage.process(ev, out.append)
        except Exception as e:  # noqa: BLE001 - compared between the paths (as the pipeline counts them)
            errors.append((type(e), str(e)))
    stage.tick(float("inf"), out.append)
    res: list[Any] = [errors] if errors else []
    for ev in out:
        assert odd or consistent(ev) == []
        items = [(k, v) for k, v in ev.items() if k not in ("event_id", "time", "time_ns")]
        res.append({"items": items, "ctx": [(e.kind.name, list(e.items())) for e in covered(ev)[0]]})
    return res


STORY = ("exec", 0, -1, 1, "/srv/app", NS_A, 1000, "folded")  # a child of pid 3 (python, under bash, init)
PERTURB: dict[str, list[tuple[Any, ...]]] = {
    "nothing": [],
    "parent execs": [("reexec", 7, 0)],
    "ancestor execs": [("reexec", 8, 2)],
    "parent and ancestor exec": [("reexec", 8, 2), ("reexec", 7, 0)],
    "sibling of another image": [("exec", 1, -1, 0, "/", NS_A, 1000, "folded"), ("exit", 1, None, 1000)],
    "sibling in another namespace": [("exec", 1, -1, 1, "/srv/app", NS_B, 1000, "folded")],
    "sibling with an unnamed uid": [("exec", 1, -1, 1, "/srv/app", NS_A, 4242, "folded")],
    "siblings in a root readable later": [("exec", 1, -1, 1, "/srv/app", NS_C, 1000, "folded"),
                                          ("exec", 2, -1, 1, "/srv/app", NS_C, 1000, "folded")],
    "re-exec": [("exec", 0, -1, 2, "/srv/app", NS_A, 1000, "plain")],
    "re-exec failed": [("exec", 0, -1, 2, "/srv/app", NS_A, 1000, "failed")],
    "uid changes": [("sock", 0, None, 0, False)],
    "own cwd": [("sock", 0, "/tmp", 1000, False)],
    "own path": [("sock", 0, None, 1000, True)],
    "tick": [("tick",)],
    "exit, then late events": [("exit", 0, "/srv/app", 1000)],
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("perturb", PERTURB)
@pytest.mark.parametrize("exit_cwd", [None, "/srv/app", "/tmp"])
def test_each_difference_leaves_the_short_path(perturb: str, exit_cwd: str | None, mode: str) -> None:
    """A story (a short-lived child's exec, a socket event, its exit) with one thing changed
    between that a short path must see: the same result as the general path."""
    ops = [STORY, ("sock", 0, None, 1000, False), *PERTURB[perturb], ("sock", 0, None, 1000, False),
           ("exit", 0, exit_cwd, 1000), ("sock", 0, None, 1000, False)]
    assert run(ops, mode) == run(ops, False)


@settings(max_examples=400, deadline=None)
@given(st.lists(op, min_size=1, max_size=60))
def test_short_paths_give_the_general_paths_result(ops: list[tuple[Any, ...]]) -> None:
    general = run(ops, False)
    assert run(ops, True) == general
    if NATIVE is not None:
        assert run(ops, "native") == general


HOSTILE: st.SearchStrategy[Any] = st.sampled_from([None, "", 0, -1, 2**70, -(2**70), 1.5, b"/bin/x", "\udcff/x", "/x\x00y", True, False, [], {},
                           "relative/x", "/" * 600, 10**30])
FIELD = st.sampled_from(["pid", "ppid", "uid", "path", "cmdline", "cwd", "comm", "cgroup_id", "mono_ns", "start_ns",
                         "mnt_ns", "result", "stdin", "user", "runtime_setup", "event_type", "action", "fork_folded",
                         "process_key", "parent_path", "ancestors"])


@pytest.mark.skipif(NATIVE is None, reason="podtrail.procs._short not built (test_native_build fails then)")
@settings(max_examples=300, deadline=None)
@given(st.lists(op, min_size=1, max_size=30), st.lists(st.tuples(st.integers(0, 200), FIELD, HOSTILE), max_size=4))
def test_native_and_python_agree_on_hostile_values(ops: list[tuple[Any, ...]], odd: list[tuple[int, str, Any]]) -> None:
    """Wrong types, huge numbers, bytes, surrogates, relative and overlong paths in any field
    the short paths read: the C twin gives the Python short paths' events (or the same errors)."""
    since_boot = stage_mod.since_boot_ns
    stage_mod.since_boot_ns = lambda wall_ns: 12345  # an auditd exec without mono_ns: its start, not the clock
    try:
        assert run(ops, "native", odd=odd) == run(ops, "python", odd=odd)
    finally:
        stage_mod.since_boot_ns = since_boot


@pytest.mark.skipif(NATIVE is None, reason="podtrail.procs._short not built (test_native_build fails then)")
def test_the_native_short_paths_answer_most_of_a_mixed_stream() -> None:
    """The equivalence above is not vacuous: on the one-change stories one after the other,
    the C twin does the whole job for most events, and leaves the others to Python."""
    ops = [o for i, p in enumerate(PERTURB.values()) for o in
           [(*STORY[:1], i % 6, *STORY[2:]), ("sock", i % 6, None, 1000, False), *p, ("exit", i % 6, None, 1000)]]
    taken: list[bool] = []
    assert run(ops, "native", taken) == run(ops, False)
    assert taken.count(True) > len(taken) // 2 and False in taken


@pytest.mark.parametrize("mode", MODES)
def test_a_short_lived_child_takes_the_short_paths(mode: str) -> None:
    """The workload of the issue (a new child of a parent in the table execs, then exits): both
    events on the short paths (the first sibling's exec on Python's, which makes the parent's
    memo; after it, in native mode, every event on the C twin), siblings sharing the parent's part,
    the exit the exec's entity."""
    ops: list[tuple[Any, ...]] = [("exec", 0, -1, 1, "/srv/app", NS_A, 1000, "folded"), ("exit", 0, "/srv/app", 1000),
                                  ("exec", 1, -1, 1, "/srv/app", NS_A, 1000, "folded"), ("exit", 1, None, 1000)]
    t = ProcessTable(30.0, proc_fallback=False)
    t.by_pid[1] = Proc(1, 1, None, 0, "/sbin/init", "/sbin/init", "init", "/")
    t.by_pid[3] = Proc(3, 3, t.by_pid[1], 1, "/bin/sh", "sh", "sh", "/", 1000)
    stage = ProcessStage(t, Users())  # type: ignore[arg-type]
    taken: list[str] = []
    if mode == "python":
        stage._c = None
    else:
        c = stage._c
        assert c is not None
        stage._c = lambda s, ev: c(s, ev) and not taken.append("c")  # type: ignore[func-returns-value]
    exec_short, again = stage._exec_short, stage._again
    stage._exec_short = lambda *a: exec_short(*a) and not taken.append("exec")  # type: ignore[method-assign,func-returns-value]
    stage._again = lambda ev, p: again(ev, p) and not taken.append("later")  # type: ignore[method-assign,func-returns-value]
    out: list[dict[str, Any]] = []
    for ev in events(ops):
        stage.process(ev, out.append)
    assert taken == (["exec", "later", "exec", "later"] if mode == "python" else ["exec", "c", "c", "c"])
    ents = [covered(ev)[0] for ev in out]
    assert ents[0][0] is ents[1][0] and ents[2][0] is ents[3][0] and ents[0][0] is not ents[2][0]
    assert out[0]["ancestors"] is out[2]["ancestors"] and out[0]["user"] == "app"
    assert out[0]["parent_path"] == "/bin/sh" and out[3]["cwd"] == "/srv/app"


def test_native_off_runs_the_python_paths_and_says_so() -> None:
    """PODTRAIL_NATIVE=0: the three stages run their Python paths (no C twin attached; what
    those paths give is held equal above, in "python" mode), and the agent's list of missing
    accelerators names both modules."""
    import os
    import subprocess
    import sys

    code = """
from podtrail import native
from podtrail.enrich.container import ContainerStage
from podtrail.enrich.cgroup_index import CgroupIndex
from podtrail.enrich.k8s.stage import K8sStage
from podtrail.procs.stage import ProcessStage
from podtrail.procs.table import ProcessTable
assert ProcessStage(ProcessTable())._c is None
assert ContainerStage(CgroupIndex(root="/nonexistent"))._c is None
assert K8sStage(None, None)._c is None
missing = native.missing()
assert "podtrail.procs._short" in missing and "podtrail.enrich._known" in missing, missing
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PODTRAIL_NATIVE": "0"}, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(NATIVE is None, reason="podtrail.procs._short not built (test_native_build fails then)")
@pytest.mark.parametrize("start", [0, 1, -1, 10**18, 2**63 - 1, -(2**63), 2**63, 2**64 + 5])
def test_the_native_key_is_pythons(start: int) -> None:
    """The second sibling's exec is the C twin's (the first made the parent's memo); its key is
    ``f"{pid}:{start_ns}"`` for any start, 64-bit or not."""
    ops = [STORY, ("exit", 0, None, 1000), (*STORY[:1], 1, *STORY[2:]), ("exit", 1, None, 1000)]
    taken: list[bool] = []
    got = run(ops, "native", taken, odd=[(2, "start_ns", start), (3, "start_ns", start)])
    assert got == run(ops, "python", odd=[(2, "start_ns", start), (3, "start_ns", start)])
    assert taken[2] is True and dict(got[2]["items"])["process_key"] == f"{PIDS[1]}:{start}"
