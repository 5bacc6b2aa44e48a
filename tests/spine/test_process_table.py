"""The process table: ancestry by object links, so pid reuse cannot mix two processes."""

from __future__ import annotations

import os

from podtrail.procs.table import ProcessTable


def test_pid_reuse_does_not_splice_ancestry() -> None:
    t = ProcessTable(exit_grace_s=0)
    t.on_fork(os.getpid(), 900001, 1, 0)
    t.on_exec(900001, "/bin/sh", "sh", "sh", 0, 0, 2)
    t.on_fork(900001, 900002, 3, 0)
    t.on_exec(900002, "/bin/child", "child", "child", 0, 0, 4)
    child = t.by_pid[900002]
    t.on_exit(900001, 10.0)
    t.reap(11.0)  # the parent is gone; pid 900001 is then reused by an unrelated process
    t.on_fork(1, 900001, 20, 0)
    t.on_exec(900001, "/usr/bin/impostor", "impostor", "impostor", 0, 0, 21)
    assert child.parent is not None and child.parent.path == "/bin/sh"
    assert child.parent.key != t.by_pid[900001].key


def test_ancestors_nearest_first_and_bounded() -> None:
    t = ProcessTable()
    prev = os.getpid()
    for i in range(10):
        pid = 910000 + i
        t.on_fork(prev, pid, i, 0)
        t.on_exec(pid, f"/bin/p{i}", f"p{i}", f"p{i}", 0, 0, i)
        prev = pid
    leaf = t.by_pid[prev]
    anc = t.ancestors(leaf)
    assert [a.path for a in anc] == ["/bin/p7", "/bin/p6", "/bin/p5", "/bin/p4", "/bin/p3"]


def test_seed_reads_live_processes() -> None:
    t = ProcessTable()
    assert t.seed() > 1
    me = t.by_pid[os.getpid()]
    assert me.path and me.parent is not None and me.parent.pid == os.getppid()


def test_exited_entries_removed_after_grace() -> None:
    t = ProcessTable(exit_grace_s=5)
    t.on_fork(os.getpid(), 920001, 1, 0)
    t.on_exit(920001, 100.0)
    t.reap(104.0)
    assert 920001 in t.by_pid
    t.reap(105.0)
    assert 920001 not in t.by_pid


def test_exited_entries_beyond_the_cap_go_oldest_first_and_are_counted() -> None:
    from podtrail import metrics

    before = metrics.EXITED_EVICTED._value.get()
    t = ProcessTable(exit_grace_s=30, max_exited=3)
    pids = list(range(930001, 930006))
    for i, pid in enumerate(pids):
        t.on_fork(os.getpid(), pid, 1, 0)
        t.on_exit(pid, 100.0 + i)
    t.on_fork(os.getpid(), 930099, 1, 0)  # alive: never forgotten for the cap
    assert t.reap(106.0) == 2  # within the grace period, but five exited: the two oldest go
    assert [p for p in pids if p in t.by_pid] == pids[2:] and 930099 in t.by_pid
    assert metrics.EXITED_EVICTED._value.get() - before == 2
    assert t.reap(106.5) == 0  # at the cap: nothing more


def test_relative_exec_path_resolved_against_the_sensors_cwd() -> None:
    """``cd /tmp && ./x``: the kernel reports the path as given; the stage makes it absolute from the
    working directory the sensor reported with the exec (never /proc's, which for a container
    process is a host path)."""
    from podtrail.model.event import new_event
    from podtrail.model.fields import Kind
    from podtrail.procs.stage import ProcessStage

    stage = ProcessStage(ProcessTable(30.0))
    out: list[dict] = []
    pid = os.getpid()
    for rel, cwd, want in (("./tool", "/tmp", "/tmp/tool"), ("../bin/../x/y", "/srv/app", "/srv/x/y"),
                           ("/bin/sleep", "/tmp", "/bin/sleep"), ("./tool", None, "./tool")):
        ev = new_event(Kind.PROCESS, "exec", pid=pid, path=rel, cmdline=rel, comm="t", uid=0, result=0)
        if cwd:
            ev["cwd"] = cwd
        stage.process(ev, out.append)
        assert out[-1]["path"] == want, (rel, cwd)
        assert stage.table.get(pid).path == want  # type: ignore[union-attr]


def _stage_events(stage: object, evs: list[dict]) -> list[dict]:
    out: list[dict] = []
    for ev in evs:
        stage.process(ev, out.append)  # type: ignore[attr-defined]
    return out


