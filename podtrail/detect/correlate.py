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
from typing import Any

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


@dataclass
class Entry:
    __slots__ = ("ts", "slot", "eid", "value")
    ts: int
    slot: int
    eid: str
    value: Any


class Group:
    """One group-by key's matches in time order, with running counts of what the conditions
    measure (distinct events, values, referenced rules), so a new match costs O(1)."""

    __slots__ = ("entries", "ids", "values", "slots")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.ids: dict[str, int] = {}
        self.values: dict[Any, int] = {}
        self.slots: dict[int, int] = {}

    def push(self, e: Entry) -> None:
        self.entries.append(e)
        ids, slots = self.ids, self.slots
        ids[e.eid] = ids.get(e.eid, 0) + 1
        slots[e.slot] = slots.get(e.slot, 0) + 1
        if e.value is not None:
            self.values[e.value] = self.values.get(e.value, 0) + 1

    def pop(self) -> None:
        e = self.entries.popleft()
        _dec(self.ids, e.eid)
        _dec(self.slots, e.slot)
        if e.value is not None:
            _dec(self.values, e.value)


def _dec(counts: dict[Any, int], key: Any) -> None:
    n = counts[key] - 1
    if n:
        counts[key] = n
    else:
        del counts[key]


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
        key = []
        for f in spec.group_fields[slot]:
            v = view.key(f)
            if v is None:
                return None
            key.append(v)
        gkey = tuple(key)
        vf = spec.value_fields[slot]
        value = view.key(vf) if vf else None
        g = self.groups.get(gkey)
        if g is None:
            g = self.groups[gkey] = Group()
            if len(self.groups) > self.max_groups:
                self.groups.popitem(last=False)
                self.evicted += 1
        else:
            self.groups.move_to_end(gkey)
        g.push(Entry(t, slot, eid if type(eid) is str else str(eid), value))
        if t > self.watermark:
            self.watermark = t
        lo = t - spec.span_us
        entries = g.entries
        while entries and entries[0].ts < lo:
            g.pop()
        while len(entries) > self.max_events:
            g.pop()
            self.evicted += 1
        fired = self._check(g, t)
        if fired is None:
            return None
        del self.groups[gkey]
        fired.findings["group"] = dict(zip(spec.group_by, key, strict=True))
        return fired

    def _check(self, g: Group, t: int) -> Fired | None:
        spec, ok = self.spec, self._ok
        kind = spec.type
        if kind == "event_count":
            n = len(g.ids)
        elif kind == "value_count":
            n = len(g.values)
        else:
            n = len(g.slots)
        if not ok(n, spec.count):
            return None
        window = [e for e in g.entries if e.ts <= t]
        if kind == "temporal_ordered":
            chain = self._ordered(window)
            if chain is None:
                return None
            window = chain
        ids = list(dict.fromkeys(e.eid for e in window))
        if kind == "event_count":
            return Fired(ids, {"count": n})
        if kind == "value_count":
            return Fired(ids, {"count": n, "values": list(g.values)[:50]})
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
                best = min((e for e in window if e.slot == s and (prev is None or e.ts > prev)),
                           key=lambda e: e.ts, default=None)
                if best is None:
                    break
                chain.append(best)
                prev = best.ts
            else:
                return chain
        return None

    def expire(self) -> None:
        """Drop groups with nothing inside the timespan of the newest match seen."""
        lo = self.watermark - self.spec.span_us
        for k in [k for k, g in self.groups.items() if not g.entries or g.entries[-1].ts < lo]:
            del self.groups[k]

    def size(self) -> int:
        return sum(len(g.entries) for g in self.groups.values())
