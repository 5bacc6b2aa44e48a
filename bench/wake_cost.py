"""What one wake-up of an agent thread costs on this machine: the process reader's idle step
(consume an empty ring buffer, start a generation, choose the next timeout), timed back to back
(warm) and once after each sleep of S ms (as a thread that woke up), in one process.

    .venv/bin/python -m bench wake_cost [--sleeps-ms 1,10,50,200,1000] [--n 20]

The ratio of a step after a sleep to a warm step is the price of waking up at all (caches and
branch state gone cold while the thread slept; on a VM, the vCPU's too). It is why the agent
wakes as little as it can (docs/process-sensor.md, "Wake-ups"): on this machine kind a wake-up
costs ~0.1-0.5 ms of CPU whatever little it then does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sleeps-ms", default="1,10,50,200,1000")
    ap.add_argument("--n", type=int, default=20, help="wake-ups timed per sleep")
    a = ap.parse_args()
    from podtrail.bpf.process import build_process_source
    from podtrail.config import SensorConfig

    src = build_process_source(SensorConfig())
    src._emit_batch = lambda evs: None  # type: ignore[assignment]
    src.load()
    try:
        def step() -> None:
            src._poll(0)
            src._timeout_ms()

        for _ in range(200):
            step()
        t0 = time.perf_counter()
        for _ in range(5000):
            step()
        warm = (time.perf_counter() - t0) / 5000 * 1e6
        after: dict[str, float] = {}
        for ms in (float(x) for x in a.sleeps_ms.split(",")):
            xs = []
            for _ in range(a.n):
                time.sleep(ms / 1000)
                t0 = time.perf_counter()
                step()
                xs.append((time.perf_counter() - t0) * 1e6)
            after[f"{ms:g}"] = statistics.median(xs)
    finally:
        src.close()
    print(json.dumps({"warm_us": round(warm, 2), "after_sleep_ms_us": {k: round(v, 1) for k, v in after.items()},
                      "ratio_after_sleep_over_warm": {k: round(v / warm, 1) for k, v in after.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
