"""SQL without osqueryd: the same tables as SQLite virtual tables (apsw), osquery's dialect.

``Generate`` is any ``(table, constraints) -> rows`` callable: the daemon's TableService
in-process, or the local-API client talking to the running daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apsw

from podtrail.tables.constraints import Constraint
from podtrail.tables.schema import TableSpec

Generate = Callable[[str, list[Constraint]], list[dict[str, str]]]

_AFFINITY = {"TEXT": str, "INTEGER": int, "BIGINT": int, "DOUBLE": float}


def _typed(value: str, typ: str) -> Any:
    if value == "" and typ != "TEXT":
        return None
    try:
        return _AFFINITY[typ](value)
    except ValueError:
        return value


class _Cursor:
    def __init__(self, table: _Table) -> None:
        self.table = table
        self.rows: list[dict[str, str]] = []
        self.i = 0

    def Filter(self, indexnum: int, indexname: str, constraintargs: tuple[Any, ...]) -> None:  # noqa: N802
        self.rows = self.table.generate(self.table.spec.name, [])
        self.i = 0

    def Eof(self) -> bool:  # noqa: N802
        return self.i >= len(self.rows)

    def Rowid(self) -> int:  # noqa: N802
        return self.i

    def Column(self, col: int) -> Any:  # noqa: N802
        if col == -1:
            return self.i
        c = self.table.spec.columns[col]
        return _typed(self.rows[self.i].get(c.name, ""), c.type)

    def Next(self) -> None:  # noqa: N802
        self.i += 1

    def Close(self) -> None:  # noqa: N802
        self.rows = []


class _Table:
    def __init__(self, spec: TableSpec, generate: Generate) -> None:
        self.spec = spec
        self.generate = generate

    def BestIndex(self, *args: Any) -> None:  # noqa: N802
        return None

    def Open(self) -> _Cursor:  # noqa: N802
        return _Cursor(self)

    def Disconnect(self) -> None:  # noqa: N802
        return None

    Destroy = Disconnect


class _Module:
    def __init__(self, spec: TableSpec, generate: Generate) -> None:
        self.spec = spec
        self.generate = generate

    def Create(self, db: Any, modulename: str, dbname: str, tablename: str, *args: Any) -> tuple[str, _Table]:  # noqa: N802
        cols = ", ".join(f'"{c.name}" {c.type}' + (" HIDDEN" if c.options & 16 else "") for c in self.spec.columns)
        return f'CREATE TABLE "{tablename}"({cols})', _Table(self.spec, self.generate)

    Connect = Create


def connect(specs: dict[str, TableSpec], generate: Generate) -> apsw.Connection:
    db = apsw.Connection(":memory:")
    for name, spec in specs.items():
        db.createmodule(name, _Module(spec, generate))  # type: ignore[arg-type]  # apsw's protocol types ShadowName etc. as required
        db.execute(f'CREATE VIRTUAL TABLE temp."{name}" USING "{name}"')
    return db


def query(db: apsw.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = db.cursor()
    cur.execute(sql)
    try:
        cols = [d[0] for d in cur.getdescription()]
    except apsw.ExecutionCompleteError:
        return [], []
    return cols, list(cur)
