"""Audit parse-and-assemble rate: podtrail vs auparse (the C library) on the same real log.

    .venv/bin/python -m bench.audit_parse [--execs 5000]

A real auditd with an execve rule records an exec storm; then, in one run, podtrail's parser
and assembler and auparse (python3-audit) each walk every event, record and field of that log.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"), str(Path(__file__).resolve().parents[1] / "tests" / "audit")]

from real_auditd import real_auditd  # noqa: E402

from podtrail.audit.assemble import assemble_lines  # noqa: E402


def ours(text: str) -> tuple[int, int]:
    events = records = 0
    for recs in assemble_lines(text.split("\n")):
        events += 1
        records += len(recs)
    return events, records


def theirs(path: Path) -> tuple[int, int]:
    import auparse

    au = auparse.AuParser(auparse.AUSOURCE_FILE, str(path))
    events = records = 0
    while au.parse_next_event():
        events += 1
        au.first_record()
        while True:
            records += 1
            if au.first_field():
                while True:
                    au.get_field_str()
                    if not au.next_field():
                        break
            if not au.next_record():
                break
    return events, records


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=5000)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="podtrail-bench-audit-"))
    with real_auditd(d, [["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "exec"]]) as log:
        subprocess.run(["/bin/busybox", "sh", "-c", f"i=0; while [ $i -lt {a.execs} ]; do /bin/busybox true a b c; i=$((i+1)); done"])
        time.sleep(1.5)
    text = log.read_text(errors="surrogateescape")
    lines = text.count("\n")
    t0 = time.perf_counter()
    e1, r1 = ours(text)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    e2, r2 = theirs(log)
    t_theirs = time.perf_counter() - t0
    print(json.dumps({"lines": lines, "podtrail_events": e1, "podtrail_records": r1, "auparse_events": e2, "auparse_records": r2,
                      "podtrail_records_per_s": r1 / t_ours, "auparse_records_per_s": r2 / t_theirs,
                      "ratio": (r1 / t_ours) / (r2 / t_theirs)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
