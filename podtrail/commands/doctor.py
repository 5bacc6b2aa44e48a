"""``podtrail doctor``: says which source will run and why, or what to do when none can."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("doctor", help="check this host: which sensor can run, and why")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from podtrail.doctor import CHECKS, verdict

    results = [c() for c in CHECKS]
    source, why = verdict(results)
    if args.json:
        print(json.dumps({"source": source, "reason": why, "checks": [c.__dict__ for c in results]}, indent=2))
    else:
        for c in results:
            mark = "ok  " if c.ok else "FAIL" if c.needed_by else "warn"
            print(f"[{mark}] {c.name:15} {c.detail}")
            if not c.ok and c.fix:
                print(f"       fix: {c.fix}")
        print()
        print(f"source: {source or 'none'} — {why}")
    return 0 if source else 1
