"""Prometheus metrics: one registry for the agent; every drop is counted here.

Modules declare their own metrics against ``REGISTRY`` (names prefixed ``podtrail_``); the
few that every source and sink share live here. Label children are cached because
``Counter.labels`` costs a dict build and a lock per call, too much per event; the events
counter, touched by every event, is a plain dict of ints exported at scrape time.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

DROPPED = Counter(
    "podtrail_dropped_events_total", "Events lost or dropped anywhere in the agent, by stage and reason.",
    ["stage", "reason"], registry=REGISTRY,
)
LOST_SAMPLES = Counter(
    "podtrail_kernel_lost_samples_total", "Samples the kernel could not hand to user space (ring buffer full).",
    ["program"], registry=REGISTRY,
)
KERNEL_REDUCTIONS = Counter(
    "podtrail_kernel_reductions_total",
    "Samples the sensors did not send one by one, and how held ones were sent (docs/fields.md, "
    "'Fewer crossings'): fork_folded, fork_sent_late, fork_map_full, socket_repeats.",
    ["program", "outcome"], registry=REGISTRY,
)
EXITED_EVICTED = Counter(
    "podtrail_process_table_evicted_total",
    "Exited processes the process table forgot before sensor.exit_grace_seconds because more than "
    "sensor.max_exited_processes had exited (a late event of one finds no ancestry in the table).",
    registry=REGISTRY,
)
PROCESS_TABLE_SIZE = Gauge(
    "podtrail_process_table_size", "Processes tracked in the user-space process table.", registry=REGISTRY,
)

_event_counts: dict[tuple[str, str, str], int] = {}
_drop_children: dict[tuple[str, str], Any] = {}


def event_out(ev: dict[str, Any]) -> None:
    """Count an event delivered to the sinks. Called by the pipeline thread only (one writer:
    the read-modify-write of a plain int needs no lock)."""
    key = (ev.get("source") or "", ev.get("event_type") or "", ev.get("action") or "")
    c = _event_counts
    c[key] = c.get(key, 0) + 1


class _EventsCollector:
    """``podtrail_events_total{source,type,action}`` from ``_event_counts``, at scrape time."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily("podtrail_events", "Events delivered to sinks, by source, type and action.",
                                  labels=["source", "type", "action"])
        for key, n in list(_event_counts.items()):
            fam.add_metric(list(key), n)
        yield fam

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily("podtrail_events", "Events delivered to sinks, by source, type and action.",
                                    labels=["source", "type", "action"])]


REGISTRY.register(_EventsCollector())  # type: ignore[arg-type]


def kernel_reduced(program: str, outcome: str, n: int = 1) -> None:
    KERNEL_REDUCTIONS.labels(program, outcome).inc(n)


def dropped(stage: str, reason: str, n: int = 1) -> None:
    key = (stage, reason)
    child = _drop_children.get(key)
    if child is None:
        child = _drop_children[key] = DROPPED.labels(*key)
    child.inc(n)


class HTTPServer(ThreadingHTTPServer):
    """Binds in the constructor (so a busy port is reported before the sensors load), IPv4 or
    IPv6 by the address; serves in a daemon thread once started."""

    daemon_threads = True

    def __init__(self, address: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        super().__init__((address, port), handler)

    def start(self, name: str) -> None:
        threading.Thread(target=self.serve_forever, name=name, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _MetricsHandler(BaseHTTPRequestHandler):
    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] != "/metrics":  # not a health probe that always passes
            self.send_error(404, "metrics are at /metrics; health is on the health port")
            return
        body = generate_latest(REGISTRY)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def metrics_server(addr: str = "127.0.0.1", port: int = 9464) -> HTTPServer:
    """/metrics over HTTP, bound now, served after ``start`` (loopback by default: metrics reveal workload names)."""
    return HTTPServer(addr, port, _MetricsHandler)


def serve(addr: str = "127.0.0.1", port: int = 9464) -> HTTPServer:
    srv = metrics_server(addr, port)
    srv.start("podtrail-metrics")
    return srv
