"""Agent CPU and wake-ups per thread, idle and at a paced exec rate, against a reference.

    .venv/bin/python -m bench idle_wakeups --reference DIR [--rounds 3] [--seconds 15]
        [--rate 0] [--all-sensors]

The real agent (`podtrail run`, process sensor only unless ``--all-sensors``), started from
this checkout and from DIR (another checkout with its .venv) alternately, round by round. Five
seconds after it is ready, each thread's run time and time slices are read from
/proc/<pid>/task/<tid>/schedstat (nanoseconds, not clock ticks: an idle agent uses a few ms
a second) over ``--seconds``, idle or while ``--rate`` execs/s are spawned
(bench.exec_storm.paced). Prints each tree's median % of a core (and µs per exec with a
rate), the ratio, and per thread (by id, in start order: main, local API, pipeline, readers,
HTTP servers) the wake-ups per second and µs per wake-up of the
last round: a wake-up of an idle thread costs ~0.1-0.3 ms of CPU on this machine kind,
however little it finds, which is why the agent wakes as little as it can
(docs/process-sensor.md, "Wake-ups").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.exec_storm import paced, running_agent

HERE = Path(__file__).resolve().parent.parent


def _sched(pid: int) -> dict[str, tuple[str, int, int]]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            ns, _wait, slices = map(int, Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split())
        except OSError:
            continue
        out[tid] = (name, ns, slices)
    return out


def one(checkout: Path, seconds: float, rate: float, all_sensors: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        with running_agent(Path(d), checkout, str(checkout / ".venv/bin/python"), all_sensors) as (agent, _out, _port):
            time.sleep(5)
            a = _sched(agent.pid)
            n = paced(seconds, rate) if rate else 0
            if not rate:
                time.sleep(seconds)
            b = _sched(agent.pid)
    threads = {}
    total = 0
    for tid, (name, ns, sl) in b.items():
        if tid in a:
            dns, dsl = ns - a[tid][1], sl - a[tid][2]
            total += dns
            threads[f"{name}/{tid}"] = {"wakeups_per_s": round(dsl / seconds, 1),
                                        "us_per_wakeup": round(dns / max(1, dsl) / 1e3, 1),
                                        "pct_of_core": round(dns / seconds / 1e7, 3)}
    res: dict[str, object] = {"pct_of_core": total / seconds / 1e7, "threads": threads}
    if n:
        res["us_per_exec"] = total / n / 1e3
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, required=True, help="another checkout, with its .venv")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=0.0, help="execs/s while measuring (0: idle)")
    ap.add_argument("--all-sensors", action="store_true")
    a = ap.parse_args()
    ref = a.reference.resolve()
    if not (ref / ".venv/bin/python").exists():
        print(f"idle_wakeups: {ref} has no .venv/bin/python", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, object]]] = {"podtrail": [], "reference": []}
    for _ in range(a.rounds):
        runs["podtrail"].append(one(HERE, a.seconds, a.rate, a.all_sensors))
        runs["reference"].append(one(ref, a.seconds, a.rate, a.all_sensors))
    key = "us_per_exec" if a.rate else "pct_of_core"
    med = {k: statistics.median(float(r[key]) for r in v) for k, v in runs.items()}  # type: ignore[arg-type]
    print(json.dumps({
        "mode": f"{a.rate:g} execs/s" if a.rate else "idle", "all_sensors": a.all_sensors, "seconds": a.seconds,
        "measure": key,
        "podtrail_rounds": [round(float(r[key]), 3) for r in runs["podtrail"]],  # type: ignore[arg-type]
        "reference_rounds": [round(float(r[key]), 3) for r in runs["reference"]],  # type: ignore[arg-type]
        "podtrail_median": round(med["podtrail"], 3), "reference_median": round(med["reference"], 3),
        "ratio": round(med["podtrail"] / med["reference"], 3) if med["reference"] else None,
        "threads_last_round": {"podtrail": runs["podtrail"][-1]["threads"],
                               "reference": runs["reference"][-1]["threads"]},
        "load_average": os.getloadavg()[0],
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
