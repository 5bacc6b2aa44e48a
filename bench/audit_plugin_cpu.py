"""Agent CPU at 1,000 execs/s through the auditd plugin, next to auditd's own CPU.

    .venv/bin/python -m bench audit_plugin_cpu [--seconds 8] [--rate 1000]

A real auditd with an execve rule starts podtrail as its plugin (string format on stdin,
JSON lines to a file, counted afterwards: every exec must come out). The driver paces execs
itself: one ``posix_spawn`` of ``/bin/busybox true`` (one execve each, no shell) per slot of
an absolute 1/rate schedule, catching up without sleeping when it falls behind, and reaps
the children as it goes. (A shell loop with ``usleep`` is unpaced and is two execs per
iteration: the sleep is an exec too.) CPU is utime + stime of the auditd and podtrail
processes over the paced window and until podtrail has written every paced exec; reported as µs per exec and as
% of a core at the rate reached.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "audit")]

from real_auditd import audit_status, real_auditd  # noqa: E402

BUSYBOX = "/bin/busybox"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float, int]:
    """(user s, system s, context switches) of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:
            pass  # a thread that ended
    return int(rest[11]) / TICK, int(rest[12]) / TICK, switches


def paced_execs(rate: float, seconds: float, marker: str) -> tuple[int, float]:
    """Spawn ``rate`` execs per second for ``seconds``; (execs, wall seconds)."""
    n = int(rate * seconds)
    argv = [BUSYBOX, "true", marker]
    env: dict[str, str] = {}
    live = 0
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        os.posix_spawn(BUSYBOX, argv, env)
        live += 1
        while live:  # reap what has exited, without waiting
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            live -= 1
    wall = time.monotonic() - t0
    while live:
        os.waitpid(-1, 0)
        live -= 1
    return n, wall


def wait_for_events(out: Path, marker: str, n: int, quiet_s: float = 3.0) -> bool:
    """Wait until ``out`` holds ``n`` events with ``marker`` (True), or has not grown for ``quiet_s``."""
    last, still = -1, time.monotonic()
    while True:
        with open(out, "rb") as f:
            m = marker.encode()
            got = sum(1 for line in f if m in line)  # one exec, one line (argv and cmdline both carry it)
        if got >= n:
            return True
        if got != last:
            last, still = got, time.monotonic()
        elif time.monotonic() - still > quiet_s:
            return False
        time.sleep(0.25)


