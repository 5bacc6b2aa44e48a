"""Socket/file sensor harness: the socket, file and process CO-RE objects loaded once per
session (the process object shares the file object's drift_inodes map, as in the agent) and
running in threads, feeding one collector; each test picks out its own events by cgroup id or
pid. (Not a conftest.py: tests/conftest.py owns that module name.)"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import require_ebpf

from podtrail.config import SensorConfig
from podtrail.model.event import Event, finalize, validate

WATCHED = "/watched/"
TEST_CFG = dict(write_prefixes=[WATCHED, "/tmp/", "/dev/shm/"], ringbuf_pages=256)


class Collector:
    """Thread-safe sink for the sources: finalizes, validates and keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.problems: list[tuple[Event, list[str]]] = []
        self._cv = threading.Condition()

    def __call__(self, ev: Event) -> None:
        finalize(ev)
        bad = validate(ev)
        with self._cv:
            if bad:
                self.problems.append((ev, bad))
            self.events.append(ev)
            self._cv.notify_all()

    def matching(self, pred: Callable[[Event], bool]) -> list[Event]:
        with self._cv:
            return [e for e in self.events if pred(e)]

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 15.0) -> Event | None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)


@dataclass
class Sensors:
    collector: Collector
    sources: list[Any]
    cfg: SensorConfig

    def source(self, name: str) -> Any:
        return next(s for s in self.sources if s.name == name)


@pytest.fixture(scope="session", name="sensors")
def sensors_fixture() -> Iterator[Sensors]:
    require_ebpf()
    from podtrail.bpf.libbpf import SharedMaps
    from podtrail.bpf.netfile import build_socket_file_sources
    from podtrail.bpf.process import build_process_source

    cfg = SensorConfig(**TEST_CFG)  # type: ignore[arg-type]
    shared = SharedMaps()
    sources = [*build_socket_file_sources(cfg, shared=shared), build_process_source(cfg, shared=shared)]
    col = Collector()
    stop = threading.Event()
    for s in sources:
        s.load()
    threads = [threading.Thread(target=s.run, args=(col, stop), daemon=True) for s in sources]
    for t in threads:
        t.start()
    yield Sensors(col, sources, cfg)
    stop.set()
    for t in threads:
        t.join(10)
    for s in sources:
        s.close()
    shared.close()


@contextmanager
def netns() -> Iterator[str]:
    """A network namespace made by the test, loopback up, deleted afterwards."""
    name = "ptnf-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
