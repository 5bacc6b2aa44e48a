"""Exec storm: workload slowdown and agent CPU, no monitor vs podtrail vs auditd, one run.

    .venv/bin/python -m bench exec_storm [--execs 6000] [--paced-seconds 10] [--paced-rate 1000]

The workload is busybox sh forking and exec'ing the static /bin/busybox in a loop (about
2,000 execs/s per core here). podtrail runs as the real agent (`podtrail run`, eBPF process
sensor, process table, container stage, JSON lines to a file); auditd runs with one execve
rule. Prints slowdown ratios, agent CPU % of one core, events seen vs execs, and losses.
Then a paced phase: ``--paced-rate`` execs/s of ``/bin/busybox true paced-pt`` only (one
posix_spawn per slot of a fixed schedule, nothing else exec'd), for the agent's µs of CPU per
exec and % of a core at the rate achieved; and the kernel-side reductions from the metrics.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK  # utime + stime


def storm(n: int, marker: str) -> float:
    script = f'i=0; while [ $i -lt {n} ]; do /bin/busybox true {marker}; i=$((i+1)); done'
    t0 = time.perf_counter()
    subprocess.run(["/bin/busybox", "sh", "-c", script], check=True)
    return time.perf_counter() - t0


PACED_CMD = ["/bin/busybox", "true", "paced-pt"]


def paced(seconds: float, rate: float = 1000.0) -> int:
    """``rate`` execs/s of ``PACED_CMD`` for ``seconds``: one posix_spawn (fork + exec + exit,
    three events for the agent) per slot of a fixed schedule, children reaped as they end.
    Only the measured command is exec'd (no sleep helper), so every exec counts; behind
    schedule it spawns at once and catches up, never faster than the schedule."""
    n = int(seconds * rate)
    t0 = time.perf_counter()
    live: deque[int] = deque()  # only our own children: the agent is a child of this process too
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        live.append(os.posix_spawn(PACED_CMD[0], PACED_CMD, os.environ))
        while live and os.waitpid(live[0], os.WNOHANG)[0]:
            live.popleft()
    for pid in live:
        os.waitpid(pid, 0)
    return n


def with_podtrail(n: int, paced_s: float, rate: float) -> dict[str, float]:
    out = tempfile.NamedTemporaryFile(prefix="podtrail-bench-", suffix=".jsonl", delete=False)
    # its own lock and API socket: another agent on the node (a test's) must not stop this one
    priv = Path(tempfile.mkdtemp(prefix="podtrail-bench-"))
    port = free_port()
    (priv / "agent.yaml").write_text(f"lock_file: {priv}/agent.lock\nosquery:\n  api_socket: {priv}/api.sock\n")
    agent = subprocess.Popen([sys.executable, "-m", "podtrail", "run", "-c", str(priv / "agent.yaml"), "--no-sockets",
                              "--no-files", "--metrics-port", str(port)], stdout=out, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # attached when its own warm-up exec shows up
            subprocess.run(["/bin/busybox", "true", "bench-warmup"])
            time.sleep(0.3)
            if b"bench-warmup" in Path(out.name).read_bytes():
                break
            if agent.poll() is not None:
                break
        if b"bench-warmup" not in Path(out.name).read_bytes():
            agent.kill()
            raise SystemExit(f"exec_storm: the agent never reported its warm-up exec:\n{agent.communicate()[1].decode()[-2000:]}")
        c0 = cpu_s(agent.pid)
        wall = storm(n, "storm-pt")
        time.sleep(1.0)  # let the agent drain
        c1 = cpu_s(agent.pid)
        t0 = time.perf_counter()
        k = paced(paced_s, rate)
        paced_wall = time.perf_counter() - t0
        time.sleep(1.0)
        c2 = cpu_s(agent.pid)
        metrics = subprocess.run(["curl", "-s", f"127.0.0.1:{port}/metrics"], capture_output=True, text=True).stdout
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(30)
    seen = paced_seen = 0
    with open(out.name) as f:
        for line in f:
            if '"action":"exec"' in line and '"comm":"busybox"' in line:
                if "storm-pt" in line:
                    seen += 1
                elif f'"cmdline":"{" ".join(PACED_CMD)}"' in line:
                    paced_seen += 1
    os.unlink(out.name)
    subprocess.run(["rm", "-rf", str(priv)], check=False)
    drops = {line.split("{", 1)[1].split("}", 1)[0]: float(line.split()[-1]) for line in metrics.splitlines()
             if line.startswith("podtrail_dropped_events_total{")}
    lost = sum(drops.values())
    reductions = {line.split("{", 1)[1].split("}", 1)[0]: float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("podtrail_kernel_reductions_total{")}
    return {"wall": wall, "cpu_storm": (c1 - c0) / (wall + 1.0), "seen": seen, "lost": lost, "drops": drops,
            "reductions": reductions,
            "cpu_us_per_exec_storm": (c1 - c0) / max(seen, 1) * 1e6, "cpu_us_per_exec_paced": (c2 - c1) / max(k, 1) * 1e6,
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
    ap.add_argument("--paced-rate", type=float, default=1000, help="execs/s of the paced phase")
    a = ap.parse_args()
    storm(500, "warm")
    base = min(storm(a.execs, "storm-base") for _ in range(2))
    pt = with_podtrail(a.execs, a.paced_seconds, a.paced_rate)
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
        "podtrail_kernel_reductions": pt["reductions"],
        "podtrail_cpu_us_per_exec_storm": pt["cpu_us_per_exec_storm"],
        "podtrail_cpu_us_per_exec_paced": pt["cpu_us_per_exec_paced"],
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
