"""Repeated identical socket events counted in the kernel (socket.bpf.c `repeats`), on the real
kernel: a process connecting 100 times to one loopback port gives a few events whose
``repeat_count`` values add up to 100; other ports and other processes are kept apart; with
the window off every connect is an event."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import require_ebpf

from podtrail.config import SensorConfig
from podtrail.model.event import finalize, validate

CLIENT = """
import socket, sys
for i in range(int(sys.argv[1])):
    for port in sys.argv[2:]:
        s = socket.create_connection(("127.0.0.1", int(port)))
        s.close()
"""


class Listener:
    """A loopback TCP listener in a thread (this process: the sensor never reports it)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.close()

    def close(self) -> None:
        self.sock.close()


class SocketSensor:
    def __init__(self, window_ns: int) -> None:
        from podtrail.bpf.netfile import NetFileSource
        from podtrail.bpf.socket import SocketDecoder

        self.events: list[dict[str, Any]] = []
        cfg = SensorConfig(loopback=True, files=False)
        self.src = NetFileSource("ebpf-socket", "socket", SocketDecoder().decode, lambda o: None, cfg,
                                 repeat_window_ns=window_ns)
        self.src.load()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self.src.run, args=(self._collect, self._stop))
        self._t.start()

    def _collect(self, ev: dict[str, Any]) -> None:
        self.events.append(finalize(ev))

    def connects(self, pid: int, port: int) -> list[dict[str, Any]]:
        return [e for e in list(self.events)
                if e["action"] == "connect" and e["pid"] == pid and e.get("remote_port") == port]

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        self.src.close()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    ls = [Listener(), Listener()]
    yield ls
    for x in ls:
        x.close()


def run_client(n: int, *ports: int) -> int:
    p = subprocess.Popen([sys.executable, "-c", CLIENT, str(n), *map(str, ports)])
    assert p.wait(60) == 0
    return p.pid


def wait_total(s: SocketSensor, pid: int, port: int, want: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        evs = s.connects(pid, port)
        if sum(e.get("repeat_count", 1) for e in evs) >= want or time.monotonic() > deadline:
            return evs
        time.sleep(0.05)


def test_hundred_connects_are_a_few_events_whose_counts_add_up(listeners: list[Listener]) -> None:
    require_ebpf()
    s = SocketSensor(window_ns=1_000_000_000)
    try:
        port, other = listeners[0].port, listeners[1].port
        pid = run_client(100, port, other)
        evs = wait_total(s, pid, port, 100)
        evs_other = wait_total(s, pid, other, 100)
        for got in (evs, evs_other):
            assert sum(e.get("repeat_count", 1) for e in got) == 100, [e.get("repeat_count") for e in got]
            assert len(got) <= 10, len(got)  # one at the window's start, one carrying the count...
            assert any(e.get("repeat_count", 1) > 1 for e in got)
            assert all(e["result"] == 0 and e["transport"] == "tcp" and validate(e) == [] for e in got)
        assert s.src.repeat_flushes >= 1  # the last window ended without a next event: swept
        assert s.src.obj is not None
        assert s.src._repeats.totals(s.src.obj)["socket_repeats"] >= 180
        # another process to the same port is not merged with this one
        pid2 = run_client(3, port)
        assert sum(e.get("repeat_count", 1) for e in wait_total(s, pid2, port, 3)) == 3
    finally:
        s.close()


def test_stop_reports_counted_repeats(listeners: list[Listener]) -> None:
    require_ebpf()
    s = SocketSensor(window_ns=3600 * 10**9)  # only the stop ends this window
    port = listeners[0].port
    pid = run_client(20, port)
    time.sleep(0.3)
    assert len(s.connects(pid, port)) == 1
    s.close()
    evs = s.connects(pid, port)
    assert [e.get("repeat_count", 1) for e in evs] == [1, 19]


def test_one_window_per_service_end_under_cpu_contention(listeners: list[Listener]) -> None:
    """Four clients pinned to one CPU, so each is preempted between its connect and the
    syscall-exit program, when the listener may already have closed its end (CLOSE_WAIT).
    The connect's flags must not depend on that: one window per (process, service end), its
    counts exact. (Before socket.bpf.c set KF_SYN_SENT for every TCP connect that returned 0,
    a third of these pairs opened a second window.)"""
    require_ebpf()
    more = [Listener(), Listener()]
    s = SocketSensor(window_ns=3600 * 10**9)
    try:
        clients = [(subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", CLIENT, "1500", str(ls.port)]), ls.port)
                   for ls in (*listeners, *more)]
        for p, _ in clients:
            assert p.wait(60) == 0
        time.sleep(0.3)
        assert {port: len(s.connects(p.pid, port)) for p, port in clients} == {port: 1 for _, port in clients}
    finally:
        s.close()
        for x in more:
            x.close()
    for p, port in clients:
        assert [e.get("repeat_count", 1) for e in s.connects(p.pid, port)] == [1, 1499]


def test_window_off_sends_every_connect(listeners: list[Listener]) -> None:
    require_ebpf()
    s = SocketSensor(window_ns=0)
    try:
        port = listeners[0].port
        pid = run_client(30, port)
        evs = wait_total(s, pid, port, 30)
        assert len(evs) == 30 and not any("repeat_count" in e for e in evs)
    finally:
        s.close()
