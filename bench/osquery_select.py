"""SELECT over 50,000 buffered events through Thrift: podtrail's extension vs a plain
osquery-python TablePlugin returning the same rows, in one run.

    .venv/bin/python -m bench osquery_select [--events 50000] [--rounds 3] [--set staged|flat] [--python-client]

Both are called exactly as osqueryd calls an extension (Extension.call over a UNIX socket,
binary protocol), rounds alternating between the two. The baseline is osquery-python's own
ExtensionManager + TablePlugin served by TSimpleServer, as osquery-python's start_extension
does. The caller stands in for osqueryd: a separate process (as osqueryd is, so its decoding
does not share the extensions' interpreter lock) that decodes with thrift's C accelerator
(osqueryd's reader is C++); the time is from sending the call to holding the decoded rows.
``--python-client`` also times the same calls decoded by osquery-python's pure-Python client,
a cost osqueryd does not have. "staged" events went through the real stages (shared context
entities attached, as the agent buffers them); "flat" ones carry every field themselves.

Also: each extension's own CPU time for the reply (no socket, no client), podtrail's previous
path (row dicts, thrift's C encoder) beside it, µs per ``EventBuffers.submit``, and RSS.
``--submit-only`` times only the submits (runs against older trees: ``PYTHONPATH=...``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from osquery.extension_manager import ExtensionManager as PyExtensionManager
from osquery.extensions import Extension as PyExtension
from osquery.extensions.ttypes import ExtensionResponse as PyExtensionResponse
from osquery.table_plugin import TableColumn, TablePlugin
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport

from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.tables.buffer import EventBuffers
from podtrail.tables.osquery_ext import ExtensionHandler, StreamingProcessor
from podtrail.tables.osquery_thrift import Extension
from podtrail.tables.osquery_thrift.ttypes import ExtensionResponse
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


def rss_mb(key: str = "VmRSS") -> float:
    """This process's resident memory (``VmHWM``: its peak) from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Discard(TTransport.TTransportBase):
    """A write-only transport that counts and drops what it is given."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, buf: bytes) -> None:
        self.n += len(buf)

    def flush(self) -> None:
        pass


def staged_events(n: int) -> list[Any]:
    """The per-stage profile's stream after the real stages: ``n`` process events (fork, exec,
    exit of short-lived curls in 250 pods), with their socket and file events."""
    from bench.stage_profile import enriched_events
    return enriched_events(-(-n // 3))


def client_loop() -> int:
    """The osqueryd stand-in, in its own process: one JSON request per line on stdin
    ({path, ctx, python_client}), one JSON answer per line ({rows, s})."""
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        rows = call(req["path"], req["ctx"], req["python_client"])
        print(json.dumps({"rows": rows, "s": time.perf_counter() - t0}), flush=True)
    return 0


class Client:
    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[1]
        self.p = subprocess.Popen([sys.executable, "-m", "bench.osquery_select", "--client"], cwd=root,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, path: str, ctx: dict, python_client: bool) -> tuple[int, float]:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(json.dumps({"path": path, "ctx": ctx, "python_client": python_client}) + "\n")
        self.p.stdin.flush()
        ans = json.loads(self.p.stdout.readline())
        return ans["rows"], ans["s"]

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()
        self.p.wait()


def call(path: str, ctx: dict, python_client: bool = False) -> int:
    trans, proto = client_protocol(path, timeout_s=300, accelerated=not python_client)
    try:
        client = (PyExtension if python_client else Extension).Client(proto)
        resp = client.call("table", SPEC.name, {"action": "generate", "context": json.dumps(ctx)})
        return len(resp.response)
    finally:
        trans.close()


def submit_cost(events: list[Any], rounds: int, keep: int = 0) -> float:
    """µs of thread CPU per ``EventBuffers.submit`` (with the compaction ``end_batch`` does, where a buffer
    defers it), best of ``rounds`` (each into fresh buffers
    holding ``keep`` events a kind: fewer than submitted is the steady state, one out per one in)."""
    best = float("inf")
    for _ in range(rounds):
        b = EventBuffers(events_max=keep or len(events), expiry_s=10**9)
        submit = b.submit
        gc.collect()
        t0 = time.thread_time()
        for e in events:
            submit(e)
        end = getattr(b, "end_batch", None)  # compaction, where a buffer defers it
        if end is not None:
            end()
        best = min(best, time.thread_time() - t0)
        del b
    return best / len(events) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--set", choices=("staged", "flat"), default="staged")
    ap.add_argument("--python-client", action="store_true", help="also time osquery-python's pure-Python client")
    ap.add_argument("--submit-only", action="store_true", help="only time EventBuffers.submit")
    ap.add_argument("--submit-keep", type=int, default=0, help="buffers hold this many events a kind while submitting")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        return client_loop()
    base_rss = rss_mb()
    events = staged_events(a.events) if a.set == "staged" else make_events(a.events)
    results: dict[str, Any] = {"set": a.set, "submit_us_per_event": submit_cost(events, a.rounds, a.submit_keep),
                               "submitted_events": len(events)}
    if a.submit_only:
        print(json.dumps(results, indent=2))
        return 0
    buffers = EventBuffers(events_max=a.events, expiry_s=10**9)
    for e in events:
        buffers.submit(e)
    del events
    gc.collect()
    full_rss = rss_mb()
    d = tempfile.mkdtemp(prefix="podtrail-bench-osq-")

    svc = TableService(buffers)
    ours = ThreadedUnixServer(StreamingProcessor(ExtensionHandler(TABLES, svc.select_wire, lambda: None)), f"{d}/ours.sock")
    ours.start()
    dicts = StreamingProcessor(ExtensionHandler(TABLES, svc.select, lambda: None))  # the previous path: row dicts

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
    server = TServer.TSimpleServer(PyExtension.Processor(mgr), transport, TTransport.TBufferedTransportFactory(),
                                   TBinaryProtocol.TBinaryProtocolFactory())
    threading.Thread(target=server.serve, daemon=True).start()
    time.sleep(0.3)
    client = Client()

    recs = buffers.records(Kind.PROCESS)
    some_pid = str(EventBuffers.materialize(recs[len(recs) // 2])["pid"])  # WHERE pid = one that is there
    del recs
    clients = [("", False)] + ([("pyclient_", True)] if a.python_client else [])
    for prefix, python_client in clients:
        for label, ctx in (("select_all", {"constraints": []}),
                           ("where_pid", {"constraints": [{"name": "pid", "list": [{"op": 2, "expr": some_pid}], "affinity": "INTEGER"}]})):
            key = prefix + label
            best = {"podtrail": float("inf"), "osquery_python": float("inf")}
            for _ in range(a.rounds):  # alternating, so load on the machine falls on both alike
                for who, path in (("podtrail", f"{d}/ours.sock"), ("osquery_python", f"{d}/plain.sock")):
                    rows, s_ = client.call(path, ctx, python_client)
                    best[who] = min(best[who], s_)
                    results[f"{key}_{who}_rows"] = rows
            for who, b in best.items():
                results[f"{key}_{who}_s"] = b
            results[f"{key}_speedup"] = results[f"{key}_osquery_python_s"] / results[f"{key}_podtrail_s"]
    client.close()
    # The extensions' own CPU time (this process's, so other load on the machine does not count)
    # for the SELECT *, without a client decoding it: each processor reads the request and
    # writes its reply into memory. podtrail: rows written as bytes from the buffer records
    # (the extension's path); podtrail_dicts: its previous path (row dicts, thrift's C
    # encoder in chunks); osquery-python: its generated code on the plain binary protocol.
    req = TTransport.TMemoryBuffer()
    Extension.Client(TBinaryProtocol.TBinaryProtocol(req)).send_call(
        "table", SPEC.name, {"action": "generate", "context": json.dumps({"constraints": []})})
    procs = (("podtrail", ours.processor, TBinaryProtocol.TBinaryProtocolAccelerated),
             ("podtrail_dicts", dicts, TBinaryProtocol.TBinaryProtocolAccelerated),
             ("osquery_python", PyExtension.Processor(mgr), TBinaryProtocol.TBinaryProtocol))
    best = {who: float("inf") for who, _, _ in procs}
    replies = {}
    for _ in range(a.rounds):
        for who, processor, proto in procs:
            out = TTransport.TMemoryBuffer()
            t0 = time.process_time()  # all threads: podtrail's reply is sent by a thread of its own
            processor.process(proto(TTransport.TMemoryBuffer(req.getvalue())), proto(out))
            best[who] = min(best[who], time.process_time() - t0)
            replies[who] = len(out.getvalue())
            if who == "podtrail":
                reply = out.getvalue()
            del out
    for who, _, _ in procs:
        results[f"server_only_select_all_{who}_s"] = best[who]
        results[f"server_only_select_all_{who}_bytes"] = replies[who]
    # What the osqueryd stand-in spends decoding podtrail's reply (thread CPU, C-accelerated):
    # a floor under any end-to-end figure with this client.
    b_ = float("inf")
    for _ in range(a.rounds):
        t0 = time.thread_time()
        n = len(Extension.Client(TBinaryProtocol.TBinaryProtocolAccelerated(TTransport.TMemoryBuffer(reply))).recv_call().response)
        b_ = min(b_, time.thread_time() - t0)
    results["client_decode_only_select_all_s"] = b_
    results["client_decode_only_rows"] = n
    del reply
    for who in ("podtrail", "podtrail_dicts"):
        results[f"server_only_select_all_{who}_speedup"] = (results["server_only_select_all_osquery_python_s"]
                                                            / results[f"server_only_select_all_{who}_s"])
    # Thrift encoding alone (thread CPU time), of the same 50,000 rows already rendered: the C encoder on
    # podtrail's bindings vs the pure-Python encoder of the `osquery` package's bindings.
    dict_rows = svc.generate(SPEC.name, [])
    for who, resp, proto in (
            ("c_accelerated", ExtensionResponse(response=dict_rows), TBinaryProtocol.TBinaryProtocolAccelerated),
            ("pure_python", PyExtensionResponse(response=dict_rows), TBinaryProtocol.TBinaryProtocol)):
        b_ = float("inf")
        for _ in range(a.rounds):
            t0 = time.thread_time()
            resp.write(proto(_Discard()))
            b_ = min(b_, time.thread_time() - t0)
        results[f"encode_only_{who}_s"] = b_
    results["encode_only_speedup"] = results["encode_only_pure_python_s"] / results["encode_only_c_accelerated_s"]
    del dict_rows
    # Memory the SELECT * allocates while answering (tracemalloc peak), the reply written to a
    # sink that keeps nothing: row dicts alive at once, not the reply's bytes.
    for who, processor, proto in procs:
        tracemalloc.start()
        processor.process(proto(TTransport.TMemoryBuffer(req.getvalue())), proto(_Discard()))
        results[f"server_only_select_all_{who}_peak_alloc_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    results["select_all_podtrail_rows_per_s"] = results["select_all_podtrail_rows"] / results["select_all_podtrail_s"]
    results["select_all_osquery_python_rows_per_s"] = results["select_all_osquery_python_rows"] / results["select_all_osquery_python_s"]
    results["rss_mb_before"] = base_rss
    results["rss_mb_buffers_full"] = full_rss  # with "staged", after the generated events were freed (heap kept)
    results["rss_mb_after_queries"] = rss_mb()
    results["rss_mb_peak"] = rss_mb("VmHWM")
    results["loadavg"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    ours.stop()
    os.system(f"rm -rf {d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
