"""A real agent (real eBPF programs, real pipeline) whose events tests can wait for."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from podtrail.config import Config, OsqueryConfig


class CaptureSink:
    name = "capture"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cv = threading.Condition()

    def submit(self, ev: dict[str, Any]) -> None:
        with self._cv:
            self.events.append(ev)
            self._cv.notify_all()

    def close(self) -> None:
        pass

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
        """Events matching ``pred``, waiting until ``count`` of them arrived (or timeout)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                hits = [e for e in self.events if pred(e)]
                left = deadline - time.monotonic()
                if len(hits) >= count or left <= 0:
                    return hits
                self._cv.wait(left)


def process_only_config() -> Config:
    """The agent with the process sensor only."""
    cfg = Config()
    cfg.sensor.sockets = False
    cfg.sensor.files = False
    return cfg


def start_agent(cfg: Config | None = None, extra_stages: list[Any] | None = None) -> tuple[Any, CaptureSink]:
    from podtrail.agent import build_agent

    cfg = cfg or Config()
    cfg.metrics.enabled = False
    if cfg.osquery.api_socket == OsqueryConfig().api_socket:
        # a folder of its own: another agent on the node (a parallel run's) may serve the default
        cfg.osquery.api_socket = tempfile.mkdtemp(prefix="podtrail-test-api-") + "/api.sock"
    sink = CaptureSink()
    agent = build_agent(cfg, sinks=[sink], extra_stages=extra_stages)
    agent.start()
    return agent, sink


def run_stage(stage: Any, ev: dict[str, Any], wait: float = 5.0) -> dict[str, Any] | None:
    """One event through one stage, ticking it until it lets the event go (a stage may hold an
    event while it waits for metadata); None when it kept it for ``wait`` seconds."""
    out: list[dict[str, Any]] = []
    stage.process(ev, out.append)
    deadline = time.monotonic() + wait
    while not out and time.monotonic() < deadline:
        time.sleep(0.05)
        stage.tick(time.monotonic(), out.append)
    return out[0] if out else None
