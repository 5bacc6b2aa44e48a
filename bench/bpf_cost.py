"""Kernel cost per exec of the eBPF sensors, per program and per sensor, from the kernel's own
per-program statistics; this checkout and another one alternating in one run; and, with
``--wall``, the part of the exec storm's slowdown that the kernel side alone causes.

    .venv/bin/python -m bench bpf_cost [--execs 3000] [--rounds 3] [--reference DIR]
        [--sensors process,socket,file] [--workload storm|spawn|dynamic] [--wall]

Each round loads the checkout's sensors in a fresh interpreter of that checkout, as
``podtrail run`` loads them by default (process, socket and file objects, the file sensor
with the shipped sensitive list and write prefixes, the shared drift map), starts their ring
readers draining every sample undecoded (so the ring never fills, and no decoder or agent
stage runs: about 3 µs of reader CPU per sample, on the other core), runs the workload, and reads ``run_time_ns``/``run_cnt`` of exactly its own programs
(their ids from ``/proc/self/fdinfo``) before and after, with ``kernel.bpf_stats_enabled``
switched on for the run and restored after (it is node-wide and costs ~2 clock reads per
program run itself). Workloads:

- ``storm``: exec_storm's loop, a busybox sh forking and exec'ing the static /bin/busybox;
- ``spawn``: posix_spawn of ``/bin/busybox true`` from Python;
- ``dynamic``: posix_spawn of the dynamically linked ``/bin/true`` (its loader opens and
  maps libraries: the file sensor's open path runs per exec).

Programs also run for whatever else the node does meanwhile (other workloads): ns per run is
robust to that, runs per exec are not on a busy machine; both are printed, and ns per exec is
their product summed. ``--wall`` then times the storm with no sensor, with this checkout's
sensors and with the reference's (same dropping readers), alternating, and prints the
slowdowns: the kernel side's share of exec_storm's slowdown (exec_storm's own figure adds the
agent's user-space work competing for the two cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
WORKLOADS = ("storm", "spawn", "dynamic")
ONCE_PER_EXEC = ("enter_execve", "exit_execve", "on_exec", "on_fork", "on_exit")
MIN_SHOWN_NS = 20  # programs below this many ns per exec are counted in the totals, not listed

MEASURE = r"""
import ctypes as ct, json, os, subprocess, sys, threading, time
from podtrail.bpf.libbpf import SharedMaps, lib
from podtrail.bpf.process import build_process_source
from podtrail.config import SensorConfig
n, workload, sensors, pages = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
cfg = SensorConfig()
if pages:
    cfg.ringbuf_pages = pages
cfg.sockets, cfg.files = "socket" in sensors, "file" in sensors
shared = SharedMaps()
srcs = {}
if "process" in sensors:
    srcs["process"] = build_process_source(cfg, None, shared)
if cfg.sockets or cfg.files:
    from podtrail.bpf.netfile import build_socket_file_sources
    for s in build_socket_file_sources(cfg, shared=shared):
        srcs["socket" if "socket" in s.name else "file"] = s
for s in srcs.values():
    s.load()
    s._decode = lambda raw: None  # drain only: no decode, so the reader costs the cores little
stop = threading.Event()
threads = [threading.Thread(target=s.run, args=(lambda e: None, stop)) for s in srcs.values()]
for t in threads:
    t.start()
fn = lib().c.bpf_program__fd; fn.restype, fn.argtypes = ct.c_int, [ct.c_void_p]
ids = {}
for sensor, s in srcs.items():
    for name, ph in s.obj.programs().items():
        fd = fn(ph)
        if fd >= 0:
            for line in open(f"/proc/self/fdinfo/{fd}"):
                if line.startswith("prog_id:"):
                    ids[int(line.split()[1])] = (sensor, name)
def stats():
    out = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True).stdout)
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in out if p["id"] in ids}
def storm(k):
    script = f"i=0; while [ $i -lt {k} ]; do /bin/busybox true bpf-cost; i=$((i+1)); done"
    subprocess.run(["/bin/busybox", "sh", "-c", script], check=True)
def spawn(k, argv):
    for _ in range(k):
        os.waitpid(os.posix_spawn(argv[0], argv, os.environ), 0)
def run(k):
    t0 = time.perf_counter()
    if workload == "storm":
        storm(k)
    else:
        spawn(k, ["/bin/busybox", "true", "bpf-cost"] if workload == "spawn" else ["/bin/true", "bpf-cost"])
    return time.perf_counter() - t0
run(50)
s0 = stats()
wall = run(n)
s1 = stats()
stop.set()
for t in threads:
    t.join()
for s in srcs.values():
    s.close()
