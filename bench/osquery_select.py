"""SELECT over 50,000 buffered events through Thrift: podtrail's extension vs a plain
osquery-python TablePlugin returning the same rows, in one run.

    .venv/bin/python -m bench.osquery_select [--events 50000] [--rounds 3]

Both are called exactly as osqueryd calls an extension (Extension.call over a UNIX socket,
binary protocol). The baseline is osquery-python's own ExtensionManager + TablePlugin served
by TSimpleServer, as osquery-python's start_extension does. Also prints the RSS of this process
with the buffers full.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

from osquery.extension_manager import ExtensionManager as PyExtensionManager
from osquery.extensions import Extension
from osquery.table_plugin import TableColumn, TablePlugin
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport

from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.tables.buffer import EventBuffers
from podtrail.tables.osquery_ext import ExtensionHandler
from podtrail.tables.schema import TABLES
from podtrail.tables.service import TableService
from podtrail.tables.thrift_server import ThreadedUnixServer, client_protocol

SPEC = TABLES["container_process_events"]


def make_events(n: int) -> list[dict]:
    evs = []
    for i in range(n):
        evs.append(finalize(new_event(
            Kind.PROCESS, "exec", pid=10000 + i, tid=10000 + i, ppid=1, uid=0, gid=0, comm="sh", path="/bin/sh",
            cmdline=f"sh -c job-{i}", argv=["sh", "-c", f"job-{i}"], args_truncated=False, result=0, source="ebpf",
            cgroup_id=4242, container_id="a" * 64, container_runtime="containerd", pod_uid="u", pod_name=f"pod-{i % 250}",
            namespace="shop", workload_kind="Deployment", workload_name="web", process_key=f"{10000 + i}:1",
            parent_path="/usr/bin/containerd-shim", parent_cmdline="containerd-shim", ancestors=[{"pid": 1, "path": "/sbin/init", "cmdline": "init"}])))
    return evs


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def call(path: str, ctx: dict) -> int:
    trans, proto = client_protocol(path, timeout_s=120)
    try:
        resp = Extension.Client(proto).call("table", SPEC.name, {"action": "generate", "context": json.dumps(ctx)})
        return len(resp.response)
    finally:
        trans.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    base_rss = rss_mb()
    buffers = EventBuffers(events_max=a.events, expiry_s=10**9)
    events = make_events(a.events)
    for e in events:
        buffers.submit(e)
    full_rss = rss_mb()
    d = tempfile.mkdtemp(prefix="podtrail-bench-osq-")

    svc = TableService(buffers)
    ours = ThreadedUnixServer(Extension.Processor(ExtensionHandler(TABLES, svc.generate, lambda: None)), f"{d}/ours.sock")
    ours.start()

    class PlainPlugin(TablePlugin):  # what an osquery-python user would write
        def name(self) -> str:
            return SPEC.name

        def columns(self) -> list:
            return [TableColumn(name=c.name, type=c.type) for c in SPEC.columns]

        def generate(self, context: dict) -> list:
            rows = []
            for ev in buffers.events(Kind.PROCESS):
                rows.append({c.name: ("" if ev.get(c.key) is None else (json.dumps(ev[c.key]) if c.json else ev[c.key])) for c in SPEC.columns})
            return rows

    mgr = PyExtensionManager()
    mgr.add_plugin(PlainPlugin)
    transport = TSocket.TServerSocket(unix_socket=f"{d}/plain.sock")
    server = TServer.TSimpleServer(Extension.Processor(mgr), transport, TTransport.TBufferedTransportFactory(),
                                   TBinaryProtocol.TBinaryProtocolFactory())
    threading.Thread(target=server.serve, daemon=True).start()
    time.sleep(0.3)

    results = {}
    for label, ctx in (("select_all", {"constraints": []}),
                       ("where_pid", {"constraints": [{"name": "pid", "list": [{"op": 2, "expr": "12345"}], "affinity": "INTEGER"}]})):
        for who, path in (("podtrail", f"{d}/ours.sock"), ("osquery_python", f"{d}/plain.sock")):
            best = float("inf")
            rows = 0
            for _ in range(a.rounds):
                t0 = time.perf_counter()
                rows = call(path, ctx)
                best = min(best, time.perf_counter() - t0)
            results[f"{label}_{who}_s"] = best
            results[f"{label}_{who}_rows"] = rows
        results[f"{label}_speedup"] = results[f"{label}_osquery_python_s"] / results[f"{label}_podtrail_s"]
    results["select_all_podtrail_rows_per_s"] = results["select_all_podtrail_rows"] / results["select_all_podtrail_s"]
    results["select_all_osquery_python_rows_per_s"] = results["select_all_osquery_python_rows"] / results["select_all_osquery_python_s"]
    results["rss_mb_before"] = base_rss
    results["rss_mb_buffers_full"] = full_rss
    results["rss_mb_after_queries"] = rss_mb()
    print(json.dumps(results, indent=2))
    ours.stop()
    os.system(f"rm -rf {d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
