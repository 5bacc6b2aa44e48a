"""JSON lines on stdout: the embedded default output (no SIEM needed).

A writer thread drains a bounded queue, so a slow reader of stdout never stalls the
pipeline; what does not fit is counted as dropped."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from podtrail import metrics
from podtrail.formatters.jsonenc import dumps
from podtrail.inbox import Inbox
from podtrail.model.event import Event


def to_json_line(ev: Event) -> str:
    """One event, one line: flat canonical field names; non-ASCII escaped so no byte of an
    attacker-controlled value can split the line (orjson, see formatters/jsonenc.py)."""
    return dumps(ev)


class StdoutSink:
    def __init__(self, stream: IO[str] | None = None, max_queue: int = 65536,
                 formatter: Callable[[Event], str] = to_json_line) -> None:
        self.name = "stdout"
        self._fmt = formatter
        self._stream = stream or sys.stdout
        self._q: Inbox[Event] = Inbox(max_queue)
        self.on_closed: Callable[[str], None] | None = None  # the agent decides: stop, or go on without us
        self.closed = False
        self._t = threading.Thread(target=self._run, name="podtrail-stdout", daemon=True)
        self._t.start()

    def submit(self, ev: Event) -> None:
        try:
            self._q.put_nowait(ev)
        except queue.Full:
            metrics.dropped("stdout", "queue_full")

    def _run(self) -> None:
        s, fmt = self._stream, self._fmt
        while True:
            batch, closed = self._q.take(512, 0.5)
            if batch:
                self._write(s, [fmt(ev) for ev in batch])
            if closed:
                return

    def _write(self, s: IO[str], lines: list[str]) -> None:
        if self.closed:
            metrics.dropped("stdout", "closed", len(lines))
            return
        try:
            s.write("\n".join(lines) + "\n")
            s.flush()
        except (BrokenPipeError, ValueError):
            metrics.dropped("stdout", "closed", len(lines))
            self.closed = True
            if s is sys.stdout:  # nothing reads it any more: the interpreter's last flush must not fail
                from podtrail.cli import _quiet_stdout

                _quiet_stdout()
            if self.on_closed is not None:
                self.on_closed(self.name)

    def close(self) -> None:
        self._q.close()
        self._t.join(10)


def build_stdout(spec: dict[str, Any]) -> StdoutSink:
    fmt = spec.get("format", "json")
    formats = {"json": to_json_line}
    from podtrail.formatters.cef import format_cef
    from podtrail.formatters.ecs_json import format_ecs
    from podtrail.formatters.leef import format_leef

    formats.update(ecs=format_ecs, cef=format_cef, leef=format_leef)
    if fmt not in formats:
        from podtrail.config import ConfigError

        raise ConfigError(f"outputs: stdout format {fmt!r} is not one of {', '.join(formats)}")
    return StdoutSink(formatter=formats[fmt])
