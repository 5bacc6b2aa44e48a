"""Records -> events, as auparse groups them: by (node, time, serial).

An event is complete at its EOE record, at PROCTITLE (the kernel's last record of a
syscall event; logs have no EOE), when it is a one-record user-space type, or when the
stream's clock has moved ``timeout_s`` past it (interleaved and out-of-order records wait
until then). Malformed lines are counted and skipped, never raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from podtrail.audit.records import _HEADER, Record

# Types user space (PAM, login, daemons) writes as whole one-record events; every other
# type waits for EOE, PROCTITLE or the timeout (CONFIG_CHANGE and AVC, for example, come
# before the SYSCALL record of their event).
_SINGLE_PREFIXES = ("USER_", "DAEMON_", "CRED_", "SERVICE_", "SYSTEM_", "ADD_", "DEL_", "ROLE_", "GRP_", "ACCT_")
_SINGLE = frozenset({"LOGIN", "USYS_CONFIG", "TEST", "TRUSTED_APP", "DAEMON_START", "DAEMON_END"})


def single_record(rtype: str) -> bool:
    return rtype in _SINGLE or rtype.startswith(_SINGLE_PREFIXES)


class Assembler:
    def __init__(self, timeout_s: float = 2.0, max_open: int = 10000) -> None:
        self.timeout_s = timeout_s
        self.max_open = max_open
        # key -> (stream clock when its first record came, its records so far), oldest first
        self._open: dict[tuple[str, str, int], tuple[float, list[Record]]] = {}
        self._clock = 0.0
        self._input_clock = 0.0  # the clock as the last input left it (idle counts from there)
        self._last_stamp, self._last_t = "", 0.0  # the records of one event share their stamp
        self.malformed = 0
        self.evicted = 0

    def feed_line(self, line: str) -> list[list[Record]]:
        return self.feed_lines((line,))

    def feed_lines(self, lines: Iterable[str]) -> list[list[Record]]:
        """Many lines in one call (a read's worth): the events they complete, in order.

        A record of the same event as the record before it (the kernel writes an event's
        records together) joins that event's open list directly, as ``_add`` would."""
        out: list[list[Record]] = []
        match, lazy = _HEADER.match, Record.lazy
        prev: tuple[str | None, str, str] | None = None  # (node, stamp, serial) text of the previous record
        slot: list[Record] | None = None  # that record's event, while it is open
        serial_n = 0
        for line in lines:
            m = match(line)
            if m is None:
                if line.strip():  # blank lines are not records
                    self.malformed += 1
                prev = None
                continue
            node, typ, stamp, serial = head = m.groups()
            if slot is not None and prev == (node, stamp, serial) and typ != "PROCTITLE" and typ != "EOE":
                slot.append(lazy(typ, node or "", stamp, serial_n, line, m.end()))
                continue
            serial_n = int(serial)
            slot = self._add(lazy(typ, node or "", stamp, serial_n, line, m.end()), out)
            prev = head[0], head[2], head[3]
        self._input_clock = self._clock
        return out

    def feed(self, rec: Record) -> list[list[Record]]:
        out: list[list[Record]] = []
        self._add(rec, out)
        self._input_clock = self._clock
        return out

    def _add(self, rec: Record, out: list[list[Record]]) -> list[Record] | None:
        """Add ``rec``; completed events go to ``out``. Returns ``rec``'s event while it stays
        open (a next record of it may simply be appended).

        An event's age counts from the stream clock when its first record arrived, not from
        its own stamp: the kernel stamps a syscall at entry and writes the records at exit,
        so a slow exec on a loaded machine arrives with a stamp seconds behind the records
        around it, and measured from its stamp it was cut from its EXECVE record at once.
        Open events are therefore in age order, and only the oldest needs checking."""
        stamp = rec.time
        if stamp == self._last_stamp:
            t = self._last_t
        else:
            try:
                t = float(stamp)
            except ValueError:
                self.malformed += 1
                return None
            self._last_stamp, self._last_t = stamp, t
        # Expiry can only be due when the clock moves or when the oldest open event leaves
        # (EOE, PROCTITLE, eviction).
        check = t > self._clock
        if check:
            self._clock = t
        op = self._open
        key = (rec.node, stamp, rec.serial)
        rtype = rec.type
        if rtype == "EOE":
            ev = op.pop(key, None)
            if ev and ev[1]:
                out.append(ev[1])
            if op:
                self._expire(out)
            return None
        slot = op.get(key)
        if slot is None:
            if rtype in _SINGLE or rtype.startswith(_SINGLE_PREFIXES):
                out.append([rec])
                if op:
                    self._expire(out)
                return None
            slot = op[key] = (self._clock, [])
            if len(op) > self.max_open:
                del op[next(iter(op))]
                self.evicted += 1
                check = True
        slot[1].append(rec)
        if rtype == "PROCTITLE":
            out.append(op.pop(key)[1])
            check = True
        if check and op:
            self._expire(out)
        s = op.get(key)
        return s[1] if s is not None else None

    def idle(self, seconds: float) -> list[list[Record]]:
        """No input for ``seconds`` of wall time: stream time moves on by as much from where
        the last input left it, and events past the timeout complete. (Not the wall clock
        itself: under load auditd delivers records seconds after the kernel stamped them,
        and an event still arriving must not be cut in two.)"""
        return self.tick(self._input_clock + seconds)

    def tick(self, now: float) -> list[list[Record]]:
        """Let stream time reach ``now`` without input: events past the timeout complete."""
        if now > self._clock:
            self._clock = now
        out: list[list[Record]] = []
        self._expire(out)
        return out

    def _expire(self, out: list[list[Record]]) -> None:
        limit = self._clock - self.timeout_s
        op = self._open
        while op:
            key = next(iter(op))
            t, recs = op[key]
            if t > limit:
                break
            del op[key]
            out.append(recs)

    def flush(self) -> list[list[Record]]:
        out = [recs for _, recs in self._open.values()]
        self._open.clear()
        return out


def assemble_lines(lines: Iterable[str], timeout_s: float = 2.0) -> Iterator[list[Record]]:
    a = Assembler(timeout_s)
    it = iter(lines)
    while batch := list(islice(it, 1024)):  # a read's worth at a time, as the source feeds it
        yield from a.feed_lines(batch)
    yield from a.flush()
