"""The ``podtrail`` command line: one subcommand a module under ``podtrail.commands``.

User mistakes (bad flags, bad config, missing privileges, undecodable files) end with a
one-line error and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

import podtrail.commands
from podtrail import __version__
from podtrail.config import ConfigError

# Libraries whose debug output drowns podtrail's own under -v, or that log every failed
# connection attempt as ERROR while podtrail is merely waiting (osqueryd not up yet).
QUIET_LOGGERS = {"urllib3": logging.WARNING, "kubernetes": logging.WARNING, "thrift": logging.CRITICAL}


def _command_modules() -> list[str]:
    """Every module in ``podtrail.commands`` is a subcommand: it defines
    ``add_parser(subparsers)`` and sets ``func(args) -> int`` on its parser."""
    return sorted(m.name for m in pkgutil.iter_modules(podtrail.commands.__path__) if not m.name.startswith("_"))


class UserError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="podtrail",
        description="Container and Kubernetes context for kernel security events.",
    )
    p.add_argument("--version", action="version", version=f"podtrail {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_modules():
        importlib.import_module(f"podtrail.commands.{name}").add_parser(sub)
    return p


def _innermost_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command given, so an unknown flag prints that command's usage."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return parser
        chosen = getattr(args, subs[0].dest or "", None)
        if chosen not in subs[0].choices:
            return parser
        parser = subs[0].choices[chosen]


def _quiet_libraries(verbose: bool) -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level if verbose or level > logging.ERROR else logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="podtrail: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _quiet_libraries(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except (UserError, ConfigError) as e:
        print(f"podtrail: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0


def _quiet_stdout() -> None:
    """After the reader of stdout went away (``| head``), make the interpreter's final flush a no-op."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
