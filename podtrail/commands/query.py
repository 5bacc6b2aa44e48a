"""``podtrail query "SELECT ..."``: osquery SQL over podtrail's tables, without osqueryd."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from podtrail.config import OsqueryConfig


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("query", help="run osquery SQL on podtrail's tables (running daemon, or an events file)")
    p.add_argument("sql")
    add_source_args(p)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run)


def add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", metavar="FILE", help="query a file of JSON-lines events (podtrail run output) instead of the daemon")
    p.add_argument("--api-socket", default=OsqueryConfig().api_socket, help="the running daemon's local API socket")


def open_db(args: argparse.Namespace) -> Any:
    from podtrail.tables.schema import TABLES
    from podtrail.tables.sql import connect

    if args.events:
        from podtrail.commands._events import read_events
        from podtrail.tables.buffer import EventBuffers
        from podtrail.tables.service import TableService

        buffers = EventBuffers(events_max=10**7, expiry_s=10**9)
        for ev in read_events(args.events):
            buffers.submit(ev)
        return connect(TABLES, TableService(buffers).generate)
    from podtrail.tables.local_api import remote_generate

    return connect(TABLES, remote_generate(args.api_socket))


def execute(db: Any, sql: str, fmt: str, out: Any = None) -> None:
    import apsw

    from podtrail.cli import UserError
    from podtrail.tables.local_api import DaemonUnavailable
    from podtrail.tables.sql import query

    out = out or sys.stdout
    try:
        cols, rows = query(db, sql)
    except DaemonUnavailable as e:
        raise UserError(str(e)) from None
    except apsw.Error as e:
        raise UserError(f"SQL: {e}") from None
    if fmt == "json":
        json.dump([dict(zip(cols, r, strict=True)) for r in rows], out, indent=1, default=str)
        out.write("\n")
    elif fmt == "csv":
        w = csv.writer(out)
        w.writerow(cols)
        w.writerows(rows)
    else:
        execute_rows(cols, rows, out)


def execute_rows(cols: list[str], rows: Any, out: Any) -> None:
    """An ASCII table, cells cut at 60 characters."""
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c)] + [min(len(r[i]), 60) for r in cells]) for i, c in enumerate(cols)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print(line, file=out)
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |", file=out)
    print(line, file=out)
    for r in cells:
        print("| " + " | ".join(v[:60].ljust(w) for v, w in zip(r, widths, strict=True)) + " |", file=out)
    print(line, file=out)


def run(args: argparse.Namespace) -> int:
    execute(open_db(args), args.sql, args.format)
    return 0
