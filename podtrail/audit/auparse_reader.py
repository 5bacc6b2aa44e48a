"""Audit text -> assembled records with libauparse (python3-audit), the reference parser.

Where ``auparse`` is importable (Debian's python3-audit, seen through the venv's system site
packages), it parses and groups the records in C: the same ``Record`` objects as podtrail's own
parser (values unquoted and hex-decoded by the same rule), except that auparse drops the
ENRICHED part (``enriched`` stays empty; the mapping then names the syscall from its x86_64
number, as it does for RAW logs), in events
as auparse completes them (EOE, its own rules, or its timeout). The mapping to podtrail events
is shared; podtrail's own parser and ``Assembler`` stay as the fallback where auparse is
missing, and a test shows both give identical events on a real auditd log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from podtrail.audit.records import Record, decode_value


def available() -> bool:
    try:
        import auparse  # noqa: F401
    except ImportError:
        return False
    return True


class AuparseAssembler:
    """Feed lines, take completed events (``list[Record]``): the Assembler's interface."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        import auparse

        self._au = au = auparse.AuParser(auparse.AUSOURCE_FEED)
        au.set_eoe_timeout(max(1, int(timeout_s)))
        self._ready = auparse.AUPARSE_CB_EVENT_READY
        self._done: list[list[Record]] = []
        on_event = self._on_event

        def callback(au: Any, cb_type: int, data: Any) -> None:  # auparse wants a plain function
            on_event(au, cb_type, data)

        au.add_callback(callback, None)
        self.malformed = 0  # auparse skips what it cannot parse; it does not report a count
        self.evicted = 0

    def _on_event(self, au: Any, cb_type: int, _data: Any) -> None:
        if cb_type != self._ready:
            return
        recs: list[Record] = []
        if not au.first_record():
            return
        ts = au.get_timestamp()
        node = ts.host or ""
        stamp = f"{ts.sec}.{ts.milli:03d}"
        serial = ts.serial
        name, text, nxt, typ = au.get_field_name, au.get_field_str, au.next_field, au.get_type_name
        while True:
            rtype = typ()
            fields: dict[str, str] = {}
            if au.first_field():
                nxt()  # the first field is type=, already known
                while True:
                    k = name()
                    if k is None:
                        break
                    v = decode_value(k, text(), rtype)
                    if k in fields and k == "key":  # auparse splits a rule's keys (0x01-joined in the record)
                        v = fields[k] + "\x01" + v
                    fields[k] = v
                    if not nxt():
                        break
            recs.append(Record(rtype, node, stamp, serial, fields))
            if not au.next_record():
                break
        self._done.append(recs)

    def _take(self) -> list[list[Record]]:
        out, self._done = self._done, []
        return out

    def feed_lines(self, lines: Iterable[str]) -> list[list[Record]]:
        """Feed many lines at once (one crossing into C) and take what completed."""
        self._au.feed("".join(line + "\n" for line in lines if line.strip()))
        return self._take()

    def feed_text(self, text: str, lines: int = 0) -> list[list[Record]]:
        """A read's worth of "\\n"-separated lines (the source's unit)."""
        return self.feed_lines(text.split("\n"))

    def feed_line(self, line: str) -> list[list[Record]]:
        return self.feed_lines((line,))

    def idle(self, seconds: float) -> list[list[Record]]:
        """No input for a while: auparse completes events past its own timeout."""
        return self.tick(0.0)

    def tick(self, now: float) -> list[list[Record]]:
        """Let time pass without input: auparse completes events past its timeout."""
        self._au.feed_age_events()
        return self._take()

    def flush(self) -> list[list[Record]]:
        self._au.flush_feed()
        return self._take()


def assemble_lines_auparse(lines: Iterable[str], timeout_s: float = 2.0, chunk: int = 4096) -> list[list[Record]]:
    """All events of ``lines`` through auparse (the counterpart of ``assemble_lines``)."""
    a = AuparseAssembler(timeout_s)
    out: list[list[Record]] = []
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= chunk:
            out.extend(a.feed_lines(buf))
            buf = []
    out.extend(a.feed_lines(buf))
    out.extend(a.flush())
    return out