def detached_paced_execs(rate: float, seconds: float, marker: str) -> tuple[int, float]:
    """``paced_execs`` in a grandchild that init adopts (double fork): the execs' ancestry is
    then the driver and init, as for a daemon on a node, not this machine's tool chain (whose
    ancestors carry long command lines the process table truncates with a non-ASCII "…",
    which sends every event to the stdlib JSON path)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: fork the driver and leave at once
        try:
            if os.fork() == 0:
                os.close(r)
                n, wall = paced_execs(rate, seconds, marker)
                os.write(w, f"{n} {wall}".encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        n_s, wall_s = f.read().split()
    return int(n_s), float(wall_s)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rate", type=float, default=1000, help="execs per second to pace")
    ap.add_argument("--log-format", default="ENRICHED", choices=("ENRICHED", "RAW"), help="auditd.conf log_format")
    ap.add_argument("--no-write-logs", action="store_true", help="auditd.conf write_logs = no (podtrail is the only consumer)")
    ap.add_argument("--q-depth", type=int, default=20000,
                    help="auditd.conf q_depth, as deploy/auditd/plugins.d/podtrail.conf advises (0: auditd's default 2000, "
                         "which lost records here)")
    ap.add_argument("--root", default=str(ROOT), help="the folder whose podtrail package runs as the plugin "
                    "(another version, to compare: run alternately)")
    ap.add_argument("--py-spy", metavar="OUT", help="also profile the agent with py-spy (raw folded stacks to OUT)")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="podtrail-bench-plugin-"))
    out = d / "events.jsonl"
    wrapper = d / "plugin"
    cfg = d / "podtrail.yaml"
    # the tables' API socket is not what is measured; the lock and spool are its own (another agent may run here)
    cfg.write_text(f'osquery:\n  api_socket: ""\nlock_file: {d}/agent.lock\nspool_dir: {d}/spool\n')
    wrapper.write_text(f"#!/bin/sh\necho $$ > {d}/plugin.pid\ncd {a.root}\nexec {sys.executable} -m podtrail run -c {cfg} --source auditd "
                       f"--audit-input plugin --no-metrics --no-sockets --no-files >{out} 2>{d}/plugin.err\n")
    wrapper.chmod(0o755)
    plugins = d / "plugins.d"
    plugins.mkdir()
    (plugins / "podtrail.conf").write_text(f"active = yes\ndirection = out\npath = {wrapper}\ntype = always\nformat = string\n")
    os.chmod(plugins / "podtrail.conf", 0o640)
    # the kernel's backlog as deploy/auditd/podtrail.rules sets it (the default 64 loses records in bursts)
    rules = [["-b", "8192"], ["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat", "-k", "exec"]]
    marker = f"podtrail-bench-{os.getpid()}"
    with real_auditd(d / "ad", rules, plugin_dir=plugins, log_format=a.log_format, write_logs=not a.no_write_logs,
                     extra_conf=f"q_depth = {a.q_depth}\n" if a.q_depth else ""):
        deadline = time.monotonic() + 30
        while not (d / "plugin.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # the agent's start-up is not the steady state measured
        auditd = int(subprocess.run(["pgrep", "-x", "auditd"], capture_output=True, text=True).stdout.split()[0])
        plugin = int((d / "plugin.pid").read_text())  # the wrapper exec'd the agent: same pid
        load = os.getloadavg()
        spy = None
        if a.py_spy:
            spy = subprocess.Popen(["/tmp/spy/bin/py-spy", "record", "--gil", "-f", "raw", "-r", "200", "-o", a.py_spy, "-p", str(plugin),
                                    "-d", str(int(a.seconds + 2))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        a0, s0 = sum(cpu_split(auditd)[:2]), cpu_split(plugin)
        lost0 = int(audit_status().get("lost", "0"))
        w0 = time.time()
        n, wall = detached_paced_execs(a.rate, a.seconds, marker)
        w1 = time.time()
        caught_up = wait_for_events(out, marker, n)  # CPU is taken once podtrail has written them all
        drain = time.time() - w1
        lost = int(audit_status().get("lost", "0")) - lost0
        a1, s1 = sum(cpu_split(auditd)[:2]), cpu_split(plugin)
        p0, p1 = s0[0] + s0[1], s1[0] + s1[1]
        if spy:
            spy.wait(30)
    evs = [json.loads(line) for line in out.read_text(errors="replace").splitlines() if line.startswith("{")]
    seen = sum(1 for e in evs if marker in e.get("cmdline", ""))
    # a successful exec always has its EXECVE record: without argv it was cut from it (failed ones have none)
    split = sum(1 for e in evs if e.get("action") == "exec" and e.get("result") == 0 and not e.get("argv"))
    # every exec on the machine in the window reaches auditd and podtrail, not only ours
    stamps = [e.get("time_ns", 0) / 1e9 for e in evs if e.get("action") == "exec"]
    in_window = sum(1 for t in stamps if w0 <= t <= w1 + drain)  # the CPU window: paced execs, then the drain
    rate = n / wall
    rate_all = sum(1 for t in stamps if w0 <= t <= w1) / wall  # every process's execs while paced
    window = wall + drain
    res = {
        "auditd": f"log_format={a.log_format} write_logs={'no' if a.no_write_logs else 'yes'} q_depth={a.q_depth or 'default'}",
        "target_execs_per_s": a.rate, "execs": n, "execs_per_s": round(rate, 1), "all_execs_per_s": round(rate_all, 1),
        "events_out": seen, "all_out_before_cpu_taken": caught_up, "execs_without_argv": split, "drain_s": round(drain, 2), "kernel_lost_records": lost,
        "exec_events_in_window_all_processes": in_window, "loadavg_before": load,
        "podtrail_cpu_us_per_exec": round(1e6 * (p1 - p0) / in_window, 1),
        "auditd_cpu_us_per_exec": round(1e6 * (a1 - a0) / in_window, 1),
    }
    res["podtrail_user_us_per_exec"] = round(1e6 * (s1[0] - s0[0]) / in_window, 1)
    res["podtrail_system_us_per_exec"] = round(1e6 * (s1[1] - s0[1]) / in_window, 1)
    res["podtrail_context_switches_per_exec"] = round((s1[2] - s0[2]) / in_window, 2)
    # % of a core while execs arrive at the rate reached: CPU per exec x execs per second
    res["podtrail_cpu_pct"] = round(res["podtrail_cpu_us_per_exec"] * rate_all / 1e4, 1)
    res["auditd_cpu_pct"] = round(res["auditd_cpu_us_per_exec"] * rate_all / 1e4, 1)
    res["together_pct"] = round(res["podtrail_cpu_pct"] + res["auditd_cpu_pct"], 1)
    res["together_pct_of_window"] = round(100 * (p1 - p0 + a1 - a0) / window, 1)  # the window includes the drain
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
