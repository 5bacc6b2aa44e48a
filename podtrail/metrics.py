"""Prometheus metrics: one registry for the agent; every drop is counted here.

Modules declare their own metrics against ``REGISTRY`` (names prefixed ``podtrail_``); the
few that every source and sink share live here. Label children are cached because
``Counter.labels`` costs a dict build and a lock per call, too much per event.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "podtrail_events_total", "Events delivered to sinks, by source, type and action.",
    ["source", "type", "action"], registry=REGISTRY,
)
DROPPED = Counter(
    "podtrail_dropped_events_total", "Events lost or dropped anywhere in the agent, by stage and reason.",
    ["stage", "reason"], registry=REGISTRY,
)
LOST_SAMPLES = Counter(
    "podtrail_kernel_lost_samples_total", "Samples the kernel could not hand to user space (ring buffer full).",
    ["program"], registry=REGISTRY,
)
PROCESS_TABLE_SIZE = Gauge(
    "podtrail_process_table_size", "Processes tracked in the user-space process table.", registry=REGISTRY,
)

_event_children: dict[tuple[str, str, str], Any] = {}
_drop_children: dict[tuple[str, str], Any] = {}


def event_out(ev: dict[str, Any]) -> None:
    key = (ev.get("source") or "", ev.get("event_type") or "", ev.get("action") or "")
    child = _event_children.get(key)
    if child is None:
        child = _event_children[key] = EVENTS.labels(*key)
    child.inc()


def dropped(stage: str, reason: str, n: int = 1) -> None:
    key = (stage, reason)
    child = _drop_children.get(key)
    if child is None:
        child = _drop_children[key] = DROPPED.labels(*key)
    child.inc(n)


def serve(addr: str = "127.0.0.1", port: int = 9464) -> None:
    """Expose /metrics over HTTP (loopback by default: metrics reveal workload names)."""
    start_http_server(port, addr=addr, registry=REGISTRY)
