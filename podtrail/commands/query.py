"""``podtrail query "SELECT ..."``: osquery SQL over podtrail's tables, without osqueryd."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from functools import cache
from typing import Any

from podtrail.config import OsqueryConfig


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("query", help="run osquery SQL on podtrail's tables (running daemon, or an events file)")
    p.add_argument("sql")
    add_source_args(p)
    p.add_argument("--format", choices=("table", "json", "csv", "line"), default="table")
    p.set_defaults(func=run)


def add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", metavar="FILE", help="query a file of JSON-lines events (podtrail run output) instead of the daemon")
    p.add_argument("--skip-bad-lines", action="store_true", help="with --events: skip lines that are not JSON events (counted on stderr)")
    p.add_argument("--api-socket", default=OsqueryConfig().api_socket, help="the running daemon's local API socket")


def open_db(args: argparse.Namespace) -> Any:
    from podtrail.tables.schema import TABLES
    from podtrail.tables.sql import connect

    if args.events:
        from podtrail.commands._events import ReadStats, read_events
        from podtrail.tables import events_db

        stats = ReadStats()
        db = events_db.load(read_events(args.events, args.skip_bad_lines, stats, progress=sys.stderr.isatty()))
        note = stats.note(args.events)
        if note:
            print(note, file=sys.stderr)
        return db
    from podtrail.tables.local_api import remote_generate

    return connect(TABLES, remote_generate(args.api_socket))


@cache
def column_hints() -> dict[str, str]:
    """A name people try (the event field, its CEF/LEEF/ECS key) -> the column that holds it."""
    from podtrail.model.fields import FIELDS_LIST

    hints: dict[str, str] = {}
    for f in FIELDS_LIST:
        if not f.osquery:
            continue
        for alias in (f.name, f.cef, f.leef, f.ecs):
            if alias and alias != f.osquery:
                hints.setdefault(alias.lower(), f.osquery)
    return hints


def explain_sql_error(msg: str) -> str:
    """SQLite's message, plus the right column when a field name was used for one."""
    m = re.search(r"no such column: (?:[\w\"]+\.)?\"?([\w.]+)\"?", msg)
    if m:
        col = column_hints().get(m.group(1).lower())
        if col:
            return f"{msg} (the column is `{col}`; `podtrail fields` lists every name)"
    m = re.search(r"no such table: (?:\w+\.)?(\w+)", msg)
    if m:
        from podtrail.tables.schema import TABLES

        return f"{msg} (tables: {', '.join(sorted(TABLES))})"
    return msg


def execute(db: Any, sql: str, fmt: str, out: Any = None) -> None:
    import apsw

    from podtrail.cli import UserError
    from podtrail.tables.local_api import DaemonUnavailable
    from podtrail.tables.sql import EmptySQL, query

    out = out or sys.stdout
    try:
        cols, rows = query(db, sql)
    except (DaemonUnavailable, EmptySQL) as e:
        raise UserError(str(e)) from None
    except apsw.Error as e:
        raise UserError("SQL: " + explain_sql_error(str(e).removeprefix("SQLError: "))) from None
    except KeyError as e:  # the daemon answered with an error
        raise UserError(f"the daemon: {e.args[0] if e.args else e}") from None
    write_result(cols, rows, fmt, out)


def write_result(cols: list[str], rows: list[tuple[Any, ...]], fmt: str, out: Any) -> None:
    if fmt == "json":
        json.dump([dict(zip(cols, r, strict=True)) for r in rows], out, indent=1, default=str)
        out.write("\n")
    elif fmt == "csv":
        w = csv.writer(out)
        w.writerow(cols)
        w.writerows(rows)
    elif fmt == "line":  # one "column = value" per line: long values (ids, command lines) whole and easy to copy
        width = max((len(c) for c in cols), default=0)
        for i, r in enumerate(rows):
            if i:
                out.write("\n")
            for c, v in zip(cols, r, strict=True):
                out.write(f"{c.rjust(width)} = {'' if v is None else v}\n")
    else:
        out.write(render_table(cols, rows))


def render_table(cols: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A boxed table with every value whole (a cut 64-character container id would be a wrong
    one); a value's line breaks are shown as ``\\n`` so a row stays one line."""
    if not cols:
        return ""
    cells = [[("" if v is None else str(v)).replace("\n", "\\n") for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    parts = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |\n", line]
    for r in cells:
        parts.append("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |\n")
    if cells:
        parts.append(line)
    return "".join(parts)


def run(args: argparse.Namespace) -> int:
    execute(open_db(args), args.sql, args.format)
    return 0
