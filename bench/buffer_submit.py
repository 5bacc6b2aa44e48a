"""CPU per event of the osquery event buffers' write path (``EventBuffers.submit`` plus the
compaction into records, wherever it happens), this tree compacting in C (``tables/_compact.c``),
this tree compacting in Python (``native=False``, as under ``PODTRAIL_NATIVE=0``) and a
reference tree's buffer, in one run, over the per-stage profile's realistic stream.

    .venv/bin/python -m bench buffer_submit [--cycles 5000] [--rounds 5] [--keep 5000] [--ref /work/main]

The events are ``bench.stage_profile``'s stream (pods, shells forking curl with long command
lines, connections, file opens, exits) through decode, the real stages and finalize, 6 per
cycle. Each buffer takes them the way the pipeline hands them over: ``submit`` per event and,
where the buffer has it, ``end_batch`` after each batch of ``--batch`` events. Timed in thread
CPU (``thread_time_ns``), best of ``--rounds``:

- "cold": fresh buffers (the shapes' learning included);
- "warm": the same events again into buffers that already hold ``--keep`` events a kind and
  have seen them once (the steady state of a busy node: learned, full, one out per one in);
- for this tree also the submit calls alone and the compaction alone (``end_batch``);
- "interleaved": as in the agent, each batch of ``--batch`` events comes fresh out of decode,
  the real stages and finalize (untimed) and goes into the three buffers at once (which goes
  first rotates per batch), so the buffers meet events the stages just warmed, between other work;
- "full_gc_ms": one full collection (``gc.collect()``) with ``--full`` events a kind held, the
  events themselves gone (the C path's records are not tracked by the cycle collector).

The reference's ``podtrail/tables/buffer.py`` is loaded from ``--ref`` under another module
name (its metrics in a throwaway registry); both use this tree's event model.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench.stage_profile import enriched_events
from podtrail import metrics
from podtrail.tables import buffer as ours


def load_reference(tree: str) -> Any:
    """The reference tree's buffer module, as ``ref_buffer``."""
    path = Path(tree) / "podtrail" / "tables" / "buffer.py"
    spec = importlib.util.spec_from_file_location("ref_buffer", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    saved = metrics.REGISTRY
    metrics.REGISTRY = CollectorRegistry()  # its counters have the same names as ours
    try:
        spec.loader.exec_module(mod)
    finally:
        metrics.REGISTRY = saved
    return mod


def feed(b: Any, evs: list[Any], batch: int) -> None:
    submit = b.submit
    end = getattr(b, "end_batch", None)
    for i in range(0, len(evs), batch):
        for e in evs[i:i + batch]:
            submit(e)
        if end is not None:
            end()


def best(rounds: int, setup: Callable[[], Any], run: Callable[[Any], Any]) -> float:
    t = float("inf")
    for _ in range(rounds):
        b = setup()
        gc.collect()
        t0 = time.thread_time_ns()
        run(b)
        t = min(t, time.thread_time_ns() - t0)
    return t


def measure(cls: Any, evs: list[Any], rounds: int, keep: int, batch: int) -> dict[str, float]:
    n = len(evs)

    def fresh() -> Any:
        return cls(events_max=n + 1, expiry_s=10**9)

    def warmed() -> Any:
        b = cls(events_max=keep, expiry_s=10**9)
        feed(b, evs, batch)
        return b

    return {"cold_us": round(best(rounds, fresh, lambda b: feed(b, evs, batch)) / n / 1e3, 2),
            "warm_us": round(best(rounds, warmed, lambda b: feed(b, evs, batch)) / n / 1e3, 2)}


def split(cls: Any, evs: list[Any], rounds: int, keep: int) -> dict[str, float]:
    """This tree's warm cost in two parts: the submit calls, and the compaction they queued."""
    saved = ours._PENDING_MAX
    ours._PENDING_MAX = len(evs) + 1  # nothing compacts during the submits
    try:
        def warmed() -> Any:
            b = cls(events_max=keep, expiry_s=10**9)
            feed(b, evs, 1024)
            return b

        sub = comp = float("inf")
        for _ in range(rounds):
            b = warmed()
            gc.collect()
            t0 = time.thread_time_ns()
            for e in evs:
                b.submit(e)
            t1 = time.thread_time_ns()
            b.end_batch()
            t2 = time.thread_time_ns()
            sub, comp = min(sub, t1 - t0), min(comp, t2 - t1)
    finally:
        ours._PENDING_MAX = saved
    return {"submit_calls_us": round(sub / len(evs) / 1e3, 2), "compaction_us": round(comp / len(evs) / 1e3, 2)}


def interleaved(classes: dict[str, Any], cycles: int, batch: int, keep: int) -> dict[str, Any]:
    """µs per event of each buffer (submit + end_batch) on fresh batches out of the stages."""
    from bench.stage_profile import World, cycle, decode_items, through
    from podtrail.bpf.process import ProcessDecoder
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s.stage import K8sStage
    from podtrail.model.event import finalize
    from podtrail.procs.stage import ProcessStage

    world = World()
    dec = ProcessDecoder()
    stages: list[Any] = [ProcessStage(world.table), ContainerStage(world.index),
                         K8sStage(world.cache, None, cluster_name="prod-eu-1", node_name="node-1", labels=["app"])]
    names = list(classes)
    bufs = [cls(events_max=keep, expiry_s=10**9) for cls in classes.values()]
    spent = [0] * len(bufs)
    n = 0
    per = max(1, batch // 6)  # cycles per batch (6 events a cycle)
    for c0 in range(0, cycles, per):
        items = [item for c in range(c0, min(c0 + per, cycles)) for item in cycle(world, c)]
        evs = through(stages, decode_items(dec, items))
        for ev in evs:
            finalize(ev)
        n += len(evs)
        k = (c0 // per) % len(bufs)
        for j in [*range(k, len(bufs)), *range(k)]:
            b = bufs[j]
            t0 = time.thread_time_ns()
            feed(b, evs, len(evs))
            spent[j] += time.thread_time_ns() - t0
    return {"events": n, **{f"{name}_us": round(t / n / 1e3, 2) for name, t in zip(names, spent, strict=True)},
            **{f"{name}_over_c": round(t / spent[0], 2) for name, t in zip(names[1:], spent[1:], strict=True)}}


def full_gc_ms(cls: Any, cycles: int) -> float:
    """One full collection with ``cycles`` cycles' events held (50k a kind at 50,000 cycles)."""
    from bench.stage_profile import enriched_events
    b = cls(events_max=10**9, expiry_s=10**9)
    feed(b, [e for e in enriched_events(cycles) if e.get("event_type") != "alert"], 64)
    gc.collect()
    t0 = time.perf_counter()
    gc.collect()
    return round((time.perf_counter() - t0) * 1e3, 1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", type=int, default=5000, help="events a kind the warm buffers hold")
    ap.add_argument("--batch", type=int, default=64, help="events per pipeline batch (end_batch after each)")
    ap.add_argument("--ref", default="/work/main", help="reference tree")
    ap.add_argument("--full", type=int, default=0, help="also time a full gc with this many cycles' events held")
    a = ap.parse_args()
    if ours._C is None:
        raise SystemExit(f"buffer_submit: the C compaction is not loaded ({ours.native.missing()}); run `make native`")
    ref = load_reference(a.ref)
    c, py = ours.EventBuffers, functools.partial(ours.EventBuffers, native=False)
    mixed = interleaved({"c": c, "python": py, "reference": ref.EventBuffers}, a.cycles, a.batch, a.keep)  # no prebuilt events alive yet
    evs = [e for e in enriched_events(a.cycles) if e.get("event_type") != "alert"]
    here = measure(c, evs, a.rounds, a.keep, a.batch) | split(c, evs, a.rounds, a.keep)
    python = measure(py, evs, a.rounds, a.keep, a.batch) | split(py, evs, a.rounds, a.keep)
    there = measure(ref.EventBuffers, evs, a.rounds, a.keep, a.batch)
    b = c(events_max=len(evs) + 1, expiry_s=10**9)
    feed(b, evs, a.batch)
    out: dict[str, Any] = {
        "events": len(evs), "batch": a.batch, "keep": a.keep, "c": here, "python": python,
        "reference": there | {"tree": a.ref},
        "warm_python_over_c": round(python["warm_us"] / here["warm_us"], 2),
        "warm_reference_over_c": round(there["warm_us"] / here["warm_us"], 2),
        "cold_reference_over_c": round(there["cold_us"] / here["cold_us"], 2),
        "compaction_python_over_c": round(python["compaction_us"] / here["compaction_us"], 2),
        "general_path_share_cold": round(b.general / len(evs), 3),
        "interleaved": mixed}
    del evs, b
    if a.full:
        out["full_gc_ms"] = {"c": full_gc_ms(c, a.full), "python": full_gc_ms(py, a.full)}
    print(json.dumps(out | {"load_avg_1m": os.getloadavg()[0]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
