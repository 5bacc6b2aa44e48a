"""The agent's garbage-collector policy (``podtrail.agent.tune_gc``) against CPython's default,
in the real agent (`podtrail run`, eBPF process sensor, JSON lines to a file, the osquery
tables on) under a paced exec storm: agent µs of CPU per exec, the collector's own time
(``gc.callbacks``) by generation, and RSS over the storm. The two runs alternate; the same
checkout, only ``tune_gc`` differs (replaced by a no-op for "default").

    .venv/bin/python -m bench gc_storm [--seconds 60] [--rate 1000] [--rounds 1]

The sensor sees every process of the machine: on a shared machine the events per exec vary
between runs, so both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.exec_storm import HERE, cpu_s, free_port, paced

AGENT = r"""
import gc, json, sys, time, signal, atexit
policy = sys.argv[1]
stats = {"n": {}, "ns": {}}
t = [0]
def cb(phase, info):
    if phase == "start":
        t[0] = time.thread_time_ns()
    else:
        g = str(info["generation"])
        stats["n"][g] = stats["n"].get(g, 0) + 1
        stats["ns"][g] = stats["ns"].get(g, 0) + time.thread_time_ns() - t[0]
gc.callbacks.append(cb)
def reset(*a):
    stats["n"].clear(); stats["ns"].clear()
signal.signal(signal.SIGUSR1, reset)
def dump():
    import resource
    out = {"gc": stats, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           "threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
    sys.stderr.write("GCSTATS " + json.dumps(out) + "\n")
atexit.register(dump)
import podtrail.agent
if policy == "default":
    podtrail.agent.tune_gc = lambda: None
import runpy
sys.argv = ["podtrail"] + sys.argv[2:]
runpy.run_module("podtrail", run_name="__main__")
"""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(policy: str, seconds: float, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="podtrail-gc-") as d:
        priv = Path(d)
        out = priv / "out.jsonl"
        (priv / "agent.yaml").write_text(f"lock_file: {priv}/agent.lock\nosquery:\n  api_socket: {priv}/api.sock\n")
        cmd = [str(HERE / ".venv/bin/python"), "-c", AGENT, policy, "run", "-c", str(priv / "agent.yaml"),
               "--no-sockets", "--no-files", "--metrics-port", str(free_port()), "--health-port", str(free_port())]
        with open(out, "wb") as f:
            a = subprocess.Popen(cmd, cwd=str(HERE), stdout=f, stderr=subprocess.PIPE)
        try:
            for _ in range(100):
                subprocess.run(["/bin/busybox", "true", "bench-warmup"])
                time.sleep(0.3)
                if b"bench-warmup" in out.read_bytes():
                    break
            time.sleep(0.5)
            a.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            rss: list[int] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(5.0):
                    rss.append(rss_kb(a.pid))

            th = threading.Thread(target=sample, daemon=True)
            rss0, c0 = rss_kb(a.pid), cpu_s(a.pid)
            th.start()
            n = paced(seconds, rate)
            time.sleep(1.0)
            done.set()
            th.join()
            cpu = cpu_s(a.pid) - c0
            with open(out, "rb") as f:
                events = sum(1 for _ in f)
        finally:
            a.send_signal(signal.SIGINT)
            _, err = a.communicate(timeout=60)
    line = next((x for x in err.decode().splitlines() if x.startswith("GCSTATS ")), None)
    stats = json.loads(line[len("GCSTATS "):]) if line else {}
    gc_ns = sum(stats.get("gc", {}).get("ns", {}).values())
    return {
        "policy": policy, "execs": n, "events_written": events, "load": os.getloadavg()[0],
        "agent_us_per_exec": round(cpu / n * 1e6, 1),
        "gc_us_per_exec": round(gc_ns / n / 1e3, 2),
        "gc_collections": stats.get("gc", {}).get("n"),
        "gc_ms_by_generation": {g: round(v / 1e6, 1) for g, v in stats.get("gc", {}).get("ns", {}).items()},
        "rss_mb_start": round(rss0 / 1024, 1), "rss_mb_every_5s": [round(r / 1024, 1) for r in rss],
        "maxrss_mb": round(stats.get("maxrss_kb", 0) / 1024, 1), "threshold": stats.get("threshold"),
        "frozen_objects": stats.get("frozen"),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    results = []
    for _ in range(a.rounds):
        for policy in ("default", "tuned"):
            r = run(policy, a.seconds, a.rate)
            print(json.dumps(r), flush=True)
            results.append(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
