"""Start to first event: from launching `podtrail run` to the first exec event on its output.

    .venv/bin/python -m bench.start_latency [--rounds 5] [--reference /work/main]

Measures this checkout's agent (CO-RE process sensor: a compiled object loaded by libbpf)
and, with ``--reference``, another checkout's agent in the same run, alternating round by
round (the BCC build: clang compiles the program at every start). Both run with
``--no-sockets --no-files --no-metrics``; the probe is a ``busybox true <marker>`` exec every
10 ms, and the time is taken when the first marker line appears in the agent's output.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def first_event_s(checkout: Path, python: str, marker: str, timeout: float = 120.0) -> float:
    out = tempfile.NamedTemporaryFile(prefix="podtrail-start-", suffix=".jsonl", delete=False)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    agent = subprocess.Popen([python, "-m", "podtrail", "run", "--no-sockets", "--no-files", "--no-metrics"],
                             cwd=checkout, stdout=out, stderr=subprocess.DEVNULL, env=env)
    try:
        path = Path(out.name)
        while time.perf_counter() - t0 < timeout:
            subprocess.run(["/bin/busybox", "true", marker])
            if marker.encode() in path.read_bytes():
                return time.perf_counter() - t0
            if agent.poll() is not None:
                raise RuntimeError(f"agent in {checkout} exited with {agent.returncode}")
            time.sleep(0.01)
        raise RuntimeError(f"no event from {checkout} within {timeout} s")
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
        os.unlink(out.name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reference", type=Path, help="another checkout (its .venv) to time in the same run")
    a = ap.parse_args()
    variants = {"core": (HERE, sys.executable)}
    if a.reference:
        variants["reference"] = (a.reference, str(a.reference / ".venv/bin/python"))
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(a.rounds):
        for name, (checkout, py) in variants.items():
            times[name].append(first_event_s(checkout, py, f"start-{name}-{r}-{os.getpid()}"))
    res: dict[str, object] = {"rounds": a.rounds}
    for name, ts in times.items():
        res[f"{name}_median_s"] = statistics.median(ts)
        res[f"{name}_all_s"] = [round(t, 3) for t in ts]
    if a.reference:
        res["ratio_core_over_reference"] = statistics.median(times["core"]) / statistics.median(times["reference"])
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
