"""Reading a file of podtrail events (JSON lines, as ``podtrail run`` prints them), shared by
the commands that take ``--events``. Bad input ends with a one-line error naming the line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any


def read_events(path: str) -> Iterator[dict[str, Any]]:
    """Events of ``path`` ('-' for stdin); blank lines are skipped."""
    from podtrail.cli import UserError

    try:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    raise UserError(f"{path}:{n}: not a JSON event") from None
                if not isinstance(ev, dict):
                    raise UserError(f"{path}:{n}: not a JSON object")
                yield ev
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
