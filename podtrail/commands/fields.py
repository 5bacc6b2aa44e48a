"""``podtrail fields``: the event-field declaration: a table on a terminal, JSON lines in a
pipe (``--format`` chooses), the docs/fields.md table with ``--markdown``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from podtrail.model.docs import render_fields_md
from podtrail.model.fields import FIELDS_LIST


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fields", help="list the event fields and their names in every output (osquery column, CEF, LEEF, ECS)")
    p.add_argument("--markdown", action="store_true", help="the docs/fields.md table")
    p.add_argument("--format", choices=("table", "json"), help="default: table on a terminal, JSON lines otherwise")
    p.set_defaults(func=run)


def rows() -> list[dict[str, Any]]:
    return [{"name": f.name, "type": f.type.value, "kinds": sorted(k.value for k in f.kinds),
             "osquery": f.osquery, "cef": f.cef, "leef": f.leef, "ecs": f.ecs} for f in FIELDS_LIST]


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(render_fields_md())
        return 0
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    if fmt == "json":
        for row in rows():
            print(json.dumps(row))
        return 0
    from podtrail.commands.query import render_table

    cols = ["field", "type", "events", "osquery column", "CEF", "LEEF", "ECS"]
    table = [(r["name"], r["type"], ",".join(r["kinds"]), r["osquery"] or "-", r["cef"] or "-", r["leef"] or "-", r["ecs"] or "-")
             for r in rows()]
    sys.stdout.write(render_table(cols, table))
    return 0
