"""The agent's garbage-collector policy (``podtrail.agent.tune_gc``) against CPython's default,
in the real agent (`podtrail run`, eBPF process sensor, JSON lines to a file, the osquery
tables on) under a paced exec storm: agent µs of CPU per exec, the collector's own time
(``gc.callbacks``) by generation, tracked objects over the storm, and RSS. The two runs
alternate; the same checkout, only ``tune_gc`` differs (replaced by a no-op for "default").

    .venv/bin/python -m bench gc_storm [--seconds 60] [--rate 1000] [--rounds 1]

With ``--reference CHECKOUT`` (issue 14, fifth pass: exited processes out of the collector) it
compares instead the real agent of another checkout (its own .venv, e.g. ``/work/main``) and of
this one, both with their own policy, alternating round by round:

    .venv/bin/python -m bench gc_storm --reference /work/main --seconds 40 --rounds 2

Tracked objects (``len(gc.get_objects())``, frozen ones not counted) are sampled in the agent
every ``--sample-every`` seconds of the storm; the sampling's own CPU is taken out of the
agent's. After the storm the agent times one full collection (what the next full one costs,
outside the figures). The sensor sees every process of the machine: on a shared machine the events per
exec vary between runs, so both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
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
tracked = []
def reset(*a):
    stats["n"].clear(); stats["ns"].clear(); tracked.clear()
signal.signal(signal.SIGUSR1, reset)
def dump(why="exit"):
    import resource
    out = {"gc": stats, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           "threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(), "tracked": tracked, "why": why}
    try:
        sys.stderr.write("GCSTATS " + json.dumps(out) + "\n")
        sys.stderr.flush()
    except RuntimeError:  # a reentrant write (the main thread was writing): the next one counts
        pass
def sample(*a):
    t0 = time.thread_time_ns()
    n = len(gc.get_objects())
    tracked.append([time.monotonic(), n, time.thread_time_ns() - t0])
    dump("sample")  # the figures so far: the last one is the storm's end (the stop is not counted)
signal.signal(signal.SIGUSR2, sample)
def full(*a):  # one full collection, timed: what the next one would cost at this point
    t0 = time.perf_counter()
    gc.collect()
    sys.stderr.write("FULLGC %.2f\n" % ((time.perf_counter() - t0) * 1e3))
signal.signal(signal.SIGWINCH, full)
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


def run(policy: str, seconds: float, rate: float, checkout: Path = HERE, sample_every: float = 10.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="podtrail-gc-") as d:
        priv = Path(d)
        out = priv / "out.jsonl"
        (priv / "agent.yaml").write_text(f"lock_file: {priv}/agent.lock\nosquery:\n  api_socket: {priv}/api.sock\n")
        cmd = [str(checkout / ".venv/bin/python"), "-c", AGENT, policy, "run", "-c", str(priv / "agent.yaml"),
               "--no-sockets", "--no-files", "--metrics-port", str(free_port()), "--health-port", str(free_port())]
        with open(out, "wb") as f:
            a = subprocess.Popen(cmd, cwd=str(checkout), stdout=f, stderr=subprocess.PIPE)
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
                next_count = time.monotonic() + sample_every
                while not done.wait(5.0):
                    rss.append(rss_kb(a.pid))
                    if time.monotonic() >= next_count - 0.1:
                        a.send_signal(signal.SIGUSR2)
                        next_count += sample_every

            th = threading.Thread(target=sample, daemon=True)
            a.send_signal(signal.SIGUSR2)  # tracked objects at the start of the storm
            time.sleep(0.2)
            rss0, c0 = rss_kb(a.pid), cpu_s(a.pid)
            th.start()
            n = paced(seconds, rate)
            time.sleep(1.0)
            done.set()
            th.join()
            a.send_signal(signal.SIGUSR2)  # and at its end
            time.sleep(0.5)
            cpu = cpu_s(a.pid) - c0
            a.send_signal(signal.SIGWINCH)  # then one full collection, timed (not in the figures above)
            time.sleep(1.0)
            with open(out, "rb") as lines:
                events = sum(1 for _ in lines)
        finally:
            a.send_signal(signal.SIGINT)
            try:
                _, err = a.communicate(timeout=60)
                hung = False
            except subprocess.TimeoutExpired:  # (main before daf6d6e could deadlock in its SIGINT handler)
                a.kill()
                _, err = a.communicate()
                hung = True
    line = next((x for x in reversed(err.decode().splitlines()) if x.startswith("GCSTATS ") and '"why": "sample"' in x), None)
    full_ms = next((float(x.split()[1]) for x in err.decode().splitlines() if x.startswith("FULLGC ")), None)
    stats = json.loads(line[len("GCSTATS "):]) if line else {}
    gc_ns = sum(stats.get("gc", {}).get("ns", {}).values())
    tracked = stats.get("tracked", [])
    t0 = tracked[0][0] if tracked else 0.0
    sampling_s = sum(x[2] for x in tracked[1:]) / 1e9  # the counts' own CPU, inside the measured span
    return {
        "policy": policy, "checkout": str(checkout), "execs": n, "events_written": events,
        "load": os.getloadavg()[0],
        "agent_us_per_exec": round((cpu - sampling_s) / n * 1e6, 1),
        "agent_us_per_event": round((cpu - sampling_s) / max(events, 1) * 1e6, 2),  # (other sessions' execs vary)
        "tracked_objects": [[round(x[0] - t0), x[1]] for x in tracked],
        "tracked_growth_per_exec": round((tracked[-1][1] - tracked[0][1]) / n, 3) if len(tracked) > 1 else None,
        "gc_us_per_exec": round(gc_ns / n / 1e3, 2),
        "gc_collections": stats.get("gc", {}).get("n"),
        "gc_ms_by_generation": {g: round(v / 1e6, 1) for g, v in stats.get("gc", {}).get("ns", {}).items()},
        "rss_mb_start": round(rss0 / 1024, 1), "rss_mb_every_5s": [round(r / 1024, 1) for r in rss],
        "maxrss_mb": round(stats.get("maxrss_kb", 0) / 1024, 1), "threshold": stats.get("threshold"),
        "frozen_objects": stats.get("frozen"),
        "full_collection_ms_at_end": full_ms,
        **({"stop": "hung after SIGINT, killed (figures from the last sample)"} if hung else {}),
    }


def summary(results: list[dict[str, Any]], names: tuple[str, str]) -> dict[str, Any]:
    """Medians per side (``names``: (before, after)) and the ratios after / before."""
    keys = ("agent_us_per_exec", "agent_us_per_event", "gc_us_per_exec", "tracked_growth_per_exec")
    out: dict[str, Any] = {}
    for name in names:
        rs = [r for r in results if r["side"] == name]
        out[name] = {k: round(statistics.median([r[k] for r in rs if r[k] is not None] or [0.0]), 3) for k in keys}
        out[name]["tracked_at_end"] = [r["tracked_objects"][-1][1] if r["tracked_objects"] else None for r in rs]
        out[name]["gc_collections"] = [r["gc_collections"] for r in rs]
        out[name]["full_collection_ms_at_end"] = [r["full_collection_ms_at_end"] for r in rs]
    a, b = out[names[0]], out[names[1]]
    out[f"ratio ({names[1]} / {names[0]})"] = {k: round(b[k] / a[k], 3) if a[k] else None for k in keys}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--reference", type=Path, help="another checkout (its own .venv): its agent against this one's")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between counts of tracked objects")
    a = ap.parse_args()
    if a.reference is not None and not (a.reference / ".venv/bin/python").exists():
        ap.error(f"--reference {a.reference}: no .venv/bin/python there (run `make setup` in it)")
    sides: list[tuple[str, str, Path]] = (
        [("reference", "tuned", a.reference.resolve()), ("this", "tuned", HERE)] if a.reference is not None
        else [("default", "default", HERE), ("tuned", "tuned", HERE)])
    results = []
    for _ in range(a.rounds):
        for side, policy, checkout in sides:
            r = {"side": side, **run(policy, a.seconds, a.rate, checkout, a.sample_every)}
            print(json.dumps(r), flush=True)
            results.append(r)
    print(json.dumps(summary(results, (sides[0][0], sides[1][0])), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
