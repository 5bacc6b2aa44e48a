"""``podtrail shell``: an interactive SQL prompt over podtrail's tables (like osqueryi).

Interactive: line editing and history (readline, ``~/.podtrail_history``), a banner, dot
commands, Ctrl-C clears the line, Ctrl-D leaves. Piped: statements run in order, a last one
without ``;`` still runs, and any error makes the exit status 1 (scripts notice).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from podtrail.commands.query import add_source_args, execute, open_db

HISTORY = os.path.expanduser("~/.podtrail_history")
MODES = ("table", "line", "json", "csv")
HELP = """\
.help              this text
.tables            the tables
.schema [TABLE]    a table's columns and types (all tables without TABLE)
.mode [MODE]       output: table, line (one column per line: whole long values), json, csv
.exit, .quit       leave (or Ctrl-D); Ctrl-C clears the line
SQL ends with ';' (osquery's dialect, SQLite). `podtrail fields` maps event fields to columns."""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("shell", help="interactive osquery SQL over podtrail's tables")
    add_source_args(p)
    p.add_argument("--format", choices=MODES, default="table")
    p.set_defaults(func=run)


def schema_text(name: str | None) -> str:
    from podtrail.cli import UserError
    from podtrail.tables.schema import HIDDEN, TABLES

    if name is not None and name not in TABLES:
        raise UserError(f"no such table: {name} (tables: {', '.join(sorted(TABLES))})")
    out = []
    for t in [TABLES[name]] if name else TABLES.values():
        cols = ",\n  ".join(f"{c.name} {c.type}" + (" HIDDEN" if c.options & HIDDEN else "") for c in t.columns)
        out.append(f"-- {t.description}\nCREATE TABLE {t.name}(\n  {cols}\n);")
    return "\n".join(out)


class Shell:
    def __init__(self, db: Any, mode: str, out: Any = None) -> None:
        self.db = db
        self.mode = mode
        self.out = out or sys.stdout
        self.errors = 0

    def dot(self, line: str) -> bool:
        """Run a dot command; False means leave."""
        from podtrail.cli import UserError
        from podtrail.tables.schema import TABLES

        cmd, *rest = line.split()
        if cmd in (".exit", ".quit"):
            return False
        if cmd == ".help":
            print(HELP, file=self.out)
        elif cmd == ".tables":
            print("\n".join(f"  => {t}" for t in sorted(TABLES)), file=self.out)
        elif cmd == ".schema":
            print(schema_text(rest[0] if rest else None), file=self.out)
        elif cmd == ".mode":
            if not rest:
                print(f"current output mode: {self.mode}", file=self.out)
            elif rest[0] in MODES:
                self.mode = rest[0]
            else:
                raise UserError(f".mode: one of {', '.join(MODES)}, not {rest[0]!r}")
        else:
            raise UserError(f"unknown command {cmd} (.help lists them)")
        return True

    def sql(self, text: str) -> None:
        execute(self.db, text, self.mode, self.out)

    def handle(self, what: str, text: str) -> bool:
        from podtrail.cli import UserError

        try:
            if what == "dot":
                return self.dot(text)
            self.sql(text)
            return True
        except UserError as e:
            self.errors += 1
            print(f"Error: {e}", file=sys.stderr)
            return True


def statements(lines: Any) -> Any:
    """(kind, text) from input lines: a dot command at the start of a statement is one line;
    SQL runs to a ';' at a line's end; what is left at the end runs as the last statement."""
    import apsw

    buf = ""
    for line in lines:
        if not buf and line.strip().startswith("."):
            yield "dot", line.strip()
            continue
        if not buf and not line.strip():
            continue
        buf += line + "\n"
        if buf.rstrip().endswith(";") and apsw.complete(buf):
            yield "sql", buf
            buf = ""
    if buf.strip():
        yield "sql", buf


def _interactive(sh: Shell, source: str) -> int:
    import readline

    import apsw

    from podtrail import __version__

    try:
        readline.read_history_file(HISTORY)
    except OSError:
        pass
    readline.set_history_length(2000)
    print(f"podtrail {__version__} shell on {source}\nEnter .help for help, .tables for the tables; SQL ends with ';'.",
          file=sys.stderr)
    buf = ""
    try:
        while True:
            try:
                line = input("podtrail> " if not buf else "     ...> ")
            except KeyboardInterrupt:  # clear the line (and a half-typed statement), stay
                print("^C", file=sys.stderr)
                buf = ""
                continue
            except EOFError:
                print(file=sys.stderr)
                return 0
            if not buf and line.strip().startswith("."):
                if not sh.handle("dot", line.strip()):
                    return 0
                continue
            buf += line + "\n"
            if buf.strip() and buf.rstrip().endswith(";") and apsw.complete(buf):
                sh.handle("sql", buf)
                buf = ""
            elif not buf.strip():
                buf = ""
    finally:
        try:
            readline.write_history_file(HISTORY)
        except OSError:
            pass


def run(args: argparse.Namespace) -> int:
    db = open_db(args)
    sh = Shell(db, args.format)
    if sys.stdin.isatty():
        return _interactive(sh, args.events or args.api_socket)
    for what, text in statements(line.rstrip("\n") for line in sys.stdin):
        if not sh.handle(what, text):
            break
    return 1 if sh.errors else 0
