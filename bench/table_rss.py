"""RSS with all three osquery event tables full: 50,000 process, socket and file events each.

    .venv/bin/python -m bench.table_rss [--events 50000]

The events are the per-stage profile's stream (pods, shells forking curl, connections, file
opens), decoded and enriched by the real stages, finalized and submitted to the real
``EventBuffers`` one at a time, as the agent does; nothing else keeps them. The process table
reaps exited processes as its 30 s grace would. Prints the process RSS before (imports, caches,
world) and with the tables full, against the issue's goal (100 MB) and osquery's watchdog
default (200 MB), and checks every buffered event still reads back complete.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

from bench.stage_profile import World, cycle, decode_items
from podtrail.bpf.process import ProcessDecoder
from podtrail.enrich.container import ContainerStage
from podtrail.enrich.k8s.stage import K8sStage
from podtrail.model.event import finalize
from podtrail.model.fields import Kind
from podtrail.procs.stage import ProcessStage
from podtrail.tables.buffer import EventBuffers


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fill(n: int) -> tuple[EventBuffers, World, int]:
    """Run cycles through the real stages until every table holds ``n`` events."""
    world = World()
    dec = ProcessDecoder()
    buffers = EventBuffers(events_max=n, expiry_s=10**9)
    k8s = K8sStage(world.cache, None, cluster_name="prod-eu-1", node_name="node-1", labels=["app"])
    cont = ContainerStage(world.index)
    proc = ProcessStage(world.table)

    def sink(ev: Any) -> None:
        buffers.submit(finalize(ev))

    def to_k8s(ev: Any) -> None:
        k8s.process(ev, sink)

    def to_cont(ev: Any) -> None:
        cont.process(ev, to_k8s)

    c = 0
    tables = [buffers._q[k.value] for k in (Kind.PROCESS, Kind.SOCKET, Kind.FILE)]  # the stream has no alerts
    while min(len(q) for q in tables) < n:
        for ev in decode_items(dec, cycle(world, c)):
            proc.process(ev, to_cont)
        buffers.end_batch()  # as the pipeline does after each batch it took
        c += 1
        if c % 5000 == 0:
            world.table.reap(time.monotonic() + 3600)  # the grace period passing
    world.table.reap(time.monotonic() + 3600)
    return buffers, world, c


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    a = ap.parse_args()
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    buffers, world, c = fill(a.events)
    fill_s = time.perf_counter() - t0
    gc.collect()
    full = rss_mb()
    sizes = {k: len(q) for k, q in buffers._q.items() if q}
    complete = all(e.get("pod_name") and e.get("process_key") and e.get("event_id")
                   for kind in (Kind.PROCESS, Kind.SOCKET, Kind.FILE) for e in buffers.iter_events(kind))
    print(json.dumps({"buffered": sizes, "cycles": c, "fill_s": round(fill_s, 1), "rss_before_mb": round(before, 1),
                      "rss_full_mb": round(full, 1), "goal_mb": 100, "osquery_watchdog_mb": 200,
                      "bytes_per_event": round((full - before) * 2**20 / sum(sizes.values())),
                      "every_event_reads_back_with_context": complete}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
