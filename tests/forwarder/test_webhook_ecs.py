"""Webhook output against a local HTTP server (a stand-in for a SOAR endpoint: any HTTP
server is one), ECS JSON names, and the agent-health event when a spool overflows."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from podtrail.formatters.ecs_json import to_ecs
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.outputs import spool as spool_mod
from podtrail.outputs.syslog import SyslogConfig, SyslogSink
from podtrail.outputs.webhook import WebhookConfig, WebhookSink


class Endpoint:
    def __init__(self, fail_first: int = 0) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.auth: list[str] = []
        self.fail_left = fail_first
        ep = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ep.auth.append(self.headers.get("Authorization", ""))
                if ep.fail_left > 0:
                    ep.fail_left -= 1
                    self.send_response(503)
                else:
                    ep.batches.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"


def _ev(i: int) -> dict:
    return finalize(new_event(Kind.SOCKET, "connect", pid=i, comm="nc", remote_address="203.0.113.9", remote_port=4444,
                              local_address="10.1.0.5", local_port=40000, direction="outbound", transport="tcp",
                              container_id="d" * 64, pod_name="web-1", namespace="shop", source="ebpf"))


def test_webhook_batches_auth_and_retry(tmp_path: Path) -> None:
    ep = Endpoint(fail_first=2)
    sink = WebhookSink(WebhookConfig(url=ep.url, auth_value="Bearer s3cret", format="ecs", batch_max=50), str(tmp_path))
    evs = [_ev(i) for i in range(120)]
    for e in evs:
        sink.submit(e)
    assert sink.flush(30)
    sink.close()
    got = [d for b in ep.batches for d in b]
    assert sorted(d["event"]["id"] for d in got) == sorted(e["event_id"] for e in evs)
    assert all(len(b) <= 50 for b in ep.batches) and set(ep.auth) == {"Bearer s3cret"}
    assert got[0]["destination"]["port"] == 4444 and got[0]["orchestrator"]["resource"]["name"] == "web-1"


def test_ecs_paths_and_renames() -> None:
    doc = to_ecs(_ev(1))
    assert doc["event"]["category"] == "network" and doc["event"]["action"] == "connect"
    assert doc["source"]["ip"] == "10.1.0.5" and doc["destination"]["ip"] == "203.0.113.9"
    assert doc["container"]["id"] == "d" * 64 and doc["orchestrator"]["namespace"] == "shop"
    assert doc["@timestamp"].endswith("Z") and doc["process"]["name"] == "nc"


def test_spool_limit_drops_oldest_counts_and_reports_health(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(spool_mod, "SEGMENT_BYTES", 4096)
    sink = SyslogSink(SyslogConfig(port=1, protocol="tcp", spool_max_bytes=16384, name="nowhere"), str(tmp_path))
    health: list[dict] = []
    sink.on_health = health.append
    for i in range(300):
        sink.submit(_ev(i))
    sink._q.put(None)
    sink._writer.join(10)
    sink._stop.set()
    assert sink.spool.dropped > 0
    # the spool-limit reports count every drop (the sender's "cannot deliver" report, which may
    # come first, counts none)
    full = [h for h in health if "spool limit" in h["message"]]
    assert full and sum(h["dropped_before"] for h in health) == sum(h["dropped_before"] for h in full) == sink.spool.dropped
    assert all(h["event_type"] == "agent" for h in health)
    remaining, _ = sink.spool.pending(10000)
    assert len(remaining) + sink.spool.dropped == 300  # every message is either kept or counted
