"""``podtrail shell``: an interactive SQL prompt over podtrail's tables (like osqueryi)."""

from __future__ import annotations

import argparse
import sys

from podtrail.commands.query import add_source_args, execute, open_db


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("shell", help="interactive osquery SQL over podtrail's tables")
    add_source_args(p)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from podtrail.cli import UserError
    from podtrail.tables.schema import TABLES

    db = open_db(args)
    interactive = sys.stdin.isatty()
    buf = ""
    while True:
        try:
            line = input("podtrail> " if interactive and not buf else ("      ...> " if interactive else ""))
        except EOFError:
            return 0
        if not buf and line.strip() in (".exit", ".quit"):
            return 0
        if not buf and line.strip() == ".tables":
            print("\n".join(sorted(TABLES)))
            continue
        buf += line + "\n"
        if not buf.rstrip().endswith(";"):
            continue
        try:
            execute(db, buf, args.format)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
        buf = ""
