"""``podtrail extension``: the osquery autoload entry point (osqueryd starts it with --socket).

It loads no BPF programs: it registers podtrail's tables with osqueryd and answers them by
asking the node's running `podtrail run` daemon over its local API, so a node has one sensor.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from podtrail.config import OsqueryConfig

log = logging.getLogger("podtrail.extension")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("extension", help="osquery extension (autoload); proxies to the running daemon")
    p.add_argument("--socket", required=True, help="osqueryd's extension manager socket")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the socket")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between pings of osqueryd")
    p.add_argument("--verbose", action="store_true", help="accepted for osquery compatibility")
    p.add_argument("--api-socket", default=OsqueryConfig().api_socket, help="the running daemon's local API socket")
    p.add_argument("--keep-serving", action="store_true",
                   help="when osqueryd restarts, register again instead of exiting (a sidecar; autoload leaves it off)")
    p.set_defaults(func=run)


def answer_without_agent(generate: Any, api_socket: str) -> Any:
    """With no agent running, osquery gets an empty result and a status saying so (not an
    internal error), and the log gets one line per outage, not one per query."""
    from podtrail.tables.local_api import DaemonUnavailable
    from podtrail.tables.osquery_ext import NoRows

    down = [False]

    def wrapped(table: str, constraints: Any) -> list[dict[str, str]]:
        try:
            rows = generate(table, constraints)
        except DaemonUnavailable as e:
            if not down[0]:
                down[0] = True
                log.warning("%s; answering osquery with empty results until it runs", e)
            return NoRows(f"no podtrail agent at {api_socket}: start `podtrail run`")
        if down[0]:
            down[0] = False
            log.warning("podtrail agent at %s answers again", api_socket)
        return rows

    return wrapped


def run(args: argparse.Namespace) -> int:
    import os
    import time

    from podtrail.cli import UserError
    from podtrail.tables.local_api import remote_generate
    from podtrail.tables.osquery_ext import OsqueryExtension, select_from
    from podtrail.tables.schema import TABLES

    deadline = time.monotonic() + args.timeout
    while not os.path.exists(args.socket):
        if time.monotonic() > deadline:
            raise UserError(f"no osquery extension manager socket at {args.socket}")
        time.sleep(0.1)
    ext = OsqueryExtension(args.socket, TABLES,
                           select_from(answer_without_agent(remote_generate(args.api_socket), args.api_socket)),
                           interval_s=args.interval, timeout_s=args.timeout, reregister=args.keep_serving)
    try:
        ext.start()
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot register with osquery at {args.socket}: {e}") from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: ext.stop())
    ext.stopped.wait()
    return 0
