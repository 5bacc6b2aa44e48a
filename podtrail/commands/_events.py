"""Reading a file of podtrail events (JSON lines, as ``podtrail run`` prints them), shared by
the commands that take ``--events``. Bad input ends with a one-line error naming the line,
unless the caller skips bad lines (counted); a torn last line (the writer was killed
mid-line) is skipped with a warning, never a reason to reject the whole file."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class ReadStats:
    events: int = 0
    bad: list[int] = field(default_factory=list)  # line numbers skipped
    torn_last_line: bool = False

    def note(self, path: str) -> str:
        """One stderr line about what was skipped ('' when nothing was)."""
        parts = []
        if self.bad:
            shown = ", ".join(str(n) for n in self.bad[:5]) + (", ..." if len(self.bad) > 5 else "")
            parts.append(f"skipped {len(self.bad)} bad line{'s' if len(self.bad) != 1 else ''} (line {shown})")
        if self.torn_last_line:
            parts.append("ignored a torn last line (the writer stopped mid-line)")
        return f"podtrail: {path}: " + "; ".join(parts) if parts else ""


def read_events(path: str, skip_bad: bool = False, stats: ReadStats | None = None,
                progress: bool = False) -> Iterator[dict[str, Any]]:
    """Events of ``path`` ('-' for stdin); blank lines are skipped."""
    from podtrail.cli import UserError

    st = stats if stats is not None else ReadStats()
    try:
        f: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    total = _size(f)
    shown = 0.0
    try:
        with f:
            for n, raw in enumerate(f, 1):
                if progress and n % 4096 == 0 and time.monotonic() - shown > 0.25:
                    shown = time.monotonic()
                    _progress(path, st.events, f.tell() if total else 0, total)
                if not raw.strip():
                    continue
                ev = _parse(raw)
                if isinstance(ev, dict):
                    st.events += 1
                    yield ev
                    continue
                if not raw.endswith(b"\n"):  # the last line, cut short by a kill
                    st.torn_last_line = True
                    continue
                if skip_bad:
                    st.bad.append(n)
                    continue
                what = {"utf8": "not UTF-8 text", "json": "not a JSON event", "object": "not a JSON object"}[ev]
                raise UserError(f"{path}:{n}: {what} (--skip-bad-lines skips such lines)")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    finally:
        if progress:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _parse(raw: bytes) -> dict[str, Any] | str:
    """The event, or what is wrong with the line: 'utf8', 'json' or 'object'."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "utf8"
    try:
        ev = json.loads(text)
    except ValueError:
        return "json"
    return ev if isinstance(ev, dict) else "object"


def _size(f: IO[bytes]) -> int:
    try:
        st = os.fstat(f.fileno())
        return st.st_size if os.path.isfile(f.name if isinstance(f.name, str) else "") else 0
    except (OSError, ValueError, AttributeError):
        return 0


def _progress(path: str, events: int, done: int, total: int) -> None:
    pct = f" {100 * done // total}%" if total else ""
    sys.stderr.write(f"\rpodtrail: loading {path}: {events:,} events{pct}")
    sys.stderr.flush()