per = {"/".join(ids[i]): (s1[i][0] - s0[i][0], s1[i][1] - s0[i][1]) for i in s1}
print(json.dumps({"wall": wall, "programs": {k: v for k, v in per.items() if v[1]}}))
"""


def measure(checkout: Path, execs: int, workload: str, sensors: str, pages: int = 0) -> dict[str, Any]:
    """One round in a fresh interpreter of ``checkout`` (its .venv and its built objects)."""
    out = subprocess.run([str(checkout / ".venv/bin/python"), "-c", MEASURE, str(execs), workload, sensors, str(pages)],
                         cwd=checkout, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bpf_cost: {checkout}: {out.stderr.strip()[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def summarize(rounds: list[dict[str, Any]], execs: int) -> dict[str, Any]:
    """Median over rounds of ns per run and runs per exec, per program; their product per exec,
    per program and per sensor."""
    names = sorted({p for r in rounds for p in r["programs"]})
    programs: dict[str, dict[str, float]] = {}
    for p in names:
        got = [r["programs"][p] for r in rounds if p in r["programs"]]
        ns_run = statistics.median(t / c for t, c in got)
        runs = statistics.median(c / execs for _, c in got)
        programs[p] = {"ns_per_run": round(ns_run), "min_ns_per_run": round(min(t / c for t, c in got)),
                       "runs_per_exec": round(runs, 2), "ns_per_exec": round(ns_run * runs)}
    # The process sensor's programs that run exactly once per exec of the workload: robust to
    # other execs on the node, which inflate runs per exec but not ns per run.
    once = [p for p in programs if p.split("/")[1] in ONCE_PER_EXEC]
    one_each = {"programs": [p.split("/")[1] for p in once],
                "median_ns": sum(round(programs[p]["ns_per_run"]) for p in once),
                "min_ns": sum(round(programs[p]["min_ns_per_run"]) for p in once)}
    sensors: dict[str, int] = {}
    for p, v in programs.items():
        sensors[p.split("/")[0]] = sensors.get(p.split("/")[0], 0) + int(v["ns_per_exec"])
    shown = {p: f"{v['ns_per_run']} ns (min {v['min_ns_per_run']}) x {v['runs_per_exec']} = {v['ns_per_exec']}"
             for p, v in programs.items()
             if v["ns_per_exec"] >= MIN_SHOWN_NS}
    return {"ns_per_exec_total": sum(sensors.values()), "by_sensor": sensors,
            "process_sensor_one_run_each (ns per exec, whatever else the node runs)": one_each,
            "by_program (ns per run x runs per exec = ns per exec)": shown,
            "ns_per_exec_rounds": [round(sum(t for t, _ in r["programs"].values()) / execs) for r in rounds]}


def wall_split(reference: Path | None, execs: int, rounds: int, sensors: str) -> dict[str, Any]:
    """Storm wall time with no sensor, this checkout's and the reference's, alternating; the
    slowdowns are against the fastest no-sensor round."""
    plain: list[float] = []
    runs: dict[str, list[float]] = {"this": [], **({"reference": []} if reference else {})}
    script = f"i=0; while [ $i -lt {execs} ]; do /bin/busybox true bpf-cost; i=$((i+1)); done"
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(["/bin/busybox", "sh", "-c", script], check=True)
        plain.append(time.perf_counter() - t0)
        for name, path in (("reference", reference), ("this", HERE)):
            if path is not None:
                runs[name].append(measure(path, execs, "storm", sensors)["wall"])
    base = min(plain)
    return {"execs": execs, "rounds": rounds, "baseline_execs_per_s": round(execs / base),
            **{f"{k}_slowdown_pct_min": round((min(v) / base - 1) * 100, 2) for k, v in runs.items()},
            **{f"{k}_slowdown_pct_median": round((statistics.median(v) / base - 1) * 100, 2) for k, v in runs.items()},
            "load_average": round(__import__("os").getloadavg()[0], 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference", type=Path, help="another checkout (with its .venv and built objects)")
    ap.add_argument("--sensors", default="process,socket,file", help="comma-separated: process, socket, file")
    ap.add_argument("--workload", choices=WORKLOADS, default="storm")
    ap.add_argument("--ringbuf-pages", type=int, default=0, help="ring buffer size in pages (default: the config's)")
    ap.add_argument("--wall", action="store_true", help="also time the storm with and without the sensors")
    a = ap.parse_args()
    if not set(a.sensors.split(",")) <= {"process", "socket", "file"}:
        ap.error("--sensors: a comma-separated subset of process, socket, file")
    checkouts = {"this": HERE, **({"reference": a.reference} if a.reference else {})}
    before = STATS.read_text().strip()
    STATS.write_text("1")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in checkouts}
    try:
        for _ in range(a.rounds):
            for name, path in reversed(checkouts.items()):
                runs[name].append(measure(path, a.execs, a.workload, a.sensors, a.ringbuf_pages))
    finally:
        STATS.write_text(before)
    res: dict[str, Any] = {"execs": a.execs, "rounds": a.rounds, "workload": a.workload, "sensors": a.sensors}
    for name, rs in runs.items():
        res[name] = summarize(rs, a.execs)
    if a.reference:
        res["ratio_this_over_reference"] = round(res["this"]["ns_per_exec_total"] / res["reference"]["ns_per_exec_total"], 3)
    if a.wall:
        res["wall"] = wall_split(a.reference, a.execs, a.rounds, a.sensors)
    res["load_average"] = round(__import__("os").getloadavg()[0], 2)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
