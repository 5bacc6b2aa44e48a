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
