"""Agent health: an HTTP endpoint for probes and a periodic agent-health event.

``/healthz`` (liveness): every source and pipeline thread is alive. ``/readyz`` (readiness):
a source is running and has been for a moment. On a loopback address both answer JSON with
the real state: source in use and why, events and drops so far, spool levels, process-table
and container counts, and metadata coverage (share of container events that got pod
metadata). On any other address (the pod IP a kubelet probes when the server binds 0.0.0.0)
they answer only ``{"ok": ...}`` and the status code: the detail names outputs' hosts and
ports, which is not for everyone who can reach the pod.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from podtrail import metrics
from podtrail.model.event import new_event
from podtrail.model.fields import Kind
from podtrail.pipeline import Emit


def _counter_total(name: str) -> float:
    total = 0.0
    for fam in metrics.REGISTRY.collect():
        for s in fam.samples:
            if s.name == name:
                total += s.value
    return total


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4-mapped loopback (::ffff:127.0.0.1)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def body(ok: bool, st: dict[str, Any], detail: bool) -> bytes:
    return json.dumps({"ok": ok, **st} if detail else {"ok": ok}, default=str).encode()


def state(agent: Any) -> dict[str, Any]:
    st = dict(agent.state())
    st["events"] = _counter_total("podtrail_events_total")
    st["dropped"] = _counter_total("podtrail_dropped_events_total") + _counter_total("podtrail_output_dropped_total")
    st["kernel_lost"] = _counter_total("podtrail_kernel_lost_samples_total")
    missing = _counter_total("podtrail_k8s_metadata_missing_total")
    st["metadata_missing"] = missing
    st["spool_pending"] = {s.name: len(s.spool.pending(100000)[0]) for s in agent.sinks if hasattr(s, "spool")}
    return st


def stalled_outputs(agent: Any) -> dict[str, float]:
    """Outputs that have had messages to send and delivered none for longer than
    ``metrics.output_stall_seconds``: name -> seconds since they last delivered."""
    limit = agent.cfg.metrics.output_stall_seconds
    out: dict[str, float] = {}
    for s in agent.sinks:
        failing = getattr(s, "failing_for", None)
        secs = failing() if failing is not None else 0.0
        if limit > 0 and secs >= limit:
            out[s.name] = round(secs, 1)
    return out


class HealthServer:
    """Bound at construction (a busy port fails before the sensors load); the agent is
    attached once it runs, and until then both probes answer 503."""

    def __init__(self, agent: Any = None, address: str = "127.0.0.1", port: int = 9465) -> None:
        server = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path not in ("/healthz", "/readyz"):
                    self.send_response(404)
                    self.end_headers()
                    return
                ag = server.agent
                st: dict[str, Any] = {"starting": True}
                ok = False
                if ag is not None:
                    st = state(ag)
                    if self.path == "/healthz":
                        ok = st["alive"]
                    else:
                        stalled = st["stalled_outputs"] = stalled_outputs(ag)
                        ok = st["alive"] and st["uptime_s"] >= 1.0 and not stalled
                # Where the request arrived, not who sent it: a request to the pod IP gets the
                # short answer even from the node itself.
                data = body(ok, st, is_loopback(self.connection.getsockname()[0]))
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.agent = agent
        self.httpd = metrics.HTTPServer(address, port, H)

    def start(self) -> None:
        self.httpd.start("podtrail-health")

    def stop(self) -> None:
        self.httpd.stop()


def health_event(agent: Any, dropped_since: float) -> dict[str, Any]:
    st = state(agent)
    msg = (f"source={st['source']} events={int(st['events'])} dropped={int(st['dropped'])} "
           f"kernel_lost={int(st['kernel_lost'])} processes={st['process_table_size']} containers={st['containers']} "
           f"metadata_missing={int(st['metadata_missing'])} spool={json.dumps(st['spool_pending'])}")
    return new_event(Kind.AGENT, "health", message=msg, dropped_before=int(dropped_since), source="agent")


def periodic_health(agent: Any, emit: Emit, interval_s: float, stop: threading.Event) -> None:
    """Every ``interval_s``: an agent-health event, forwarded like any other event."""
    last = 0.0
    while not stop.wait(interval_s):
        dropped = state(agent)["dropped"]
        emit(health_event(agent, dropped - last))
        last = dropped
