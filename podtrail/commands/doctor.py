"""``podtrail doctor``: says which source will run and why, or what to do when none can; with
the configuration, whether its outputs can be reached and its spool written."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("doctor", help="check this host: which sensor can run, and why; outputs and spool")
    p.add_argument("-c", "--config", help="YAML config file whose outputs and spool to check (default: embedded defaults)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from podtrail import config
    from podtrail.doctor import CHECKS, output_checks, verdict

    cfg = config.load(args.config)
    results = [c() for c in CHECKS]
    source, why = verdict(results)
    results += output_checks(cfg)
    outputs_ok = all(c.ok for c in results if c.needed_by == "outputs")
    if args.json:
        print(json.dumps({"source": source, "reason": why, "outputs_ok": outputs_ok,
                          "checks": [c.__dict__ for c in results]}, indent=2))
    else:
        for c in results:
            mark = "ok  " if c.ok else "FAIL" if c.needed_by else "warn"
            print(f"[{mark}] {c.name:15} {c.detail}")
            if not c.ok and c.fix:
                print(f"       fix: {c.fix}")
        print()
        print(f"source: {source or 'none'} — {why}")
        if not outputs_ok:
            print("outputs: failing — see above")
    return 0 if source and outputs_ok else 1
