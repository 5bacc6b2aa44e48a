"""Exec storm: workload slowdown and agent CPU, no monitor vs podtrail vs auditd, one run.

    .venv/bin/python -m bench.exec_storm [--execs 6000] [--paced-seconds 10]

The workload is busybox sh forking and exec'ing the static /bin/busybox in a loop (about
2,000 execs/s per core here). podtrail runs as the real agent (`podtrail run`, eBPF process
sensor, process table, container stage, JSON lines to a file); auditd runs with one execve
rule. Prints slowdown ratios, agent CPU % of one core, events seen vs execs, and losses.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK  # utime + stime


def storm(n: int, marker: str) -> float:
    script = f'i=0; while [ $i -lt {n} ]; do /bin/busybox true {marker}; i=$((i+1)); done'
    t0 = time.perf_counter()
    subprocess.run(["/bin/busybox", "sh", "-c", script], check=True)
    return time.perf_counter() - t0


def paced(seconds: float, marker: str) -> int:
    """About 1,000 execs/s: one exec, then a 1 ms sleep (busybox usleep)."""
    n = int(seconds * 1000)
    script = f'i=0; while [ $i -lt {n} ]; do /bin/busybox true {marker}; /bin/busybox usleep 1; i=$((i+1)); done'
    subprocess.run(["/bin/busybox", "sh", "-c", script], check=True)
    return n


def with_podtrail(n: int, paced_s: float) -> dict[str, float]:
    out = tempfile.NamedTemporaryFile(prefix="podtrail-bench-", suffix=".jsonl", delete=False)
    agent = subprocess.Popen([sys.executable, "-m", "podtrail", "run", "--no-sockets", "--no-files", "--metrics-port", "9477"],
                             stdout=out, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # attached when its own warm-up exec shows up
            subprocess.run(["/bin/busybox", "true", "bench-warmup"])
            time.sleep(0.3)
            if b"bench-warmup" in Path(out.name).read_bytes():
                break
        c0 = cpu_s(agent.pid)
        wall = storm(n, "storm-pt")
        time.sleep(1.0)  # let the agent drain
        c1 = cpu_s(agent.pid)
        t0 = time.perf_counter()
        k = paced(paced_s, "paced-pt")
        paced_wall = time.perf_counter() - t0
        time.sleep(1.0)
        c2 = cpu_s(agent.pid)
        metrics = subprocess.run(["curl", "-s", "127.0.0.1:9477/metrics"], capture_output=True, text=True).stdout
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(30)
    seen = paced_seen = 0
    with open(out.name) as f:
        for line in f:
            if '"action":"exec"' in line and '"comm":"busybox"' in line:
                if "storm-pt" in line:
                    seen += 1
                elif '"cmdline":"/bin/busybox true paced-pt"' in line:
                    paced_seen += 1
    os.unlink(out.name)
    drops = {line.split("{", 1)[1].split("}", 1)[0]: float(line.split()[-1]) for line in metrics.splitlines()
             if line.startswith("podtrail_dropped_events_total{")}
    lost = sum(drops.values())
    return {"wall": wall, "cpu_storm": (c1 - c0) / (wall + 1.0), "seen": seen, "lost": lost, "drops": drops,
            "paced_rate": k / paced_wall, "cpu_paced": (c2 - c1) / (paced_wall + 1.0), "paced_seen": paced_seen, "paced_n": k}


def with_auditd(n: int) -> dict[str, float]:
    with open("/tmp/podtrail-auditd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        d = Path(tempfile.mkdtemp(prefix="podtrail-bench-auditd-"))
        log = d / "audit.log"
        (d / "auditd.conf").write_text(f"log_file = {log}\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 512\nmax_log_file_action = ROTATE\nspace_left = 2\nadmin_space_left = 1\ndisk_full_action = IGNORE\ndisk_error_action = IGNORE\n")
        os.chmod(d / "auditd.conf", 0o640)
        auditd = subprocess.Popen(["auditd", "-n", "-c", str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            subprocess.run(["auditctl", "-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "bench"], check=True, capture_output=True)
            c0 = cpu_s(auditd.pid)
            wall = storm(n, "storm-au")
            time.sleep(1.0)
            c1 = cpu_s(auditd.pid)
        finally:
            subprocess.run(["auditctl", "-D"], capture_output=True)
            auditd.send_signal(signal.SIGTERM)
            auditd.wait(30)
        seen = log.read_bytes().count(b"storm-au") if log.exists() else 0
        return {"wall": wall, "cpu_storm": (c1 - c0) / (wall + 1.0), "seen_records": seen}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=6000)
    ap.add_argument("--paced-seconds", type=float, default=10)
    a = ap.parse_args()
    storm(500, "warm")
    base = min(storm(a.execs, "storm-base") for _ in range(2))
    pt = with_podtrail(a.execs, a.paced_seconds)
    au = with_auditd(a.execs)
    base2 = storm(a.execs, "storm-base")
    base = min(base, base2)
    res = {
        "execs": a.execs,
        "baseline_execs_per_s": a.execs / base,
        "podtrail_slowdown_pct": (pt["wall"] / base - 1) * 100,
        "auditd_slowdown_pct": (au["wall"] / base - 1) * 100,
        "podtrail_cpu_pct_of_core_storm": pt["cpu_storm"] * 100,
        "podtrail_events_seen": pt["seen"],
        "podtrail_dropped": pt["lost"],
        "podtrail_drops_by_reason": pt["drops"],
        "paced_execs_per_s": pt["paced_rate"],
        "podtrail_cpu_pct_of_core_paced": pt["cpu_paced"] * 100,
        "paced_events_seen": pt["paced_seen"], "paced_execs": pt["paced_n"],
        "auditd_cpu_pct_of_core_storm": au["cpu_storm"] * 100,
    }
    res["slowdown_ratio_podtrail_over_auditd"] = res["podtrail_slowdown_pct"] / res["auditd_slowdown_pct"] if res["auditd_slowdown_pct"] > 0 else float("nan")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
