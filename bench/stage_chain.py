"""The agent's whole stage chain per event: the C chain (``_pipeline.Chain``) against the Python
chain it stands for (``Pipeline._outs``), in one process and one run.

    .venv/bin/python -m bench stage_chain [--rounds 7] [--batch 16] [--samples FILE]

The agent's stages and sinks as ``build_agent`` makes them without Kubernetes or baselines: the
process table (knowing the samples' parent), the container stage on the host's real cgroup
index, the Kubernetes stage without an API server, Sigma detection with the shipped rules, a
``StdoutSink`` writing to /dev/null and the osquery ``EventBuffers``. Raw ring-buffer samples
(``--samples``, a pickled list of bytes taken from the real agent; by default
/work/wt/prof/samples.pkl where it exists, else bench/delivery's made exec storm) are decoded
once; each round gives fresh stages a copy of the events, ``--batch`` at a time through
``Pipeline._run_batch`` (timed: every stage, finalize, the events counter and each sink's
submit) with the pipeline's end of batch after each (not timed: the sinks' writes and the
buffers' compaction, the same work either way). The agent's collector thresholds
(``agent.GC_THRESHOLDS``), one collection before each round. Thread CPU time; best and median
of ``--rounds``, alternating the two chains round by round.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_SAMPLES = Path("/work/wt/prof/samples.pkl")


def _events(path: Path | None) -> list[Any]:
    from podtrail.bpf.process import ProcessDecoder

    if path is not None and path.exists():
        raw = list(pickle.loads(path.read_bytes()))
    else:
        from bench.delivery import _samples

        raw = _samples(10000)
    dec = ProcessDecoder()
    return [e for e in map(dec.decode, raw) if e is not None]


def parents_table(evs: list[Any]) -> Any:
    """A process table without /proc fallback that knows the events' parents (a shell under
    init): their execs take the process stage's short path from the first one on."""
    from podtrail.procs.table import Proc, ProcessTable

    table = ProcessTable()
    table.proc_fallback = False
    top = table.by_pid[1] = Proc(1, 1, None, 0, "/sbin/init", "/sbin/init", "init", "/")
    for e in evs:
        ppid = e.get("ppid")
        if type(ppid) is int and ppid > 1 and ppid not in table.by_pid:
            table.by_pid[ppid] = Proc(ppid, 1, top, 1, "/bin/sh", "/bin/sh -c loop", "sh", "/")
    return table


def _pipeline(evs: list[Any]) -> tuple[Any, Any]:
    from podtrail import pipeline
    from podtrail.config import DetectionConfig, KubernetesConfig
    from podtrail.detect.stage import build_detect_stage
    from podtrail.enrich.cgroup_index import CgroupIndex
    from podtrail.enrich.container import ContainerStage
    from podtrail.enrich.k8s import build_k8s_stage
    from podtrail.outputs.stdout import StdoutSink
    from podtrail.procs.stage import ProcessStage
    from podtrail.tables.buffer import EventBuffers

    table = parents_table(evs)
    k8s, stop, _ = build_k8s_stage(KubernetesConfig(), "node-1")
    detect = build_detect_stage(DetectionConfig())
    assert detect is not None
    detect.detectors[0].engine  # noqa: B018 - compiled before the clock runs
    sink = StdoutSink(open(os.devnull, "w"), linger_s=0.02)  # noqa: SIM115 - /dev/null, for the benchmark's life
    p = pipeline.Pipeline([ProcessStage(table), ContainerStage(CgroupIndex()), k8s, detect], [sink, EventBuffers(50000, 1e9)])
    return p, stop


def measure(rounds: int, batch: int, samples: Path | None) -> dict[str, Any]:
    from podtrail.agent import GC_THRESHOLDS
    from podtrail.model.context import EventDict

    logging.disable(logging.WARNING)
    gc.set_threshold(*GC_THRESHOLDS)
    evs = _events(samples)
    res: dict[str, list[float]] = {"c_chain": [], "python_chain": []}
    clock = time.thread_time_ns
    for _ in range(rounds):
        for kind in res:
            p, stop = _pipeline(evs)
            first = p._fast if kind == "c_chain" else p._outs[0]
            if first is None:
                raise SystemExit("stage_chain: no C chain (the accelerator is not built, or PODTRAIL_NATIVE=0)")
            copies = [EventDict({k: list(v) if type(v) is list else v for k, v in e.items()}) for e in evs]
            gc.collect()  # the agent's collector policy (agent.tune_gc) from here on: a clean start per round
            warm = min(200, len(copies) // 10)
            p._run_batch(first, copies[:warm])
            p._end_batch()
            spent = 0
            for i in range(warm, len(copies), batch):
                t0 = clock()
                p._run_batch(first, copies[i:i + batch])
                spent += clock() - t0
                p._end_batch()
            res[kind].append(spent / (len(copies) - warm) / 1e3)
            stop()
    best = {k: min(v) for k, v in res.items()}
    med = {k: statistics.median(v) for k, v in res.items()}
    return {"events": len(evs), "batch": batch, "rounds": rounds,
            "us_per_event": {k: [round(x, 2) for x in v] for k, v in res.items()},
            "best_c_chain": round(best["c_chain"], 2), "best_python_chain": round(best["python_chain"], 2),
            "ratio_best": round(best["c_chain"] / best["python_chain"], 3),
            "ratio_median": round(med["c_chain"] / med["python_chain"], 3), "load_average": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    a = ap.parse_args()
    print(json.dumps(measure(a.rounds, a.batch, a.samples), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
