"""``podtrail profile list|show|export|import|mode``: the workload profiles in the state dir.

Profiles are the user's: readable (``show``), reviewable in git (``export`` as YAML, which is
what ``import`` reads), portable between clusters (``import --workload`` retargets a profile
learned in staging), and expressible as Sigma (``export --sigma``). A running agent picks up
``import`` and ``mode`` within its ``detection.baseline.sync_seconds``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from podtrail.config import BASELINE_MODES


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("profile", help="behavioural baselines: list, show, export, import, set a workload's mode")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("-c", "--config", help="YAML config file (for detection.baseline.state_dir)")
        q.add_argument("--state-dir", help="profile state directory (default: from the config)")

    ls = psub.add_parser("list", help="one line per workload profile")
    common(ls)
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=run_list)
    for name, fn, helptext in (("show", run_show, "a profile as YAML"),
                               ("export", run_export, "a profile as YAML (what import reads) or as Sigma rules")):
        q = psub.add_parser(name, help=helptext)
        common(q)
        q.add_argument("workload", help="[cluster/]namespace/Kind/name (cluster may be left out when unique)")
        if name == "export":
            q.add_argument("-o", "--output", help="file to write (default: stdout)")
            q.add_argument("--sigma", action="store_true", help="Sigma rules flagging everything outside the profile")
        q.set_defaults(func=fn)
    im = psub.add_parser("import", help="add or replace a profile from an exported YAML file")
    common(im)
    im.add_argument("file", help="exported profile ('-' for stdin)")
    im.add_argument("--workload", help="import as this [cluster/]namespace/Kind/name (e.g. staging -> production)")
    im.add_argument("--mode", choices=BASELINE_MODES, help="mode after import (default: the file's), pinned")
    im.set_defaults(func=run_import)
    md = psub.add_parser("mode", help="move a workload between learn, monitor and off (pinned), or back to auto")
    common(md)
    md.add_argument("workload")
    md.add_argument("mode", choices=(*BASELINE_MODES, "auto"))
    md.set_defaults(func=run_mode)


def _store(args: argparse.Namespace) -> Any:
    from podtrail import config as config_mod
    from podtrail.detect.baseline.store import ProfileStore

    state_dir = args.state_dir or config_mod.load(args.config).detection.baseline.state_dir
    return ProfileStore(state_dir)


def _profiles(store: Any) -> list[Any]:
    rep = store.load_all()
    for msg in rep.problems:
        print(f"podtrail: warning: {msg}", file=sys.stderr)
    return sorted(rep.loaded, key=lambda p: p.key)


def _find(store: Any, text: str) -> Any:
    from podtrail.cli import UserError
    from podtrail.detect.baseline.model import WorkloadKey

    try:
        want = WorkloadKey.parse(text)
    except ValueError as e:
        raise UserError(str(e)) from None
    explicit = text.count("/") == 3
    hits = [p for p in _profiles(store) if (p.key == want if explicit else
                                            (p.key.namespace, p.key.kind, p.key.name) == (want.namespace, want.kind, want.name))]
    if not hits:
        raise UserError(f"no profile for {text} in {store.dir}")
    if len(hits) > 1:
        raise UserError(f"{text} is ambiguous: {', '.join(p.key.text for p in hits)}")
    return hits[0]


def run_list(args: argparse.Namespace) -> int:
    import json

    from podtrail.commands.query import render_table

    rows = [p.summary() for p in _profiles(_store(args))]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    cols = ["workload", "mode", "version", "events", "executables", "process_pairs", "destinations",
            "listening_ports", "write_prefixes", "overflow", "last_change"]
    sys.stdout.write(render_table(cols, [tuple(r[c] for c in cols) for r in rows]))
    return 0


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def run_show(args: argparse.Namespace) -> int:
    from podtrail.detect.baseline.codec import to_doc

    sys.stdout.write(_dump(to_doc(_find(_store(args), args.workload))))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from podtrail.detect.baseline import sigma
    from podtrail.detect.baseline.codec import to_doc

    p = _find(_store(args), args.workload)
    text = sigma.to_yaml(p) if args.sigma else _dump(to_doc(p))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from podtrail.cli import UserError
    from podtrail.detect.baseline.codec import ProfileFormatError, from_doc
    from podtrail.detect.baseline.model import WorkloadKey

    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        p = from_doc(yaml.safe_load(text))
    except OSError as e:
        raise UserError(f"cannot read {args.file}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{args.file}: invalid YAML: {str(e).splitlines()[0]}") from None
    except ProfileFormatError as e:
        raise UserError(f"{args.file}: {e}") from None
    if args.workload:
        try:
            p.key = WorkloadKey.parse(args.workload)
        except ValueError as e:
            raise UserError(str(e)) from None
    if args.mode:
        p.mode, p.pinned = args.mode, True
        if args.mode == "monitor" and p.current.monitor_since is None:
            p.current.monitor_since = time.time()
    p.last_change = time.time()
    path = _store(args).save(p)
    print(f"imported {p.key.text} (version {p.current.version}, mode {p.mode}) into {path}")
    return 0


def run_mode(args: argparse.Namespace) -> int:
    store = _store(args)
    p = _find(store, args.workload)
    now = time.time()
    if args.mode == "auto":
        p.pinned = False
    else:
        p.mode, p.pinned = args.mode, True
        if args.mode == "monitor" and p.current.monitor_since is None:
            p.current.monitor_since = now
    p.last_change = now
    store.save(p)
    print(f"{p.key.text}: mode {p.mode}{' (pinned)' if p.pinned else ' (automatic)'}")
    return 0
