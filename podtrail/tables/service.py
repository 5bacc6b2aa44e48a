"""The tables themselves: ``generate(table, constraints)`` over buffers and live state.

One implementation serves osqueryd (Thrift), the local API (``podtrail extension`` proxies)
and the embedded SQL engine (``podtrail query``/``shell``), so all three answer alike.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from podtrail.tables.buffer import EventBuffers
from podtrail.tables.constraints import (
    EQUALS,
    GREATER_THAN,
    GREATER_THAN_OR_EQUALS,
    LESS_THAN,
    LESS_THAN_OR_EQUALS,
    Constraint,
    matcher,
)
from podtrail.tables.schema import TABLES, TableSpec

Snapshot = Callable[[], Iterable[dict[str, Any]]]


_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # built once, not per value


def render(value: Any, as_json: bool) -> str:
    """osquery hands every value over as text."""
    if value is None:
        return ""
    if as_json:
        return _json(value)
    if value is True or value is False:
        return "1" if value else "0"
    return str(value)


RowMaker = Callable[[dict[str, Any]], dict[str, str]]


@functools.cache
def row_maker(spec: TableSpec) -> RowMaker:
    """``to_row`` for one table, its column list split once: text values (most) pass as
    they are; the rest go through ``render``. A ``SELECT *`` calls it per row."""
    plain = tuple((c.name, c.key) for c in spec.columns if not c.json)
    as_json = tuple((c.name, c.key) for c in spec.columns if c.json)

    def make(d: dict[str, Any]) -> dict[str, str]:
        get = d.get
        row = {}
        for name, key in plain:
            v = get(key)
            if v.__class__ is str:
                row[name] = v
            elif v is None:
                row[name] = ""
            else:
                row[name] = render(v, False)
        for name, key in as_json:
            v = get(key)
            row[name] = "" if v is None else _json(v)
        return row

    return make


def to_row(spec: TableSpec, d: dict[str, Any]) -> dict[str, str]:
    return row_maker(spec)(d)


def _time_bounds(cs: list[Constraint]) -> tuple[float | None, float | None]:
    lo = hi = None
    for c in cs:
        if c.column != "time":
            continue
        try:
            v = float(c.expr)
        except ValueError:
            continue
        if c.op in (GREATER_THAN, GREATER_THAN_OR_EQUALS, EQUALS):
            lo = v if lo is None else max(lo, v)
        if c.op in (LESS_THAN, LESS_THAN_OR_EQUALS, EQUALS):
            hi = v if hi is None else min(hi, v)
    return lo, hi


@dataclass
class TableService:
    buffers: EventBuffers
    processes: Snapshot = field(default=lambda: [])
    containers: Snapshot = field(default=lambda: [])
    pods: Snapshot = field(default=lambda: [])
    profiles: Snapshot = field(default=lambda: [])

    def specs(self) -> dict[str, TableSpec]:
        return TABLES

    def generate(self, table: str, constraints: list[Constraint] | None = None) -> list[dict[str, str]]:
        return list(self.select(table, constraints)[1])

    def select(self, table: str, constraints: list[Constraint] | None = None) -> tuple[int, Iterator[dict[str, str]]]:
        """(row count, rows rendered one at a time): only references to the matching
        events are held, so a ``SELECT *`` can be streamed out without a list of row dicts."""
        spec = TABLES.get(table)
        if spec is None:
            raise KeyError(f"no such table: {table}")
        cs = constraints or []
        pred = matcher(cs, {c.name: c.key for c in spec.columns})
        if spec.kind is not None:
            lo, hi = _time_bounds(cs)
            source: Iterable[dict[str, Any]] = self.buffers.events(spec.kind, lo, hi)
        else:
            source = {"container_processes": self.processes, "containers": self.containers, "pods": self.pods,
                      "container_profiles": self.profiles}[table]()
        matched = [d for d in source if pred(d)]
        return len(matched), map(row_maker(spec), matched)
