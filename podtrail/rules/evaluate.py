"""Run the shipped Sigma rules on podtrail events, with pySigma's SQLite backend.

Events (canonical dicts, as every podtrail output carries them) are loaded into one SQLite
table whose columns are the declared fields; the rules convert with the ``sqlite`` target and
run as SQL. Semantics follow what a SIEM sees: an empty string is absent (CEF and ECS drop
empty values), text compares case-insensitively (Sigma's default), JSON fields hold compact
JSON text. Used by the tests and by ``podtrail rules test``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from podtrail.model.fields import FIELDS_LIST, FieldType
from podtrail.rules.catalog import RuleFile, load, rule_files
from podtrail.rules.pipeline import build_pipeline
from podtrail.rules.targets import TARGETS

TABLE = "events"
# Correlation time: microseconds from time_ns (else from time), so "A then B" within one second
# keeps its order; `time` alone has whole seconds.
TIME_COLUMN = "time_us"
_SQL_TYPES = {FieldType.INTEGER: "INTEGER", FieldType.BIGINT: "INTEGER", FieldType.BOOLEAN: "INTEGER",
              FieldType.TIMESTAMP_NS: "INTEGER", FieldType.DOUBLE: "REAL"}


def _column(f: Any) -> str:
    t = _SQL_TYPES.get(f.type)
    return f"`{f.name}` {t}" if t else f"`{f.name}` TEXT COLLATE NOCASE"


def _value(v: Any) -> Any:
    if v == "" or v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, list | dict):
        return json.dumps(v, separators=(",", ":"))
    return v


def _time_us(ev: dict[str, Any]) -> int | None:
    if isinstance(ev.get("time_ns"), int):
        return int(ev["time_ns"]) // 1000
    return int(ev["time"]) * 1_000_000 if isinstance(ev.get("time"), int) else None


def _regexp(pattern: str, value: Any) -> bool:
    """SQLite's ``value REGEXP pattern`` (it has no built-in one): Python's re.search, as Zircolite."""
    return value is not None and re.search(pattern, str(value)) is not None


def event_db(events: Iterable[dict[str, Any]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.create_function("REGEXP", 2, _regexp, deterministic=True)
    names = [f.name for f in FIELDS_LIST]
    columns = [_column(f) for f in FIELDS_LIST] + [f"`{TIME_COLUMN}` INTEGER"]
    db.execute(f"CREATE TABLE {TABLE} ({', '.join(columns)})")
    rows = ([*(_value(ev.get(n)) for n in names), _time_us(ev)] for ev in events)
    db.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(columns))})", rows)
    db.execute(f"CREATE INDEX events_id ON {TABLE} (event_id)")
    return db


def sqlite_queries(rf: RuleFile, files: list[RuleFile]) -> list[str]:
    from sigma.backends.sqlite import sqliteBackend

    backend = sqliteBackend(build_pipeline(TARGETS["sqlite"]), table=TABLE, timestamp_field=TIME_COLUMN,
                            timestamp_format="unix_us", event_id_field="event_id")
    return [str(q) for q in backend.convert(load(rf, files))]


@dataclass(frozen=True)
class Hit:
    rule: str
    level: str
    rows: list[dict[str, Any]]  # matching events (alerts) or correlation groups


def evaluate(events: Iterable[dict[str, Any]], *, include_base: bool = False,
             files: list[RuleFile] | None = None) -> dict[str, Hit]:
    """Rules that fire on ``events``: name -> Hit. Building blocks only with ``include_base``."""
    files = files if files is not None else rule_files()
    db = event_db(events)
    db.row_factory = sqlite3.Row
    hits: dict[str, Hit] = {}
    for rf in files:
        if rf.kind == "base" and not include_base:
            continue
        target = rf
        if rf.kind == "base":  # a building block has no output of its own: run it as an alert
            target = RuleFile(rf.path, rf.name, "alert", rf.doc)
        rows = [dict(r) for q in sqlite_queries(target, files) for r in db.execute(q)]
        if rows:
            hits[rf.name] = Hit(rf.name, rf.doc["level"], rows)
    return hits
