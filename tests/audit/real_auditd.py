"""A real auditd, started by the test with its own config and log, holding the machine-wide
lock (only one process may own the audit netlink socket); rules it adds are deleted after."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import require, require_root

LOCK = "/tmp/podtrail-auditd.lock"


def audit_status() -> dict[str, str]:
    """``auditctl -s`` as a dict (enabled, pid, backlog_limit, lost, ...)."""
    out = subprocess.run(["auditctl", "-s"], capture_output=True, text=True).stdout
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}


@contextmanager
def real_auditd(workdir: Path, rules: list[list[str]], plugin_dir: Path | None = None, log_format: str = "ENRICHED",
                write_logs: bool = True, extra_conf: str = "") -> Iterator[Path]:
    require_root()
    require(shutil.which("auditd") is not None and shutil.which("auditctl") is not None, "auditd (apt auditd)")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "audit.log"
    conf = workdir / "auditd.conf"
    conf.write_text(f"log_file = {log}\nlog_format = {log_format}\nflush = INCREMENTAL_ASYNC\nfreq = 20\nmax_log_file = 64\n"
                    "max_log_file_action = IGNORE\nspace_left = 2\nadmin_space_left = 1\ndisk_full_action = IGNORE\n"
                    f"disk_error_action = IGNORE\nwrite_logs = {'yes' if write_logs else 'no'}\n" + (f"plugin_dir = {plugin_dir}\n" if plugin_dir else "") + extra_conf)
    os.chmod(conf, 0o640)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # auditd turns kernel auditing on and leaves it on when it stops: every task started after
        # then runs the syscall audit hooks (measured: the agent's CPU per exec 1.4x higher in
        # later benchmarks), so the state found is put back after
        enabled = audit_status().get("enabled", "")
        proc = subprocess.Popen(["auditd", "-n", "-c", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        backlog = audit_status().get("backlog_limit", "")  # a rule may change it: put it back after
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                st = subprocess.run(["auditctl", "-s"], capture_output=True, text=True).stdout
                if f"pid {proc.pid}" in st:
                    break
                time.sleep(0.1)
            for r in rules:
                subprocess.run(["auditctl", *r], check=True, capture_output=True)
            yield log
        finally:
            subprocess.run(["auditctl", "-D"], capture_output=True)
            if backlog.isdigit():
                subprocess.run(["auditctl", "-b", backlog], capture_output=True)
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            if enabled in ("0", "1"):  # 2 is locked: nothing to put back
                subprocess.run(["auditctl", "-e", enabled], capture_output=True)
