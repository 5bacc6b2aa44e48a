"""An auditd exec takes the facts its records carry (ppid, uid, exe, comm, cwd) instead of
reading /proc for them, and reads /proc only for what is missing; a child gone before it is
read takes its parent's container, read once per parent, while a live process that moved
to another cgroup is answered by its own /proc entry. Real processes, a real cgroup v2
directory; no auditd is needed (the events are shaped as podtrail.audit.mapping makes them)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, require_root

from podtrail.enrich import container as container_mod
from podtrail.enrich.cgroup_index import CgroupIndex
from podtrail.enrich.container import ContainerStage
from podtrail.model.event import Event, new_event
from podtrail.model.fields import Kind
from podtrail.procs.stage import ProcessStage
from podtrail.procs.table import ProcessTable, proc_stat, same_start, since_boot_ns


def _audit_exec(pid: int, ppid: int | None, cwd: str | None, time_ns: int) -> Event:
    ev = new_event(Kind.PROCESS, "exec", time_ns=time_ns, source="auditd", pid=pid, ppid=ppid, uid=0, gid=0,
                   comm="sleep", path="/bin/sleep", argv=["sleep", "30"], cmdline="sleep 30", result=0)
    if cwd is not None:
        ev["cwd"] = cwd
    for k in [k for k, v in ev.items() if v is None]:
        del ev[k]
    return ev


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["/bin/sleep", "30"], cwd="/")
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def test_the_records_facts_are_used_and_proc_is_not_read(sleeper: subprocess.Popen[bytes]) -> None:
    time.sleep(0.3)  # /proc's start time (the fork) and the record's stamp now differ by more than a tick
    table = ProcessTable()
    table.get(os.getpid())
    stamp = time.time_ns()
    ev = _audit_exec(sleeper.pid, os.getpid(), "/srv/from-the-record", stamp)
    ProcessStage(table).apply(ev)
    p = table.by_pid[sleeper.pid]
    st = proc_stat(sleeper.pid)
    assert st is not None and not same_start(p.start_ns, st[1])  # not /proc's start: /proc was not read
    assert abs(p.start_ns - since_boot_ns(stamp)) < 10_000_000 and ev["process_key"] == f"{sleeper.pid}:{p.start_ns}"
    assert ev["cwd"] == p.cwd == "/srv/from-the-record"  # /proc says "/"
    assert ev["ppid"] == os.getpid() and ev["parent_key"] == table.by_pid[os.getpid()].key


def test_without_ppid_the_process_is_read_from_proc(sleeper: subprocess.Popen[bytes]) -> None:
    table = ProcessTable()
    ev = _audit_exec(sleeper.pid, None, "/srv/x", time.time_ns())
    ProcessStage(table).apply(ev)
    st = proc_stat(sleeper.pid)
    assert st is not None and same_start(table.by_pid[sleeper.pid].start_ns, st[1])
    assert ev["ppid"] == os.getpid()  # the parent from /proc


def test_children_gone_take_their_parents_cgroup_read_once_per_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = container_mod.read_proc_cgroup
    monkeypatch.setattr(container_mod, "read_proc_cgroup", lambda pid: reads.append(pid) or real(pid))
    gone = []
    for _ in range(3):
        p = subprocess.Popen(["/bin/true"])
        p.wait()
        gone.append(p.pid)
    stage = ContainerStage(CgroupIndex(), force_proc=True)
    mine = real(os.getpid())
    assert mine is not None
    parent_key = f"{os.getpid()}:1"
    evs = []
    for pid in gone:
        ev = _audit_exec(pid, os.getpid(), "/", time.time_ns())
        ev["process_key"], ev["parent_key"] = f"{pid}:2", parent_key
        stage.apply(ev)
        evs.append(ev)
    assert all(e.get("cgroup_path") == mine[0] and e.get("container_id_method") in (None, "proc_cgroup") for e in evs)
    assert reads == [*gone[:1], os.getpid(), *gone[1:]]  # each child tried, the parent read once
    monkeypatch.setattr(container_mod, "PARENT_TTL_S", 0.0)  # past the TTL: read again (it may have moved)
    ev = _audit_exec(gone[0], os.getpid(), "/", time.time_ns())
    ev["process_key"], ev["parent_key"] = f"{gone[0]}:3", parent_key
    stage.apply(ev)
    assert reads[-1] == os.getpid()


def test_a_live_process_that_moved_is_answered_by_its_own_cgroup(sleeper: subprocess.Popen[bytes]) -> None:
    require_root()
    unified = next((m for m in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
                    if os.path.exists(f"{m}/cgroup.procs") and os.path.exists(f"{m}/cgroup.controllers")), None)
    require(unified is not None, "a cgroup v2 mount")
    assert unified is not None
    d = Path(unified) / f"podtrail-test-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        (d / "cgroup.procs").write_text(str(sleeper.pid))
        stage = ContainerStage(CgroupIndex(), force_proc=True)
        parent = _audit_exec(os.getpid() + 0, os.getppid(), "/", time.time_ns())
        parent["process_key"] = "parent:1"
        stage.apply(parent)  # the parent's answer is cached
        ev = _audit_exec(sleeper.pid, os.getpid(), "/", time.time_ns())
        ev["process_key"], ev["parent_key"] = f"{sleeper.pid}:1", "parent:1"
        stage.apply(ev)
        assert ev["cgroup_path"] == "/" + d.name and parent["cgroup_path"] != ev["cgroup_path"]
    finally:
        sleeper.kill()
        sleeper.wait()
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.1)
