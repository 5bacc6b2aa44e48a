"""Records -> events, as auparse groups them: by (node, time, serial).

An event is complete at its EOE record, at PROCTITLE (the kernel's last record of a
syscall event; logs have no EOE), when it is a one-record user-space type, or when the
stream's clock has moved ``timeout_s`` past it (interleaved and out-of-order records wait
until then). Malformed lines are counted and skipped, never raised.

A read's worth of text is cut into rows by one ``findall`` (``records.ROWS``) and filed by
its rows: no object per record, a ``Record`` is made only when the mapping reads one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby, islice
from operator import itemgetter

from podtrail.audit.records import AuditEvent, Row, text_rows

# Types user space (PAM, login, daemons) writes as whole one-record events; every other
# type waits for EOE, PROCTITLE or the timeout (CONFIG_CHANGE and AVC, for example, come
# before the SYSCALL record of their event).
_SINGLE_PREFIXES = ("USER_", "DAEMON_", "CRED_", "SERVICE_", "SYSTEM_", "ADD_", "DEL_", "ROLE_", "GRP_", "ACCT_")
_SINGLE = frozenset({"LOGIN", "USYS_CONFIG", "TEST", "TRUSTED_APP", "DAEMON_START", "DAEMON_END"})


def single_record(rtype: str) -> bool:
    return rtype in _SINGLE or rtype.startswith(_SINGLE_PREFIXES)


_single: dict[str, bool] = {}  # single_record by type, as met
_KEY, _TYPE = itemgetter(1), itemgetter(0)


class Assembler:
    def __init__(self, timeout_s: float = 2.0, max_open: int = 10000) -> None:
        self.timeout_s = timeout_s
        self.max_open = max_open
        # row key ("[NODE ]SEC.MS:SERIAL") -> (stream clock when its first record came, its rows so far), oldest first
        self._open: dict[str, tuple[float, list[Row]]] = {}
        self._clock = 0.0
        self._input_clock = 0.0  # the clock as the last input left it (idle counts from there)
        self._last_stamp, self._last_t = "", 0.0  # the records of one event share their stamp
        self.malformed = 0
        self.evicted = 0

    def feed_line(self, line: str) -> list[AuditEvent]:
        return self.feed_text(line)

    def feed_lines(self, lines: Iterable[str]) -> list[AuditEvent]:
        return self.feed_text("\n".join(lines))

    def feed_text(self, text: str, lines: int = 0) -> list[AuditEvent]:
        """A read's worth of lines ("\\n"-separated; ``lines``: their number, when the caller
        has counted them) in one call: the events they complete, in order.

        A record of the same event as the record before it (the kernel writes an event's
        records together) joins that event's open rows directly, as ``_add`` would."""
        out: list[AuditEvent] = []
        rows, bad = text_rows(text, lines)
        self.malformed += bad
        op, add, max_open = self._open, self._add, self.max_open
        for key, run in groupby(rows, _KEY):  # the records of one event come together
            g = list(run)
            types = list(map(_TYPE, g))
            n = len(types) - (types[-1] == "EOE")  # the records before a closing EOE (plugin input has them)
            if (n and (types[n - 1] == "PROCTITLE" or n < len(types)) and types.count("PROCTITLE") == (types[n - 1] == "PROCTITLE")
                    and types.count("EOE") == len(types) - n and key not in op and len(op) < max_open
                    and types[0] != "PROCTITLE" and not _single.get(types[0], True)):
                # A whole new event, ended by its PROCTITLE and/or EOE: what _add would do row by row
                # (its first record's _add lets due events expire before it completes; a lone
                # PROCTITLE completes before they do, so it takes the row path).
                if n < len(types):
                    g, types = g[:n], types[:n]
                stamp = key[key.find(" ") + 1:key.rindex(":")]  # a node name has no space
                if stamp != self._last_stamp:
                    self._last_stamp, self._last_t = stamp, float(stamp)
                if self._last_t > self._clock:
                    self._clock = self._last_t
                    if op:
                        self._expire(out)
                out.append(AuditEvent(g, types))
                if op:
                    self._expire(out)
                continue
            slot: list[Row] | None = None  # the run's event, while it is open
            for row in g:
                typ = row[0]
                if slot is not None:
                    if typ == "PROCTITLE":  # the event's last record: as _add would, without moving the clock
                        slot.append(row)
                        del op[key]
                        out.append(AuditEvent(slot))
                        slot = None
                        if op:
                            self._expire(out)
                        continue
                    if typ != "EOE":
                        slot.append(row)
                        continue
                slot = add(typ, key, row, out)
        self._input_clock = self._clock
        return out

    def _add(self, rtype: str, key: str, row: Row, out: list[AuditEvent]) -> list[Row] | None:
        """Add ``row``; completed events go to ``out``. Returns ``row``'s event while it
        stays open (a next record of it may simply be appended).

        An event's age counts from the stream clock when its first record arrived, not from
        its own stamp: the kernel stamps a syscall at entry and writes the records at exit,
        so a slow exec on a loaded machine arrives with a stamp seconds behind the records
        around it, and measured from its stamp it was cut from its EXECVE record at once.
        Open events are therefore in age order, and only the oldest needs checking."""
        stamp = key[key.find(" ") + 1:key.rindex(":")]  # a node name has no space
        if stamp == self._last_stamp:
            t = self._last_t
        else:
            t = float(stamp)  # digits.digits (ROWS)
            self._last_stamp, self._last_t = stamp, t
        # Expiry can only be due when the clock moves or when the oldest open event leaves
        # (EOE, PROCTITLE, eviction).
        check = t > self._clock
        if check:
            self._clock = t
        op = self._open
        if rtype == "EOE":
            ev = op.pop(key, None)
            if ev and ev[1]:
                out.append(AuditEvent(ev[1]))
            if op:
                self._expire(out)
            return None
        slot = op.get(key)
        if slot is None:
            single = _single.get(rtype)
            if single is None:
                single = single_record(rtype)
                if len(_single) < 4096:  # bounded: hostile input could name endless types
                    _single[rtype] = single
            if single:
                out.append(AuditEvent([row]))
                if op:
                    self._expire(out)
                return None
            slot = op[key] = (self._clock, [])
            if len(op) > self.max_open:
                del op[next(iter(op))]
                self.evicted += 1
                check = True
        slot[1].append(row)
        if rtype == "PROCTITLE":
            out.append(AuditEvent(op.pop(key)[1]))
            check = True
        if check and op:
            self._expire(out)
        s = op.get(key)
        return s[1] if s is not None else None

    def idle(self, seconds: float) -> list[AuditEvent]:
        """No input for ``seconds`` of wall time: stream time moves on by as much from where
        the last input left it, and events past the timeout complete. (Not the wall clock
        itself: under load auditd delivers records seconds after the kernel stamped them,
        and an event still arriving must not be cut in two.)"""
        return self.tick(self._input_clock + seconds)

    def tick(self, now: float) -> list[AuditEvent]:
        """Let stream time reach ``now`` without input: events past the timeout complete."""
        if now > self._clock:
            self._clock = now
        out: list[AuditEvent] = []
        self._expire(out)
        return out

    def _expire(self, out: list[AuditEvent]) -> None:
        limit = self._clock - self.timeout_s
        op = self._open
        while op:
            key = next(iter(op))
            t, rows = op[key]
            if t > limit:
                break
            del op[key]
            out.append(AuditEvent(rows))

    def flush(self) -> list[AuditEvent]:
        out = [AuditEvent(rows) for _, rows in self._open.values()]
        self._open.clear()
        return out


def text_chunks(text: str, size: int = 1 << 16) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters cut after a "\\n", as the source reads."""
    i, n = 0, len(text)
    while i < n:
        j = text.find("\n", i + size) if i + size < n else -1
        if j == -1:
            yield text[i:-1] if text[-1] == "\n" else text[i:]
            return
        yield text[i:j]
        i = j + 1


def assemble_text(text: str, timeout_s: float = 2.0) -> Iterator[AuditEvent]:
    """All events of ``text``, fed a read's worth (64 KiB) at a time, as the source feeds it."""
    a = Assembler(timeout_s)
    for chunk in text_chunks(text):
        yield from a.feed_text(chunk)
    yield from a.flush()


def assemble_lines(lines: Iterable[str], timeout_s: float = 2.0) -> Iterator[AuditEvent]:
    a = Assembler(timeout_s)
    it = iter(lines)
    while batch := list(islice(it, 1024)):
        yield from a.feed_lines(batch)
    yield from a.flush()
