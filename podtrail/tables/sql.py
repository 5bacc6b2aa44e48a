"""SQL without osqueryd: the same tables as SQLite virtual tables (apsw), osquery's dialect.

``Generate`` is any ``(table, constraints) -> rows`` callable: the daemon's TableService
in-process, or the local-API client talking to the running daemon.

Joins must not be quadratic: each statement takes one snapshot of every table it reads
(one ``generate`` call, also one consistent view), and ``BestIndex`` offers SQLite equality
lookups on any column and range scans on numeric ones, answered from hash and sorted
indexes built on the snapshot when first asked for. A self-join on process_key/parent_key,
pid, container_id, path or a time window is then O(n log n), not O(n²).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Sequence
from typing import Any

import apsw
import apsw.ext

from podtrail.tables.constraints import Constraint
from podtrail.tables.schema import TableSpec

Generate = Callable[[str, list[Constraint]], list[dict[str, str]]]

_AFFINITY = {"TEXT": str, "INTEGER": int, "BIGINT": int, "DOUBLE": float}
_EQ = apsw.SQLITE_INDEX_CONSTRAINT_EQ
_RANGE = {apsw.SQLITE_INDEX_CONSTRAINT_GT, apsw.SQLITE_INDEX_CONSTRAINT_GE,
          apsw.SQLITE_INDEX_CONSTRAINT_LT, apsw.SQLITE_INDEX_CONSTRAINT_LE}


def _typed(value: str, typ: str) -> Any:
    """SQLite's numeric affinity: '7' -> 7, '1000.5' (or '1000.0' in an integer column) -> float."""
    if typ == "TEXT":
        return value
    if value == "":
        return None
    try:
        return _AFFINITY[typ](value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _span(keys: list[Any], lo: tuple[Any, bool] | None, hi: tuple[Any, bool] | None) -> tuple[int, int]:
    """``keys[a:b]`` are the sorted keys within ``lo``..``hi`` (each: value, inclusive)."""
    a = 0 if lo is None else (bisect.bisect_left if lo[1] else bisect.bisect_right)(keys, lo[0])
    b = len(keys) if hi is None else (bisect.bisect_right if hi[1] else bisect.bisect_left)(keys, hi[0])
    return a, max(a, b)


class _Snapshot:
    """One table's rows for one statement, typed, with indexes built on first use."""

    def __init__(self, spec: TableSpec, rows: list[dict[str, str]]) -> None:
        self.spec = spec
        self.rows = rows
        self.n = len(rows)
        self._cols: dict[int, list[Any]] = {}  # only the columns a statement touches get typed
        self._hash: dict[int, dict[Any, list[int]]] = {}
        self._sorted: dict[int, tuple[list[Any], list[int]]] = {}
        self._composite: dict[tuple[int, int], dict[Any, tuple[list[Any], list[int]]]] = {}

    def col(self, i: int) -> list[Any]:
        c = self._cols.get(i)
        if c is None:
            name, typ = self.spec.columns[i].name, self.spec.columns[i].type
            c = self._cols[i] = [_typed(r.get(name, ""), typ) for r in self.rows]
        return c

    def _hash_of(self, col: int) -> dict[Any, list[int]]:
        idx = self._hash.get(col)
        if idx is None:
            idx = self._hash[col] = {}
            for i, v in enumerate(self.col(col)):
                idx.setdefault(v, []).append(i)
        return idx

    def _key(self, col: int, value: Any) -> Any:
        """SQLite compares '42' = 42 on a numeric column."""
        if isinstance(value, str) and self.spec.columns[col].type != "TEXT":
            try:
                return int(value)
            except ValueError:
                return value
        return value

    def equal(self, col: int, value: Any) -> list[int]:
        return self._hash_of(col).get(self._key(col, value)) or []

    def equal_between(self, col: int, value: Any, rcol: int, lo: tuple[Any, bool] | None,
                      hi: tuple[Any, bool] | None) -> list[int]:
        """Rows with ``col = value`` and ``rcol`` in a range: a composite index (each ``col``
        bucket sorted by ``rcol``), for joins such as same path within a time window."""
        idx = self._composite.get((col, rcol))
        if idx is None:
            rvals = self.col(rcol)
            idx = self._composite[(col, rcol)] = {}
            for key, ids in self._hash_of(col).items():
                pairs = sorted((rvals[i], i) for i in ids if isinstance(rvals[i], int | float))
                idx[key] = ([v for v, _ in pairs], [i for _, i in pairs])
        bucket = idx.get(self._key(col, value))
        if bucket is None:
            return []
        keys, pos = bucket
        a, b = _span(keys, lo, hi)
        return pos[a:b]

    def between(self, col: int, lo: tuple[Any, bool] | None, hi: tuple[Any, bool] | None) -> tuple[list[int], int, int]:
        """Rows with ``lo <= value <= hi`` (each bound inclusive or not) as positions
        ``pos[a:b]`` of the column's sorted order; counting them costs two bisections."""
        s = self._sorted.get(col)
        if s is None:
            pairs = sorted((v, i) for i, v in enumerate(self.col(col)) if isinstance(v, int | float))
            s = self._sorted[col] = ([v for v, _ in pairs], [i for _, i in pairs])
        keys, pos = s
        a, b = _span(keys, lo, hi)
        return pos, a, b


_CMP = {
    apsw.SQLITE_INDEX_CONSTRAINT_EQ: lambda a, b: a == b,
    apsw.SQLITE_INDEX_CONSTRAINT_GT: lambda a, b: a > b,
    apsw.SQLITE_INDEX_CONSTRAINT_GE: lambda a, b: a >= b,
    apsw.SQLITE_INDEX_CONSTRAINT_LT: lambda a, b: a < b,
    apsw.SQLITE_INDEX_CONSTRAINT_LE: lambda a, b: a <= b,
}


def _may_match(v: Any, op: int, x: Any) -> bool:
    """False only when the row surely fails the constraint; mixed types are left to SQLite
    (which re-checks every row returned) so its affinity rules stay the only truth."""
    if v is None or isinstance(v, str) != isinstance(x, str) or isinstance(v, bytes) or isinstance(x, bytes):
        return True
    return bool(_CMP[op](v, x))


class _Cursor:
    def __init__(self, table: _Table) -> None:
        self.table = table
        self.snap: _Snapshot | None = None
        self.ids: Sequence[int] = ()
        self.i = 0

    def Filter(self, indexnum: int, indexname: str, constraintargs: tuple[Any, ...]) -> None:  # noqa: N802
        snap = self.snap = self.table.snapshot()
        self.i = 0
        plan = self.table.plan(indexname)
        if not plan:
            self.ids = range(snap.n)
            return
        if len(plan) == 1 and plan[0][1] == _EQ:  # the common join step: one key lookup
            self.ids = snap.equal(plan[0][0], constraintargs[0]) if constraintargs[0] is not None else ()
            return
        # SQLite re-checks every constraint on the rows we return (none is omitted), so the
        # cursor only has to return a superset: the rows of the most selective constraint.
        best: Sequence[int] | None = None
        ranges: dict[int, list[Any]] = {}
        equals: list[tuple[int, Any]] = []
        for (col, op), value in zip(plan, constraintargs, strict=True):
            if value is None:
                self.ids = ()  # x = NULL / x > NULL matches nothing
                return
            if op == _EQ:
                equals.append((col, value))
                hit = snap.equal(col, value)
                if best is None or len(hit) < len(best):
                    best = hit
            else:
                lo_hi = ranges.setdefault(col, [None, None])
                if op in (apsw.SQLITE_INDEX_CONSTRAINT_GT, apsw.SQLITE_INDEX_CONSTRAINT_GE):
                    lo_hi[0] = (value, op == apsw.SQLITE_INDEX_CONSTRAINT_GE)
                else:
                    lo_hi[1] = (value, op == apsw.SQLITE_INDEX_CONSTRAINT_LE)
        for col, (lo, hi) in ranges.items():
            pos, a, b = snap.between(col, lo, hi)
            if best is None or b - a < len(best):
                best = pos[a:b]
        if equals and ranges and best is not None and len(best) > 8:  # an equality bucket narrowed by a range
            (ecol, evalue), (rcol, (lo, hi)) = min(equals, key=lambda e: len(snap.equal(*e))), next(iter(ranges.items()))
            best = snap.equal_between(ecol, evalue, rcol, lo, hi)
        if best is None:
            self.ids = range(snap.n)
            return
        if len(plan) > 1 and len(best) > 1:  # narrow by the other constraints here: cheaper than SQLite asking per column
            checks = [(snap.col(col), op, value) for (col, op), value in zip(plan, constraintargs, strict=True)]
            best = [i for i in best if all(_may_match(vals[i], op, value) for vals, op, value in checks)]
        self.ids = best

    def Eof(self) -> bool:  # noqa: N802
        return self.i >= len(self.ids)

    def Rowid(self) -> int:  # noqa: N802
        return self.ids[self.i]

    def Column(self, col: int) -> Any:  # noqa: N802
        assert self.snap is not None
        row = self.ids[self.i]
        return row if col == -1 else self.snap.col(col)[row]

    def Next(self) -> None:  # noqa: N802
        self.i += 1

    def Close(self) -> None:  # noqa: N802
        self.snap, self.ids = None, ()


class _Table:
    def __init__(self, spec: TableSpec, generate: Generate, generation: list[int]) -> None:
        self.spec = spec
        self.generate = generate
        self._generation = generation  # shared with the connection: bumped per statement
        self._snap: tuple[int, _Snapshot] | None = None
        self._numeric = {i for i, c in enumerate(spec.columns) if c.type != "TEXT"}
        self._plans: dict[str, list[tuple[int, int]]] = {}

    def plan(self, indexname: str) -> list[tuple[int, int]]:
        """BestIndex's plan, parsed once (Filter runs once per outer row of a join)."""
        p = self._plans.get(indexname)
        if p is None:
            p = self._plans[indexname] = [tuple(x) for x in json.loads(indexname)] if indexname else []  # type: ignore[misc]
        return p

    def snapshot(self) -> _Snapshot:
        gen = self._generation[0]
        if self._snap is None or self._snap[0] != gen:
            self._snap = (gen, _Snapshot(self.spec, self.generate(self.spec.name, [])))
        return self._snap[1]

    def BestIndex(self, constraints: Sequence[tuple[int, int]], orderbys: Any) -> Any:  # noqa: N802
        used: list[int | None] = []
        plan: list[tuple[int, int]] = []
        cost = 1e6
        for col, op in constraints:
            if col >= 0 and (op == _EQ or (op in _RANGE and col in self._numeric)):
                used.append(len(plan))  # SQLite re-checks every row (no omit): exactness stays SQLite's
                plan.append((col, op))
                cost /= 100.0 if op == _EQ else 4.0  # more constraints, fewer rows: SQLite picks the tightest plan
            else:
                used.append(None)
        if not plan:
            return None
        return used, 0, json.dumps(plan), False, cost

    def Open(self) -> _Cursor:  # noqa: N802
        return _Cursor(self)

    def Disconnect(self) -> None:  # noqa: N802
        return None

    Destroy = Disconnect


class _Module:
    def __init__(self, spec: TableSpec, generate: Generate, generation: list[int]) -> None:
        self.spec = spec
        self.generate = generate
        self.generation = generation

    def Create(self, db: Any, modulename: str, dbname: str, tablename: str, *args: Any) -> tuple[str, _Table]:  # noqa: N802
        cols = ", ".join(f'"{c.name}" {c.type}' + (" HIDDEN" if c.options & 16 else "") for c in self.spec.columns)
        return f'CREATE TABLE "{tablename}"({cols})', _Table(self.spec, self.generate, self.generation)

    Connect = Create


_GENERATIONS: dict[int, list[int]] = {}


def connect(specs: dict[str, TableSpec], generate: Generate) -> apsw.Connection:
    db = apsw.Connection(":memory:")
    generation = [0]
    _GENERATIONS[id(db)] = generation
    for name, spec in specs.items():
        db.createmodule(name, _Module(spec, generate, generation))  # type: ignore[arg-type]  # apsw's protocol types ShadowName etc. as required
        db.execute(f'CREATE VIRTUAL TABLE temp."{name}" USING "{name}"')
    return db


class EmptySQL(ValueError):
    """The text holds no statement (only blanks, comments or ';')."""


def query(db: apsw.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` (its last statement's columns and rows). The column names come from the
    prepared statement, so an empty result still has its header."""
    gen = _GENERATIONS.get(id(db))
    if gen is not None:
        gen[0] += 1  # a fresh snapshot of the tables for this statement
    if not apsw.complete(sql.strip() + ";") or not sql.strip().strip(";").strip():
        raise EmptySQL("no SQL statement given")
    cur = db.cursor()
    cur.execute(sql)
    try:
        cols = [d[0] for d in cur.getdescription()]
    except apsw.ExecutionCompleteError:
        return _columns_of_last(db, sql), []
    return cols, list(cur)


def _columns_of_last(db: apsw.Connection, sql: str) -> list[str]:
    """Column names of the last statement in ``sql`` without running it again."""
    info = apsw.ext.query_info(db, sql)
    while info.query_remaining and info.query_remaining.strip().strip(";").strip():
        info = apsw.ext.query_info(db, info.query_remaining)
    return [d[0] for d in info.description or ()]
