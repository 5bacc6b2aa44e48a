"""Forks folded into the exec that follows, on the real kernel (process.bpf.c held_forks):
one exec instead of fork+exec, a fork still reported before the exit of a child that never
exec'd, and by the user-space sweep for a child that lives on without exec'ing. Then the
agent's process table and ancestry, with a real dash as /bin/sh in a runc container."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from agent_harness import CaptureSink, process_only_config, start_agent
from conftest import require_core, require_runc
from containers import Container, run_container

from podtrail.config import SensorConfig


class Sensor:
    """The process source alone, reading into a list."""

    def __init__(self, **kw: Any) -> None:
        from podtrail.bpf.process import build_process_source

        self.events: list[dict[str, Any]] = []
        self.src = build_process_source(SensorConfig(), **kw)
        self.src.load()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self.src.run, args=(self.events.append, self._stop))
        self._t.start()

    def of(self, pid: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("pid") == pid]

    def wait(self, pred: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [e for e in list(self.events) if pred(e)]
            if hits:
                return hits
            time.sleep(0.02)
        return []

    def folds(self) -> dict[str, int]:
        assert self.src.obj is not None
        return self.src._folds.totals(self.src.obj)

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        self.src.close()


@pytest.fixture
def sensor() -> Iterator[Sensor]:
    require_core()
    s = Sensor()
    yield s
    s.close()


def test_fork_then_exec_is_one_exec(sensor: Sensor) -> None:
    before = sensor.folds()["fork_folded"]
    p = subprocess.run(["/bin/busybox", "true", "fold-one-exec"], check=True)
    assert p.returncode == 0
    ex = sensor.wait(lambda e: e["action"] == "exec" and "fold-one-exec" in (e.get("cmdline") or ""))
    assert ex, "no exec seen"
    pid = ex[0]["pid"]
    sensor.wait(lambda e: e["action"] == "exit" and e["pid"] == pid)
    time.sleep(0.3)  # past the sweep window: a held fork would have been reported by now
    actions = [e["action"] for e in sensor.of(pid)]
    assert actions == ["exec", "exit"], actions
    assert ex[0]["fork_folded"] is True and ex[0]["ppid"] == os.getpid()
    assert ex[0]["start_ns"] > 0
    assert sensor.folds()["fork_folded"] > before


def test_fork_without_exec_then_exit_sends_fork_then_exit(sensor: Sensor) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(5)
    os.waitpid(pid, 0)
    sensor.wait(lambda e: e["action"] == "exit" and e["pid"] == pid)
    evs = sensor.of(pid)
    assert [e["action"] for e in evs] == ["fork", "exit"], evs
    assert evs[0]["ppid"] == os.getpid() and evs[1]["exit_code"] == 5
    assert evs[0]["mono_ns"] <= evs[1]["mono_ns"]
    assert sensor.src.forks_sent_late == 0  # the exit sent it, not the sweep


def test_long_lived_child_without_exec_is_reported_by_the_sweep_while_alive(sensor: Sensor) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # lives until told
        os._exit(0)
    os.close(r)
    try:
        t0 = time.monotonic_ns()
        fork = sensor.wait(lambda e: e["action"] == "fork" and e["pid"] == pid, timeout=3)
        assert fork, "the held fork was not reported while the child lives"
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the child must still be alive"
        assert fork[0]["ppid"] == os.getpid() and fork[0]["mono_ns"] <= t0 + 10_000_000
        assert sensor.src.forks_sent_late >= 1
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)
    sensor.wait(lambda e: e["action"] == "exit" and e["pid"] == pid)
    assert [e["action"] for e in sensor.of(pid)] == ["fork", "exit"]


def test_a_held_parent_is_reported_before_its_child(sensor: Sensor) -> None:
    """A subshell that forks a command: the subshell's fork comes first, then the command's
    exec (its own fork folded) names the subshell as parent."""
    out = subprocess.run(["/bin/busybox", "sh", "-c", "( /bin/busybox true fold-nested; exit 0 ); :"], check=True)
    assert out.returncode == 0
    ex = sensor.wait(lambda e: e["action"] == "exec" and e.get("cmdline") == "/bin/busybox true fold-nested")
    assert ex and ex[0]["fork_folded"] is True
    sub = ex[0]["ppid"]
    evs = [e for e in sensor.events if e.get("pid") in (sub, ex[0]["pid"])]
    order = [(e["action"], e["pid"]) for e in evs]
    assert ("fork", sub) in order, order
    assert order.index(("fork", sub)) < order.index(("exec", ex[0]["pid"])), order


def test_stop_reports_every_held_fork() -> None:
    require_core()
    s = Sensor(hold_ns=3600 * 10**9)  # the sweep would never take it: only the stop does
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    try:
        time.sleep(0.3)
        assert not s.of(pid)
        assert s.src.held() >= 1  # the kernel's held_count: never below what held_forks has
        s.close()
        assert [e["action"] for e in s.of(pid)] == ["fork"]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_folding_off_sends_every_fork() -> None:
    require_core()
    s = Sensor(fold_forks=False)
    try:
        subprocess.run(["/bin/busybox", "true", "fold-off"], check=True)
        ex = s.wait(lambda e: e["action"] == "exec" and "fold-off" in (e.get("cmdline") or ""))
        assert ex and "fork_folded" not in ex[0]
        assert [e["action"] for e in s.of(ex[0]["pid"])][:2] == ["fork", "exec"]
    finally:
        s.close()


# ---- the agent: process table, ancestry, failed execs of a PATH search ---------------------


@pytest.fixture
def sink_ctr() -> Iterator[tuple[CaptureSink, Container]]:
    """The agent (process sensor only) and a runc container with dash as /bin/sh."""
    require_core()
    require_runc()
    a, sink = start_agent(process_only_config())
    c = run_container("kubelet-cgroupfs-burstable")
    try:
        yield sink, c
    finally:
        c.destroy()
        a.stop()


def test_agent_ancestry_of_folded_execs_and_a_subshell(sink_ctr: tuple[CaptureSink, Container]) -> None:
    """dash in a container: a subshell that never execs (its fork and exit are events, with
    its cwd) and whose child names it as parent; a command whose exec fails (the fork is
    folded into the failed exec, which still has its process and parent); `cat`, whose fork
    is folded into its exec, with the shell as parent and no fork event."""
    sink, ctr = sink_ctr
    ctr.exec("sh", "-c", "( cd /tmp && /bin/sleep 0.3; exit 3 ); /nope/tool fold-fail-marker; "
             "cat /dev/null fold-path-marker; exit 0", check=False)

    def exec_of(cmdline: str) -> dict[str, Any]:
        evs = sink.wait_for(lambda e: e["action"] == "exec" and e.get("container_id") == ctr.id
                            and e.get("cmdline") == cmdline)
        assert len(evs) == 1, evs
        return evs[0]

    cat = exec_of("cat /dev/null fold-path-marker")
    assert cat["result"] == 0 and cat["fork_folded"] is True and cat["parent_path"] == "/bin/sh"
    sh_pid = cat["ppid"]
    failed = exec_of("/nope/tool fold-fail-marker")
    assert failed["result"] == -2 and failed["fork_folded"] is True
    assert failed["ppid"] == sh_pid and failed["parent_path"] == "/bin/sh"
    assert failed["process_key"] == f"{failed['pid']}:{failed['start_ns']}"
    failed_exit = sink.wait_for(lambda e: e["action"] == "exit" and e["pid"] == failed["pid"])
    assert failed_exit and failed_exit[0]["exit_code"] == 127
    assert failed_exit[0]["process_key"] == failed["process_key"] and failed_exit[0]["parent_path"] == "/bin/sh"
    for pid in (cat["pid"], failed["pid"]):
        assert not [e for e in sink.events if e["action"] == "fork" and e["pid"] == pid]
    # the subshell: a fork (no exec) whose child, sleep, names it as parent
    sleep = sink.wait_for(lambda e: e["action"] == "exec" and e.get("container_id") == ctr.id
                          and e.get("cmdline") == "/bin/sleep 0.3")
    assert sleep and sleep[0]["fork_folded"] is True
    sub = sleep[0]["ppid"]
    assert sub != sh_pid and sleep[0]["parent_path"] == "/bin/sh" and sleep[0]["cwd"] == "/tmp"
    assert sleep[0]["ancestors"][0]["pid"] == sh_pid
    sub_fork = sink.wait_for(lambda e: e["action"] == "fork" and e["pid"] == sub)
    assert sub_fork and sub_fork[0]["ppid"] == sh_pid and sub_fork[0]["container_id"] == ctr.id
    sub_exit = sink.wait_for(lambda e: e["action"] == "exit" and e["pid"] == sub)
    assert sub_exit and sub_exit[0]["exit_code"] == 3 and sub_exit[0]["parent_path"] == "/bin/sh"
    assert sub_exit[0]["cwd"] == "/tmp"
