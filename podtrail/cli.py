"""The ``podtrail`` command line: one subcommand a module under ``podtrail.commands``.

User mistakes (bad flags, bad config, missing privileges) end with a one-line error and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import podtrail.commands
from podtrail import __version__
from podtrail.config import ConfigError


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="podtrail: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
        return 0
