"""Records -> events, as auparse groups them: by (node, time, serial).

An event is complete at its EOE record, at PROCTITLE (the kernel's last record of a
syscall event; logs have no EOE), when it is a one-record user-space type, or when the
stream's clock has moved ``timeout_s`` past it (interleaved and out-of-order records wait
until then). Malformed lines are counted and skipped, never raised.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from podtrail.audit.records import MalformedRecord, Record, parse_record

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
        # key -> (event time as a float, its records so far), oldest first
        self._open: OrderedDict[tuple[str, str, int], tuple[float, list[Record]]] = OrderedDict()
        self._clock = 0.0
        self._last_stamp, self._last_t = "", 0.0  # the records of one event share their stamp
        self.malformed = 0
        self.evicted = 0

    def feed_line(self, line: str) -> list[list[Record]]:
        if not line.strip():
            return []
        try:
            rec = parse_record(line)
        except (MalformedRecord, ValueError, IndexError):
            self.malformed += 1
            return []
        return self.feed(rec)

    def feed(self, rec: Record) -> list[list[Record]]:
        stamp = rec.time
        if stamp == self._last_stamp:
            t = self._last_t
        else:
            try:
                t = float(stamp)
            except ValueError:
                self.malformed += 1
                return []
            self._last_stamp, self._last_t = stamp, t
        if t > self._clock:
            self._clock = t
        key = (rec.node, stamp, rec.serial)
        if rec.type == "EOE":
            ev = self._open.pop(key, None)
            done = [ev[1]] if ev and ev[1] else []
            return done + self._expire() if self._open else done
        slot = self._open.get(key)
        if slot is None:
            if single_record(rec.type):
                return [[rec], *self._expire()] if self._open else [[rec]]
            slot = self._open[key] = (t, [])
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
                self.evicted += 1
        slot[1].append(rec)
        if rec.type == "PROCTITLE":
            done = [self._open.pop(key)[1]]
            return done + self._expire() if self._open else done
        return self._expire()

    def tick(self, now: float) -> list[list[Record]]:
        """Let time pass without input (a quiet log): events past the timeout complete."""
        if now > self._clock:
            self._clock = now
        return self._expire()

    def _expire(self) -> list[list[Record]]:
        out: list[list[Record]] = []
        limit = self._clock - self.timeout_s
        op = self._open
        while op:
            t, recs = next(iter(op.values()))
            if t > limit:
                break
            op.popitem(last=False)
            out.append(recs)
        return out

    def flush(self) -> list[list[Record]]:
        out = [recs for _, recs in self._open.values()]
        self._open.clear()
        return out


def assemble_lines(lines: Iterable[str], timeout_s: float = 2.0) -> Iterator[list[Record]]:
    a = Assembler(timeout_s)
    for line in lines:
        yield from a.feed_line(line)
    yield from a.flush()
