"""Per-stage CPU of the real agent at 1,000 execs/s: where the agent's µs per exec go.

    .venv/bin/python -m bench agent_stages [--checkout DIR] [--seconds 10] [--rate 1000]

``bench.stage_profile`` times the stages in a tight loop, which runs each stage about twice as
fast as the agent does between execs (the event, the table and a new process's objects are cold
then). This runs ``podtrail run`` of ``--checkout`` (default: this one) as ``exec_storm`` does,
with each stage's method wrapped in a thread-CPU timer (``time.thread_time_ns``: about 1 µs per
wrapped call is the timer itself), paces ``--rate`` execs/s of ``/bin/busybox true`` and prints
the agent's µs of CPU per exec (unwrapped figure: ``exec_storm``) and, per wrapped call,
inclusive µs. Wrappers nest (a stage's ``process`` includes the stages after it); a method
the checkout does not have is skipped. Run it against two checkouts one after the other to see
which stage a change moved.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.exec_storm import HERE, cpu_s, free_port, paced

# (module, class or "" for a module function, attribute, label)
WRAPPED = (
    ("podtrail.bpf.libbpf", "RingBuffer", "consume", "ring consume: callback + decode + hand-over (per consume)"),
    ("podtrail.bpf.runtime", "RingReader", "_take", "ring batch: Python decode of what C left + hand-over"),
    ("podtrail.bpf.runtime", "RingReader", "_deliver", "ring sample: decode + hand-over"),
    ("podtrail.bpf.process", "ProcessDecoder", "decode", "decode"),
    ("podtrail.bpf.process", "ProcessSource", "sweep", "held-fork sweep (map walks)"),
    ("podtrail.procs.stage", "ProcessStage", "apply", "process table"),
    ("podtrail.enrich.container", "ContainerStage", "apply", "container"),
    ("podtrail.enrich.k8s.stage", "K8sStage", "process", "k8s and everything after it"),
    ("podtrail.detect.stage", "DetectStage", "process", "detect and everything after it"),
    ("podtrail.outputs.stdout", "StdoutSink", "submit", "stdout JSON line"),
    ("podtrail.outputs.stdout", "StdoutSink", "end_batch", "stdout write (per batch)"),
    ("podtrail.tables.buffer", "EventBuffers", "submit", "buffers submit"),
    ("podtrail.tables.buffer", "EventBuffers", "end_batch", "buffers compaction (per batch)"),
    ("podtrail.pipeline", "Pipeline", "_run_batch", "stage chain, whole batch (with the C chain: all of it)"),
    ("podtrail.pipeline", "Pipeline", "emit", "pipeline hand-over"),
    ("podtrail.pipeline", "Pipeline", "emit_batch", "pipeline hand-over (per batch)"),
)

# Run inside the agent before podtrail's __main__: wraps WRAPPED, times the collector, and
# writes the totals as JSON to the file named by the first argument at exit; SIGUSR1 resets.
AGENT_PRELUDE = r"""
import atexit, gc, importlib, json, signal, sys, time
out_path, wrapped = sys.argv[1], json.loads(sys.argv[2])
T, N, clock = {}, {}, time.thread_time_ns
def wrap(owner, attr, label):
    f = getattr(owner, attr)
    def timed(*a, **k):
        t0 = clock()
        try:
            return f(*a, **k)
        finally:
            T[label] = T.get(label, 0) + clock() - t0
            N[label] = N.get(label, 0) + 1
    setattr(owner, attr, timed)
for mod, cls, attr, label in wrapped:
    try:
        m = importlib.import_module(mod)
        owner = getattr(m, cls) if cls else m
        if hasattr(owner, attr):
            wrap(owner, attr, label)
    except Exception:
        pass
gc_t = {}
def on_gc(phase, info):
    if phase == "start":
        gc_t["t0"] = time.perf_counter_ns()
    else:
        T["gc (wall)"] = T.get("gc (wall)", 0) + time.perf_counter_ns() - gc_t.get("t0", time.perf_counter_ns())
        N["gc (wall)"] = N.get("gc (wall)", 0) + 1
gc.callbacks.append(on_gc)
signal.signal(signal.SIGUSR1, lambda *_: (T.clear(), N.clear()))
atexit.register(lambda: open(out_path, "w").write(json.dumps({"ns": T, "calls": N})))
sys.argv = ["podtrail", *sys.argv[3:]]
import runpy
runpy.run_module("podtrail", run_name="__main__")
"""


def measure(checkout: Path, seconds: float, rate: float, only: list[str] | None = None,
            env: dict[str, str] | None = None) -> dict[str, object]:
    wrapped = [w for w in WRAPPED if not only or any(o in w[3] for o in only)]
    with tempfile.TemporaryDirectory(prefix="podtrail-bench-") as d:
        priv = Path(d)
        out, totals = priv / "out.jsonl", priv / "stages.json"
        (priv / "agent.yaml").write_text(f"lock_file: {priv}/agent.lock\nosquery:\n  api_socket: {priv}/api.sock\n")
        argv = ["run", "-c", str(priv / "agent.yaml"), "--no-sockets", "--no-files",
                "--metrics-port", str(free_port()), "--health-port", str(free_port())]
        with open(out, "wb") as f:
            agent = subprocess.Popen([str(checkout / ".venv/bin/python"), "-c", AGENT_PRELUDE, str(totals),
                                      json.dumps(wrapped), *argv], cwd=checkout, stdout=f, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})})
        try:
            for _ in range(200):
                subprocess.run(["/bin/busybox", "true", "bench-warmup"], check=False)
                time.sleep(0.3)
                if b"bench-warmup" in out.read_bytes() or agent.poll() is not None:
                    break
            if b"bench-warmup" not in out.read_bytes():
                agent.kill()
                raise SystemExit(f"agent_stages: the agent never reported its warm-up exec:\n"
                                 f"{agent.communicate()[1].decode()[-2000:]}")
            time.sleep(0.5)
            agent.send_signal(signal.SIGUSR1)  # start counting now
            time.sleep(0.2)
            c0 = cpu_s(agent.pid)
            n = paced(seconds, rate)
            time.sleep(1.0)
            us_per_exec = (cpu_s(agent.pid) - c0) / n * 1e6
        finally:
            agent.send_signal(signal.SIGINT)
            agent.wait(30)
        data = json.loads(totals.read_text())
    ns, calls = data["ns"], data["calls"]
    stages = {k: {"calls": calls[k], "us_per_call": round(ns[k] / calls[k] / 1e3, 2), "us_per_exec": round(ns[k] / n / 1e3, 1)}
              for k in sorted(ns, key=lambda k: -ns[k])}
    return {"checkout": str(checkout), "env": env or {}, "execs": n, "agent_cpu_us_per_exec_timed": round(us_per_exec, 1),
            "load_average": os.getloadavg()[0], "stages": stages}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", type=Path, default=HERE, help="a checkout with its .venv and built BPF objects")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--only", action="append", help="wrap only the stages whose label contains this (repeatable): "
                    "fewer timers, e.g. --only 'ring consume' for the ring path alone")
    ap.add_argument("--native-off", action="store_true", help="run the agent with PODTRAIL_NATIVE=0")
    a = ap.parse_args()
    env = {"PODTRAIL_NATIVE": "0"} if a.native_off else None
    print(json.dumps(measure(a.checkout.resolve(), a.seconds, a.rate, a.only, env), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
