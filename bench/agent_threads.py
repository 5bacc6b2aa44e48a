"""Agent CPU per exec in an exec storm, by thread (kernel reader, pipeline, stdout writer...).

    .venv/bin/python -m bench.agent_threads [--execs 3000] [--rounds 3] [--other DIR] [--switch-interval S]

The real agent (`podtrail run --no-sockets --no-files`, in-agent Sigma and the osquery
buffers on as by default, JSON lines to a file) and a busybox fork+exec loop; CPU time (utime
+ stime from /proc/<pid>/task/*/stat) of each agent thread from just before the loop to one
second after it, divided by the execs. Thread names come from ``py-spy dump`` when py-spy is
found (``PY_SPY`` or ``/tmp/spy/bin/py-spy``), else threads are listed by id. With ``--other
DIR`` the same is run alternately from DIR (a folder whose ``podtrail`` is another version,
e.g. a link to main's), round by round, so load on a shared machine hits both alike. The
agent gets its own lock file and API socket, so another agent on the node does not stop it.
Voluntary context switches of the agent's threads per exec are reported too (each is a
thread going to sleep: a hand-over wake-up or a wait); ``--switch-interval`` runs the agent
with ``sys.setswitchinterval(S)`` (the GIL's; Python's default is 0.005).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            rest = Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[t] = (int(rest[11]) + int(rest[12])) / TICK
    return out


def _switches(pid: int) -> int:
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                n += sum(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
        except OSError:
            pass
    return n


def _names(pid: int) -> dict[str, str]:
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy") or "/tmp/spy/bin/py-spy"
    if not os.access(spy, os.X_OK):
        return {}
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r'Thread (\d+) \(\w+\): "([^"]+)"', dump)}


def one(root: str, execs: int, switch_interval: float | None = None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="podtrail-bench-threads-"))
    cfg = work / "agent.yaml"
    cfg.write_text(f"lock_file: {work}/agent.lock\nosquery:\n  api_socket: {work}/api.sock\n")
    out = work / "events.jsonl"
    with open(out, "wb") as f, open(work / "stderr.txt", "wb") as err:
        start = ["-m", "podtrail"] if switch_interval is None else \
            ["-c", f"import sys; sys.setswitchinterval({switch_interval!r}); from podtrail.cli import main; sys.exit(main(sys.argv[1:]))"]
        agent = subprocess.Popen([sys.executable, *start, "run", "-c", str(cfg), "--no-sockets", "--no-files",
                                  "--no-metrics"], cwd=root, stdout=f, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while b"bench-threads-warm" not in out.read_bytes():
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit(f"the agent did not start: {(work / 'stderr.txt').read_text()[-500:]}")
            subprocess.run(["/bin/busybox", "true", "bench-threads-warm"])
            time.sleep(0.3)
        time.sleep(1.0)
        names = _names(agent.pid)
        a = _threads(agent.pid)
        sw0 = _switches(agent.pid)
        t0 = time.perf_counter()
        subprocess.run(["/bin/busybox", "sh", "-c",
                        f"i=0; while [ $i -lt {execs} ]; do /bin/busybox true bench-threads; i=$((i+1)); done"], check=True)
        wall = time.perf_counter() - t0
        time.sleep(1.0)
        b = _threads(agent.pid)
        sw1 = _switches(agent.pid)
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(30)
    per: dict[str, float] = {}
    for t, c in b.items():
        name = names.get(t, f"thread {t}")
        per[name] = per.get(name, 0.0) + c - a.get(t, 0.0)
    seen = sum(1 for line in out.read_text().splitlines() if '"action":"exec"' in line and "bench-threads" in line)
    shutil.rmtree(work, ignore_errors=True)
    return {"root": root, "execs_per_s": round(execs / wall), "exec_events_seen": seen,
            "agent_us_per_exec": round(sum(per.values()) / execs * 1e6, 1),
            "voluntary_switches_per_exec": round((sw1 - sw0) / execs, 3),
            **({"switch_interval": switch_interval} if switch_interval is not None else {}),
            "by_thread_us_per_exec": {k: round(v / execs * 1e6, 1) for k, v in sorted(per.items(), key=lambda x: -x[1]) if v > 0},
            "load_average": round(os.getloadavg()[0], 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--other", help="a folder whose podtrail package is the version to compare with")
    ap.add_argument("--switch-interval", type=float, help="run the agent with sys.setswitchinterval(S)")
    a = ap.parse_args()
    roots = [os.getcwd()] + ([os.path.abspath(a.other)] if a.other else [])
    runs = [one(r, a.execs, a.switch_interval) for _ in range(a.rounds) for r in roots]
    best = {r: min((x for x in runs if x["root"] == r), key=lambda x: x["agent_us_per_exec"]) for r in roots}
    res: dict[str, Any] = {"runs": runs, "best": best}
    if a.other:
        res["ratio_this_over_other"] = round(best[roots[0]]["agent_us_per_exec"] / best[roots[1]]["agent_us_per_exec"], 3)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
