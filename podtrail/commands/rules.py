"""``podtrail rules``: regenerate the converted SIEM content, check it is current, or run the
shipped Sigma rules on a file of podtrail events (JSON lines, as ``podtrail run`` prints)."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rules", help="SIEM content: build the Splunk/Elastic/QRadar files, or test rules on events")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    b = rsub.add_parser("build", help="regenerate siem_content/{splunk,elastic,qradar} and CONVERSION.md from the Sigma rules")
    b.add_argument("--check", action="store_true", help="write nothing; exit 1 if any generated file is stale")
    b.set_defaults(func=run_build)
    t = rsub.add_parser("test", help="which rules fire on a file of podtrail events (JSON lines)")
    t.add_argument("--events", required=True, help="JSON-lines file of podtrail events ('-' for stdin)")
    t.add_argument("--base", action="store_true", help="also report building-block rules")
    t.set_defaults(func=run_test)


def run_build(args: argparse.Namespace) -> int:
    from podtrail.cli import UserError
    from podtrail.rules.build import BuildError, build_outputs, stale, write

    try:
        outputs = build_outputs()
    except BuildError as e:
        raise UserError(str(e)) from None
    if args.check:
        old = stale(outputs)
        for p in old:
            print(f"stale: {p} (run `podtrail rules build`)", file=sys.stderr)
        return 1 if old else 0
    write(outputs)
    for p in outputs:
        print(p)
    return 0


def run_test(args: argparse.Namespace) -> int:
    from podtrail.commands._events import read_events
    from podtrail.rules.evaluate import evaluate

    hits = evaluate(read_events(args.events), include_base=args.base)
    for name, hit in sorted(hits.items()):
        ids = [r.get("event_id") for r in hit.rows if r.get("event_id")]
        print(json.dumps({"rule": name, "level": hit.level, "matches": len(hit.rows), "event_ids": ids[:20]}))
    return 0
