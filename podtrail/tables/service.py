"""The tables themselves: ``generate(table, constraints)`` over buffers and live state.

One implementation serves osqueryd (Thrift), the local API (``podtrail extension`` proxies)
and the embedded SQL engine (``podtrail query``/``shell``), so all three answer alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from podtrail.tables.buffer import EventBuffers
from podtrail.tables.cells import json_text, render
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
from podtrail.tables.wire import TableWriter, WireRows

Snapshot = Callable[[], Iterable[dict[str, Any]]]
Record = tuple[Any, ...]


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
            row[name] = "" if v is None else json_text(v)
        return row

    return make


def to_row(spec: TableSpec, d: dict[str, Any]) -> dict[str, str]:
    return row_maker(spec)(d)


@functools.cache
def writer(spec: TableSpec) -> TableWriter:
    """The wire writer of an evented table (its plans are kept across queries)."""
    make = row_maker(spec)
    materialize = EventBuffers.materialize
    return TableWriter(spec, lambda rec: make(materialize(rec)))


def record_filter(spec: TableSpec, cs: list[Constraint]) -> Callable[[Record], bool] | None:
    """A predicate over buffer records for the constraints osquery pushed down, reading only
    the constrained values (None: every record matches)."""
    key_of = {c.name: c.key for c in spec.columns}
    keys = tuple(dict.fromkeys(key_of[c.column] for c in cs if c.column in key_of))
    if not keys:
        return None
    pred = matcher(cs, key_of)
    w = writer(spec)
    getters: dict[Any, tuple[Callable[[Record], Any], ...] | None] = {}
    unknown: Any = object()
    materialize = EventBuffers.materialize

    def keep(rec: Record) -> bool:
        shape = rec[2]
        gs = getters.get(shape, unknown)
        if gs is unknown:
            got = [w.getter(shape, k) for k in keys]
            gs = getters[shape] = None if None in got else tuple(got)  # type: ignore[arg-type]
        if gs is None:
            return bool(pred(materialize(rec)))
        return bool(pred({k: g(rec) for k, g in zip(keys, gs, strict=True)}))

    return keep


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

    def _records(self, spec: TableSpec, cs: list[Constraint]) -> list[Record]:
        assert spec.kind is not None
        lo, hi = _time_bounds(cs)
        recs = self.buffers.records(spec.kind, lo, hi)
        keep = record_filter(spec, cs)
        return recs if keep is None else [r for r in recs if keep(r)]

    def _state(self, spec: TableSpec, cs: list[Constraint]) -> list[dict[str, Any]]:
        pred = matcher(cs, {c.name: c.key for c in spec.columns})
        source = {"container_processes": self.processes, "containers": self.containers, "pods": self.pods,
                  "container_profiles": self.profiles}[spec.name]()
        return [d for d in source if pred(d)]

    def select(self, table: str, constraints: list[Constraint] | None = None) -> tuple[int, Iterator[dict[str, str]]]:
        """(row count, rows rendered one at a time): only references to the matching
        events are held, so a ``SELECT *`` can be streamed out without a list of row dicts."""
        spec = _spec(table)
        cs = constraints or []
        if spec.kind is not None:
            recs = self._records(spec, cs)
            return len(recs), map(writer(spec).fallback, recs)
        matched = self._state(spec, cs)
        return len(matched), map(row_maker(spec), matched)

    def select_wire(self, table: str, constraints: list[Constraint] | None = None) -> tuple[int, Iterable[dict[str, str]]]:
        """``select`` for the Thrift extension: an evented table's rows come as ``WireRows``
        (written as bytes from the buffer records, no row dicts); state tables as dicts."""
        spec = _spec(table)
        if spec.kind is None:
            return self.select(table, constraints)
        recs = self._records(spec, constraints or [])
        return len(recs), WireRows(writer(spec), recs)


def _spec(table: str) -> TableSpec:
    spec = TABLES.get(table)
    if spec is None:
        raise KeyError(f"no such table: {table}")
    return spec
