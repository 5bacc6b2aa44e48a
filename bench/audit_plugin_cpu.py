"""Agent CPU at about 1,000 execs/s through the auditd plugin, next to auditd's own CPU.

    .venv/bin/python -m bench.audit_plugin_cpu [--seconds 10]

A real auditd with podtrail's rules starts podtrail as its plugin (string format on stdin,
JSON lines to /dev/null); a paced loop runs `busybox true` then `busybox usleep 1`.
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

from real_auditd import real_auditd  # noqa: E402

from bench.exec_storm import cpu_s  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="podtrail-bench-plugin-"))
    wrapper = d / "plugin"
    wrapper.write_text(f"#!/bin/sh\ncd {ROOT}\nexec {sys.executable} -m podtrail run --source auditd --audit-input plugin "
                       "--no-metrics --no-sockets --no-files >/dev/null 2>&1\n")
    wrapper.chmod(0o755)
    plugins = d / "plugins.d"
    plugins.mkdir()
    (plugins / "podtrail.conf").write_text(f"active = yes\ndirection = out\npath = {wrapper}\ntype = always\nformat = string\n")
    os.chmod(plugins / "podtrail.conf", 0o640)
    rules = [["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat", "-k", "exec"]]
    with real_auditd(d / "ad", rules, plugin_dir=plugins):
        time.sleep(3)
        auditd = int(subprocess.run(["pgrep", "-x", "auditd"], capture_output=True, text=True).stdout.split()[0])
        plugin = int(subprocess.run(["pgrep", "-f", "--", "audit-input plugin"], capture_output=True, text=True).stdout.split()[0])
        a0, p0 = cpu_s(auditd), cpu_s(plugin)
        n = int(a.seconds * 500)
        t0 = time.perf_counter()
        subprocess.run(["/bin/busybox", "sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/busybox true; /bin/busybox usleep 1; i=$((i+1)); done"])
        wall = time.perf_counter() - t0
        time.sleep(2)
        a1, p1 = cpu_s(auditd), cpu_s(plugin)
    res = {"execs_per_s": 2 * n / wall, "auditd_cpu_pct": 100 * (a1 - a0) / (wall + 2), "podtrail_plugin_cpu_pct": 100 * (p1 - p0) / (wall + 2)}
    res["total_pct"] = res["auditd_cpu_pct"] + res["podtrail_plugin_cpu_pct"]
    # CPU time per exec, and what it comes to at 1,000 execs/s (the rate), for runs
    # where the loop could not reach that rate (a loaded machine)
    res["podtrail_cpu_us_per_exec"] = 1e6 * (p1 - p0) / (2 * n)
    res["auditd_cpu_us_per_exec"] = 1e6 * (a1 - a0) / (2 * n)
    res["together_pct_at_1000_execs_per_s"] = (res["podtrail_cpu_us_per_exec"] + res["auditd_cpu_us_per_exec"]) / 10
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
