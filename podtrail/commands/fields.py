"""``podtrail fields``: print the event-field declaration (as Markdown with --markdown)."""

from __future__ import annotations

import argparse
import json
import sys

from podtrail.model.docs import render_fields_md
from podtrail.model.fields import FIELDS_LIST


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fields", help="list the event fields and their names in every output")
    p.add_argument("--markdown", action="store_true", help="the docs/fields.md table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(render_fields_md())
        return 0
    for f in FIELDS_LIST:
        row = {"name": f.name, "type": f.type.value, "kinds": sorted(k.value for k in f.kinds),
               "osquery": f.osquery, "cef": f.cef, "leef": f.leef, "ecs": f.ecs}
        print(json.dumps(row))
    return 0
