"""The process sensor's own cost inside the workload's syscalls: ns of BPF program run time
per exec (fork + exec + exit), from the kernel's per-program statistics, this checkout and
optionally another one alternating.

    .venv/bin/python -m bench exec_kernel_cost [--execs 3000] [--rounds 3] [--reference DIR]

The kernel counts each program's runs and run time while ``kernel.bpf_stats_enabled`` is 1
(switched on for the measurement and restored after: it is node-wide and costs a little
itself). Each round loads the checkout's process sensor in a fresh interpreter (its reader
running, as in the agent), posix_spawns ``/bin/busybox true`` ``--execs`` times, and sums the
run time of that object's programs (found by their ids in ``/proc/self/fdinfo``). Wall-clock
slowdowns are too noisy on a shared machine to show a few µs; this is not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")

MEASURE = r"""
import ctypes as ct, json, os, subprocess, sys, threading
from podtrail.bpf.libbpf import lib
from podtrail.bpf.process import build_process_source
from podtrail.config import SensorConfig
n = int(sys.argv[1])
src = build_process_source(SensorConfig()); src.load()
stop = threading.Event(); t = threading.Thread(target=src.run, args=(lambda e: None, stop)); t.start()
fn = lib().c.bpf_program__fd; fn.restype, fn.argtypes = ct.c_int, [ct.c_void_p]
ids = {}
for name, ph in src.obj.programs().items():
    fd = fn(ph)
    if fd >= 0:
        for line in open(f"/proc/self/fdinfo/{fd}"):
            if line.startswith("prog_id:"):
                ids[int(line.split()[1])] = name
def stats():
    out = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True).stdout)
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in out if p["id"] in ids}
s0 = stats()
argv = ["/bin/busybox", "true", "kernel-cost"]
for _ in range(n):
    os.waitpid(os.posix_spawn(argv[0], argv, os.environ), 0)
s1 = stats()
stop.set(); t.join(); src.close()
per = {ids[i]: (s1[i][0] - s0[i][0], s1[i][1] - s0[i][1]) for i in s1}
print(json.dumps({"ns_per_exec": sum(v[0] for v in per.values()) / n,
                  "ns_per_run": {k: round(v[0] / v[1]) for k, v in per.items() if v[1]}}))
"""


def measure(checkout: Path, execs: int) -> dict[str, object]:
    out = subprocess.run([str(checkout / ".venv/bin/python"), "-c", MEASURE, str(execs)], cwd=checkout,
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference", type=Path, help="another checkout (with its .venv and built objects)")
    a = ap.parse_args()
    checkouts = {"this": HERE, **({"reference": a.reference} if a.reference else {})}
    before = STATS.read_text().strip()
    STATS.write_text("1")
    runs: dict[str, list[dict[str, object]]] = {k: [] for k in checkouts}
    try:
        for _ in range(a.rounds):
            for name, path in reversed(checkouts.items()):
                runs[name].append(measure(path, a.execs))
    finally:
        STATS.write_text(before)
    res: dict[str, object] = {"execs": a.execs, "rounds": a.rounds}
    for name, rs in runs.items():
        per = [float(r["ns_per_exec"]) for r in rs]  # type: ignore[arg-type]
        res[f"{name}_ns_per_exec"] = [round(x) for x in per]
        res[f"{name}_median_ns_per_exec"] = statistics.median(per)
        res[f"{name}_ns_per_run"] = [r["ns_per_run"] for r in rs]
    if a.reference:
        res["ratio_this_over_reference"] = res["this_median_ns_per_exec"] / res["reference_median_ns_per_exec"]  # type: ignore[operator]
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
