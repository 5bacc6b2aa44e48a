"""Cost of the behavioural-baseline check per event, and memory per workload profile.

    .venv/bin/python -m bench.baseline_check [--workloads 1000] [--events 200000]

Builds ``--workloads`` profiles the way the agent does (learning from events), each a
typical one: 50 executables (with their parent -> child pairs), 20 outbound destinations
(services, workloads, IP:port), 2 listening ports and 10 written directories, then moves them
all to monitor and times ``Baselines.check`` per event on a node-like mix (exec, connect,
file writes, and the exits/forks/reads that feed no list), all from learned behaviour (the
common case) plus 0.1 % new items. Reference in the same run: ``finalize`` (the model step
every event already pays). Memory is what tracemalloc attributes to the profiles.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from typing import Any

from podtrail.config import BaselineConfig
from podtrail.detect.baseline.engine import Baselines
from podtrail.detect.baseline.normalize import _exec_items, normalize_path
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind

EXES, DESTS, PORTS, DIRS = 50, 20, 2, 10


def context(w: int, replica: int) -> dict[str, Any]:
    return {"cluster_name": "prod", "namespace": f"ns{w % 40}", "workload_kind": "Deployment", "workload_name": f"app{w}",
            "pod_name": f"app{w}-7d9f8c6b5-x{replica}x4z", "container_id": f"{w:032x}{replica:032x}", "container_name": "app",
            "image_digest": f"sha256:{w:064x}", "metadata_source": "api", "source": "ebpf", "pid": 4242, "uid": 1000}


def routine(w: int, replica: int) -> list[dict[str, Any]]:
    ctx = context(w, replica)
    evs = []
    for i in range(EXES):
        evs.append(new_event(Kind.PROCESS, "exec", path=f"/usr/local/lib/app{w}/bin/tool-{i}",
                             parent_path="/usr/local/bin/entrypoint" if i % 5 else "/bin/sh", **ctx))
    for i in range(DESTS):
        if i % 3 == 0:
            extra = {"remote_service": f"svc{i}", "remote_namespace": "shared"}
        elif i % 3 == 1:
            extra = {"remote_workload": f"Deployment/api{i}", "remote_namespace": f"ns{i}", "remote_pod": f"api{i}-x"}
        else:
            extra = {}
        evs.append(new_event(Kind.SOCKET, "connect", remote_address=f"203.0.113.{i}", remote_port=443 + i,
                             direction="outbound", family=2, transport="tcp", **extra, **ctx))
    for i in range(PORTS):
        evs.append(new_event(Kind.SOCKET, "listen", local_port=8080 + i, transport="tcp", direction="listening", **ctx))
    for i in range(DIRS):
        evs.append(new_event(Kind.FILE, "write", target_path=f"/var/lib/app/d{i}/tmp.aB3xZ9q{i}", **ctx))
    return evs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", type=int, default=1000)
    ap.add_argument("--events", type=int, default=200000)
    a = ap.parse_args()
    cfg = BaselineConfig(mode="learn", learn_seconds=1, min_events=0, max_items=512)
    gc.collect()
    tracemalloc.start()
    b = Baselines(cfg)
    before = tracemalloc.get_traced_memory()[0]
    for w in range(a.workloads):
        for ev in routine(w, 0):
            b.check(ev, 0.0)
    b.dirty.clear()
    gc.collect()
    with_caches = tracemalloc.get_traced_memory()[0] - before
    _exec_items.cache_clear()  # the node-wide path caches are bounded and not per profile
    normalize_path.cache_clear()
    gc.collect()
    mem = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    b.graduate(2.0)
    assert all(p.mode == "monitor" for p in b.profiles.values())
    counts = next(iter(b.profiles.values())).current.counts()

    rng = random.Random(7)
    pool: list[dict[str, Any]] = []
    for w in rng.sample(range(a.workloads), min(a.workloads, 200)):
        ctx = context(w, 1)  # the second replica: learned behaviour seen from another pod
        pool += routine(w, 1)
        pool += [new_event(Kind.PROCESS, "exit", path="/bin/sh", **ctx), new_event(Kind.PROCESS, "fork", path="/bin/sh", **ctx),
                 new_event(Kind.FILE, "read", target_path="/etc/hosts", **ctx)] * 10
    n_new = 0
    events = []
    for i in range(a.events):
        ev = rng.choice(pool)
        if i % 1000 == 0:  # 0.1 %: something new
            ev = dict(ev, event_type="process", action="exec", path=f"/tmp/new-{i}")
            n_new += 1
        events.append(ev)

    check, now = b.check, 3.0
    ns = time.perf_counter_ns
    times = []
    for ev in events:
        d = dict(ev)  # a fresh event, as the pipeline hands over one it just enriched (same as the reference)
        t = ns()
        check(d, now)
        times.append(ns() - t)
    ref = []
    for ev in events[:50000]:
        d = dict(ev)
        t = ns()
        finalize(d)
        ref.append(ns() - t)
    times.sort()
    p50, p99 = times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000
    mean = statistics.fmean(times) / 1000
    rp50 = sorted(ref)[len(ref) // 2] / 1000
    per = mem / a.workloads
    print(f"profiles: {a.workloads} workloads, each {counts}")
    print(f"memory: {mem / 1e6:.1f} MB in all, {per / 1024:.1f} KB per profile (goal <= 50 KB); "
          f"path caches (bounded, node-wide) {(with_caches - mem) / 1e6:.1f} MB more")
    print(f"check: {a.events} events ({n_new} new items), p50 {p50:.2f} us, p99 {p99:.2f} us, mean {mean:.2f} us (goal p50 <= 3 us)")
    print(f"reference finalize(): p50 {rp50:.2f} us; check/finalize p50 ratio {p50 / rp50:.2f}x")
    print(f"findings: {b.stats.findings}, repeats suppressed: {b.stats.suppressed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
