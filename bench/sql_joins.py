"""Joins over events in the embedded SQL engine (issue 16: a parent/child self-join took 2.1 s
at 4.9k events, a write-then-exec-same-path join 20 s): the engine before (main's sql.py, read
from git: no BestIndex, every outer row re-generates the whole inner table) against this one
(per-statement snapshots with hash/sorted indexes behind BestIndex, the daemon path) and the
``--events`` path (indexed SQLite tables), in one run.

    .venv/bin/python -m bench.sql_joins [--events 50000] [--old-events 2000]

The old engine is quadratic, so it runs on ``--old-events`` only; the printed ratio compares
per-query time at those sizes (and the goal: each join on 50,000 events within 1 s).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.tables import events_db
from podtrail.tables.schema import TABLES
from podtrail.tables.service import to_row
from podtrail.tables.sql import connect, query

BEFORE = "20ef1a8"  # the engine as issue 16 measured it

QUERIES = {
    "parent/child (process_key)": "SELECT count(*) FROM container_process_events c JOIN container_process_events p "
                                  "ON c.parent_key = p.process_key",
    "parent/child (pid)": "SELECT count(*) FROM container_process_events c JOIN container_process_events p "
                          "ON c.parent = p.pid AND p.action = 'exec'",
    "write then exec same path": "SELECT count(*) FROM container_file_events f JOIN container_process_events e "
                                 "ON e.path = f.path AND e.time BETWEEN f.time AND f.time + 60 "
                                 "WHERE f.action = 'write' AND e.action = 'exec'",
    "same container, 5 s window": "SELECT count(*) FROM container_file_events f JOIN container_process_events e "
                                  "ON e.container_id = f.container_id AND e.time BETWEEN f.time AND f.time + 5 "
                                  "WHERE e.pid = f.pid",
}


def make_events(n: int) -> list[dict[str, Any]]:
    """n process events (a forest of shells in 50 containers) and n/2 file writes, some of the
    written paths exec'd later."""
    evs = []
    for i in range(n):
        cid = f"{i % 50:02d}" * 32
        evs.append(finalize(new_event(
            Kind.PROCESS, "exec", pid=10000 + i, ppid=10000 + i // 2, comm="sh", path=f"/tmp/drop{i % 997}",
            cmdline=f"sh -c job-{i}", process_key=f"{10000 + i}:1", parent_key=f"{10000 + i // 2}:1",
            time=1_700_000_000.0 + i * 0.01, container_id=cid, pod_name=f"pod-{i % 50}", namespace="shop", source="ebpf")))
        if i % 2 == 0:
            evs.append(finalize(new_event(
                Kind.FILE, "write", pid=10000 + i, path=f"/tmp/drop{i % 997}", process_key=f"{10000 + i}:1",
                time=1_700_000_000.0 + i * 0.01 - 0.5, container_id=cid, source="ebpf")))
    return evs


def old_engine() -> types.ModuleType:
    src = subprocess.run(["git", "show", f"{BEFORE}:podtrail/tables/sql.py"], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1], check=True).stdout
    mod = types.ModuleType("old_sql")
    exec(compile(src, "old_sql.py", "exec"), mod.__dict__)
    return mod


def rows_of(evs: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {name: [] for name in TABLES}
    for name, spec in TABLES.items():
        if spec.kind is not None:
            out[name] = [to_row(spec, e) for e in evs if e["event_type"] == spec.kind.value]
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--old-events", type=int, default=2000)
    a = ap.parse_args()
    big, small = make_events(a.events), make_events(a.old_events)
    rows_big, rows_small = rows_of(big), rows_of(small)
    old = old_engine()
    db_old = old.connect(TABLES, lambda t, c: rows_small[t])
    db_new_small = connect(TABLES, lambda t, c: rows_small[t])
    db_new = connect(TABLES, lambda t, c: rows_big[t])
    with tempfile.TemporaryDirectory() as d:
        load_s, db_file = timed(lambda: events_db.load(iter(big), d))
        print(f"process events: {a.events:,} (+{a.events // 2:,} file events); old engine on {a.old_events:,} (+{a.old_events // 2:,})")
        print(f"--events load into indexed tables: {load_s:.2f}s")
        print(f"| join | old engine @{a.old_events} | new @{a.old_events} | ratio | new (daemon path) @{a.events} "
              f"| --events tables @{a.events} |")
        print("|---|---|---|---|---|---|")
        for name, sql in QUERIES.items():
            t_old, r_old = timed(lambda sql=sql: old.query(db_old, sql))
            t_ns, r_ns = timed(lambda sql=sql: query(db_new_small, sql))
            assert r_old[1] == r_ns[1], (name, r_old, r_ns)
            t_new, r_new = timed(lambda sql=sql: query(db_new, sql))
            t_file, r_file = timed(lambda sql=sql: query(db_file, sql))
            assert r_new[1] == r_file[1], (name, r_new, r_file)
            print(f"| {name} | {t_old:.2f}s | {t_ns:.3f}s | {t_old / t_ns:.0f}× | {t_new:.2f}s ({r_new[1][0][0]:,} rows) "
                  f"| {t_file:.3f}s |", flush=True)


if __name__ == "__main__":
    main()
