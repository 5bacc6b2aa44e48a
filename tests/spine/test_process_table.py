"""The process table: ancestry by object links, so pid reuse cannot mix two processes."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_relative_exec_path_resolved_against_cwd(tmp_path: Path) -> None:
    """``cd /tmp && ./x``: the kernel reports the path as given; the stage makes it absolute from the
    process's working directory (a real child process, so /proc/<pid>/cwd is real)."""
    import subprocess

    from podtrail.model.event import new_event
    from podtrail.model.fields import Kind
    from podtrail.procs.stage import ProcessStage

    child = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    try:
        table = ProcessTable(30.0)
        stage = ProcessStage(table)
        out: list[dict] = []
        for rel, want in (("./sleep", f"{tmp_path}/sleep"), ("../bin/../x/y", f"{tmp_path.parent}/x/y"), ("/bin/sleep", "/bin/sleep")):
            ev = new_event(Kind.PROCESS, "exec", pid=child.pid, path=rel, cmdline=rel, comm="sleep", uid=0, result=0)
            stage.process(ev, out.append)
            assert out[-1]["path"] == want and out[-1]["cwd"] == str(tmp_path)
            assert table.get(child.pid).path == want  # type: ignore[union-attr]
    finally:
        child.kill()
        child.wait()
