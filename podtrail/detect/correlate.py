"""Streaming Sigma correlations: event_count, value_count, temporal and temporal_ordered.

Each correlation keeps, per group-by key, the recent matches of the rules it references
(time, which rule, event id, counted value) and decides, when a match arrives, whether the
window ending at that match satisfies the condition -- the same windows the SIEM-side
evaluation (pySigma's SQLite backend) anchors at every match: ``[t - timespan, t]``.

- event_count: distinct events in the window; value_count: distinct values of the field
  (case-insensitive, absent values not counted); temporal: distinct referenced rules seen;
  temporal_ordered: the referenced rules matched in their order (each strictly later than the
  previous, earliest choice first) and the count of distinct rules meets the condition.
- Group-by fields pass through the rule's aliases; an event lacking a group-by value is not
  counted (as on the SIEM side). Group values compare case-insensitively.
- After an alert its group starts over, so one burst gives one alert, not one per event.
- Each group keeps running counts (distinct events, values, rules), so a match costs O(1); the
  window's entries are walked only when the condition holds (and for temporal_ordered's order).

Memory is bounded: entries older than the timespan are dropped as matches arrive and by
``expire``; at most ``max_groups`` groups (least recently used evicted) and ``max_events``
entries per group (oldest dropped); every eviction is counted in ``evicted``.
"""

from __future__ import annotations

import itertools
import operator
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from podtrail.detect.predicate import View

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le, "eq": operator.eq, "neq": operator.ne,
}
TYPES = ("event_count", "value_count", "temporal", "temporal_ordered")


@dataclass(frozen=True)
class CorrelationSpec:
    type: str
    span_us: int
    op: str
    count: int
    group_by: list[str]  # the rule's group-by names (aliases or fields), for findings
    group_fields: list[list[str]]  # per referenced rule (slot): the canonical field of each group-by entry
    value_fields: list[str | None]  # per slot: the counted field (value_count)
    n_slots: int


# One match in a group: (time in µs, referenced rule's slot, event id, counted value). A plain
# tuple: one is made for every match of a referenced rule.
Entry = tuple[int, int, str, Any]
TS: Final = 0
SLOT: Final = 1
EID: Final = 2
VALUE: Final = 3
# What each type's condition counts, distinct: the entries' event ids, values, or rules (slots).
MEASURE = {"event_count": EID, "value_count": VALUE, "temporal": SLOT, "temporal_ordered": SLOT}


class Group:
    """One group-by key's matches in time order, with a running count of the distinct things
    the condition measures (event ids, values or referenced rules), so a new match costs O(1)."""

    __slots__ = ("entries", "counts")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.counts: dict[Any, int] = {}  # measured item -> entries holding it (absent values not counted)

    def pop(self, measure: int) -> None:
        c = self.entries.popleft()[measure]
        if c is not None:
            counts = self.counts
            n = counts[c] - 1
            if n:
                counts[c] = n
            else:
                del counts[c]


@dataclass
class Fired:
    trigger_ids: list[str]
    findings: dict[str, Any]


def ts_us(ev: dict[str, Any]) -> int | None:
    """Event time in microseconds (time_ns, else time), as the SIEM-side evaluation reads it."""
    t = ev.get("time_ns")
    if isinstance(t, int) and not isinstance(t, bool):
        return t // 1000
    t = ev.get("time")
    return t * 1_000_000 if isinstance(t, int) and not isinstance(t, bool) else None


@dataclass
class Correlator:
    spec: CorrelationSpec
    max_groups: int = 10000
    max_events: int = 10000
    groups: OrderedDict[tuple[Any, ...], Group] = field(default_factory=OrderedDict)
    evicted: int = 0
    watermark: int = 0

    def __post_init__(self) -> None:
        self.max_events = max(self.max_events, self.spec.count + 1)
        self._ok = OPS[self.spec.op]
        self._group_fields = [tuple(f) for f in self.spec.group_fields]
        self._measure = MEASURE[self.spec.type]

    def add(self, slot: int, view: View) -> Fired | None:
        """A match of referenced rule ``slot``; returns what fired, if the window now qualifies.

        Matches are taken in arrival order (a sensor's order, close to time order): the window
        is the timespan up to this match's time, and a late match counts with newer ones."""
        spec = self.spec
        ev = view.ev
        eid, t = ev.get("event_id"), ev.get("time_ns")
        t = t // 1000 if type(t) is int else ts_us(ev)
        if not eid or t is None:
            return None
        gkey = view.keys(self._group_fields[slot])
        if gkey is None:
            return None
        vf = spec.value_fields[slot]
        value = view.key(vf) if vf else None
        groups = self.groups
        g = groups.get(gkey)
        if g is None:
            g = groups[gkey] = Group()
            if len(groups) > self.max_groups:
                groups.popitem(last=False)
                self.evicted += 1
        else:
            groups.move_to_end(gkey)
        e = (t, slot, eid if type(eid) is str else str(eid), value)
        entries = g.entries
        entries.append(e)
        measure = self._measure
        c = e[measure]
        if c is not None:
            counts = g.counts
            counts[c] = counts.get(c, 0) + 1
        if t > self.watermark:
            self.watermark = t
        lo = t - spec.span_us
        while entries and entries[0][TS] < lo:
            g.pop(measure)
        while len(entries) > self.max_events:
            g.pop(measure)
            self.evicted += 1
        if not self._ok(len(g.counts), spec.count):  # the common case: nothing else to do
            return None
        fired = self._check(g, t)
        if fired is None:
            return None
        del groups[gkey]
        fired.findings["group"] = dict(zip(spec.group_by, gkey, strict=True))
        return fired

    def _check(self, g: Group, t: int) -> Fired | None:
        spec, ok = self.spec, self._ok
        kind = spec.type
        n = len(g.counts)
        if not ok(n, spec.count):
            return None
        window = [e for e in g.entries if e[TS] <= t]
        if kind == "temporal_ordered":
            chain = self._ordered(window)
            if chain is None:
                return None
            window = chain
        ids = list(dict.fromkeys(e[EID] for e in window))
        if kind == "event_count":
            return Fired(ids, {"count": n})
        if kind == "value_count":
            return Fired(ids, {"count": n, "values": list(g.counts)[:50]})
        return Fired(ids, {"rules_seen": n})

    def _ordered(self, window: list[Entry]) -> list[Entry] | None:
        """The earliest-first chain of the referenced rules in order (any ``required`` of them
        for a gte/gt threshold below the rule count), or None."""
        spec = self.spec
        need = spec.count + 1 if spec.op == "gt" else spec.count
        need = max(0, min(need, spec.n_slots))
        for combo in itertools.combinations(range(spec.n_slots), need):
            chain: list[Entry] = []
            prev: int | None = None
            for s in combo:
                best = min((e for e in window if e[SLOT] == s and (prev is None or e[TS] > prev)),
                           key=lambda e: e[TS], default=None)
                if best is None:
                    break
                chain.append(best)
                prev = best[TS]
            else:
                return chain
        return None

    def expire(self) -> None:
        """Drop groups with nothing inside the timespan of the newest match seen."""
        lo = self.watermark - self.spec.span_us
        for k in [k for k, g in self.groups.items() if not g.entries or g.entries[-1][TS] < lo]:
            del self.groups[k]

    def size(self) -> int:
        return sum(len(g.entries) for g in self.groups.values())
