"""``podtrail rules``: regenerate the converted SIEM content, check it is current, run Sigma
rules (shipped, or any in podtrail's or the generic Linux taxonomy) on a file of podtrail events
(JSON lines, as ``podtrail run`` prints) with the agent's own engine, or say which rules the
agent cannot use and why."""

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
    t = rsub.add_parser("test", help="which rules fire on a file of podtrail events (JSON lines), as the agent evaluates them")
    t.add_argument("--events", required=True, help="JSON-lines file of podtrail events ('-' for stdin), in time order")
    t.add_argument("--rules", nargs="+", metavar="PATH", default=[],
                   help="rule files or folders to test instead of the shipped rules")
    t.add_argument("--shipped", action="store_true", help="with --rules: the shipped rules too")
    t.add_argument("--base", action="store_true", help="also report rules that only feed correlations (building blocks)")
    t.set_defaults(func=run_test)
    c = rsub.add_parser("check", help="which rules the agent cannot use, and why (one JSON line each, then a summary)")
    c.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    c.set_defaults(func=run_check)


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
    from podtrail.cli import UserError
    from podtrail.commands._events import read_events
    from podtrail.detect.engine import Engine
    from podtrail.detect.ruleset import RuleLoadError, load_paths

    try:
        rules = load_paths(args.rules, shipped=args.shipped or not args.rules)
    except RuleLoadError as e:
        raise UserError(str(e)) from None
    for p in rules.problems:
        print(f"podtrail: warning: rule {p.path} ({p.id or '?'}) not used: {p.reason}", file=sys.stderr)
    if args.base:
        for sig in rules.signatures:
            sig.output = True
    engine = Engine(rules)
    hits: dict[str, dict[str, object]] = {}
    events = alerts = 0
    for ev in read_events(args.events):
        events += 1
        for a in engine.process(ev):
            alerts += 1
            h = hits.setdefault(a["rule_id"], {"rule_id": a["rule_id"], "rule": (a.get("findings") or {}).get("rule", ""),
                                               "title": a["rule_title"], "level": a["rule_level"],
                                               "kind": a["detection_kind"], "alerts": 0, "event_ids": []})
            h["alerts"] = int(h["alerts"]) + 1  # type: ignore[call-overload]
            ids = h["event_ids"]
            assert isinstance(ids, list)
            ids += [i for i in a["trigger_ids"] if i not in ids]
    names = {s.meta.id: s.meta.name for s in rules.signatures} | {c.meta.id: c.meta.name for c in rules.correlations}
    for rid, h in hits.items():
        h["rule"] = names.get(rid, h["rule"])
        print(json.dumps(h))
    print(json.dumps({"summary": {"events": events, "rules": rules.usable, "not_usable": len(rules.problems),
                                  "rules_fired": len(hits), "alerts": alerts}}))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from podtrail.cli import UserError
    from podtrail.detect.ruleset import RuleLoadError, load_paths

    try:
        rules = load_paths(args.paths, shipped=False)
    except RuleLoadError as e:
        raise UserError(str(e)) from None
    for p in rules.problems:
        print(json.dumps({"id": p.id, "title": p.title, "path": p.path, "reason": p.reason}))
    print(json.dumps({"summary": {"read": rules.read, "usable": rules.usable, "not_usable": len(rules.problems)}}))
    return 1 if rules.problems else 0