def test_ancestry_follows_an_ancestors_exec() -> None:
    """Siblings share their ancestry list until an ancestor execs; the next exec then shows the
    ancestor's new image (pids above pid_max: nothing is read from /proc)."""
    from podtrail.model.event import new_event
    from podtrail.model.fields import Kind
    from podtrail.procs.stage import ProcessStage
    from podtrail.procs.table import Proc

    t = ProcessTable(30.0, proc_fallback=False)
    t.by_pid[1] = Proc(1, 1, None, 0, "/sbin/init", "/sbin/init", "init")
    st = ProcessStage(t)
    a, b = 4_000_001, 4_000_002

    def exec_(pid: int, ppid: int, path: str, start: int) -> dict:
        ev = new_event(Kind.PROCESS, "exec", pid=pid, ppid=ppid, uid=0, path=path, cmdline=path, start_ns=start,
                       mono_ns=start, source="ebpf", cwd="/")
        return _stage_events(st, [ev])[0]

    exec_(a, 1, "/bin/a1", 10)
    exec_(b, a, "/bin/b", 11)
    c1, c2 = exec_(4_000_003, b, "/bin/c", 12), exec_(4_000_004, b, "/bin/c", 13)
    assert [x["path"] for x in c1["ancestors"]] == ["/bin/a1", "/sbin/init"]
    assert c1["ancestors"] is c2["ancestors"]
    exec_(a, 1, "/bin/a2", 10)  # the grandparent runs a new program
    c3 = exec_(4_000_005, b, "/bin/c", 14)
    assert [x["path"] for x in c3["ancestors"]] == ["/bin/a2", "/sbin/init"]
    assert [x["path"] for x in c1["ancestors"]] == ["/bin/a1", "/sbin/init"]  # as of its own exec


def test_short_path_of_later_events_gives_the_full_paths_result() -> None:
    """A process's socket events and exit, through the stage with and without its short path:
    the same fields and the same context values, also when the parent execs or the uid changes."""
    from podtrail.model.context import covered
    from podtrail.model.event import new_event
    from podtrail.model.fields import Kind
    from podtrail.procs.stage import ProcessStage
    from podtrail.procs.table import Proc

    def run(short: bool) -> list[dict]:
        t = ProcessTable(30.0, proc_fallback=False)
        t.by_pid[1] = Proc(1, 1, None, 0, "/sbin/init", "/sbin/init", "init")
        st = ProcessStage(t)
        st.users.name = lambda uid, *a, **k: {0: "root", 1000: "app"}.get(uid, "")  # type: ignore[method-assign]
        if not short:
            st._again = lambda ev, p: False  # type: ignore[method-assign]
        p, c = 4_100_001, 4_100_002
        evs = [new_event(Kind.PROCESS, "exec", pid=p, ppid=1, uid=0, path="/bin/sh", cmdline="sh", start_ns=1, mono_ns=1,
                         source="ebpf", cwd="/"),
               new_event(Kind.PROCESS, "exec", pid=c, ppid=p, uid=0, path="/bin/curl", cmdline="curl x", start_ns=2,
                         mono_ns=2, source="ebpf", cwd="/tmp")]
        sock = {"pid": c, "remote_address": "10.0.0.1", "remote_port": 443, "source": "ebpf"}
        evs += [new_event(Kind.SOCKET, "connect", uid=0, **sock) for _ in range(3)]
        evs += [new_event(Kind.SOCKET, "connect", uid=1000, **sock) for _ in range(2)]
        evs.append(new_event(Kind.PROCESS, "exec", pid=p, ppid=1, uid=0, path="/bin/bash", cmdline="bash", start_ns=1,
                             mono_ns=3, source="ebpf", cwd="/"))
        evs += [new_event(Kind.SOCKET, "connect", uid=0, **sock) for _ in range(2)]
        evs.append(new_event(Kind.PROCESS, "exit", pid=c, ppid=p, uid=0, source="ebpf", start_ns=2, mono_ns=4))
        out = _stage_events(st, evs)
        for ev in out:
            ev.pop("event_id"), ev.pop("time"), ev.pop("time_ns")
        return [{**ev, "_ctx": [e.values for e in covered(ev)[0]]} for ev in out]

    short, full = run(True), run(False)
    assert short == full
    assert [e.get("parent_path") for e in short if e["action"] == "connect"][-1] == "/bin/bash"
    assert [e.get("user") for e in short if e["action"] == "connect"][3] == "app"
