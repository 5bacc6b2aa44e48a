"""A file of events as indexed SQLite tables, for ``podtrail query/shell --events``.

Events stream from the file into real tables (the same columns as the osquery tables) in a
temporary database file, in batches, so memory stays flat however big the file is, and the
join keys are indexed so joins stay fast. The state tables are rebuilt from the events:
``containers`` and ``pods`` from what the events carry, ``container_processes`` from the
processes that exec'd and did not exit in the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import apsw

from podtrail.tables.cells import render
from podtrail.tables.schema import TABLES, Column, TableSpec
from podtrail.tables.sql import _typed

BATCH = 5000
INDEXED = ("process_key", "parent_key", "pid", "parent", "container_id", "path", "time", "pod_uid")
STATE_TABLES = ("container_processes", "containers", "pods")


def _create(db: apsw.Connection, spec: TableSpec) -> None:
    cols = ", ".join(f'"{c.name}" {c.type}' for c in spec.columns)
    db.execute(f'CREATE TABLE "{spec.name}"({cols})')


def _index(db: apsw.Connection, spec: TableSpec) -> None:
    names = {c.name for c in spec.columns}
    for col in INDEXED:
        if col in names:
            db.execute(f'CREATE INDEX "{spec.name}_{col}" ON "{spec.name}"("{col}")')


def load(events: Iterable[dict[str, Any]], directory: str | None = None) -> apsw.Connection:
    """A connection to a fresh database (its file already unlinked) holding ``events``."""
    fd, path = tempfile.mkstemp(prefix="podtrail-events-", suffix=".db", dir=directory)
    os.close(fd)
    try:
        db = apsw.Connection(path)
    finally:
        os.unlink(path)  # the open connection keeps it; nothing is left behind on any exit
    db.execute("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE")
    by_kind = {spec.kind.value: spec for spec in TABLES.values() if spec.kind is not None}
    for spec in TABLES.values():
        _create(db, spec)
    layouts = {k: _layout(spec) for k, spec in by_kind.items()}
    pending: dict[str, list[tuple[Any, ...]]] = {k: [] for k in by_kind}
    inserts = {k: f'INSERT INTO "{s.name}" VALUES ({",".join("?" * len(s.columns))})' for k, s in by_kind.items()}

    def flush(kind: str) -> None:
        with db:
            db.executemany(inserts[kind], pending[kind])
        pending[kind].clear()

    for ev in events:
        kind = ev.get("event_type")
        if not isinstance(kind, str) or kind not in by_kind:
            continue
        defaults, where = layouts[kind]
        row = list(defaults)
        for key, v in ev.items():  # only the fields the event has (a third of the columns, typically)
            slot = where.get(key)
            if slot is not None:
                row[slot[0]] = v if type(v) is slot[1] else slot[2](v)
        pending[kind].append(tuple(row))
        if len(pending[kind]) >= BATCH:
            flush(kind)
    for kind in by_kind:
        flush(kind)
    with db:
        for spec in TABLES.values():
            _index(db, spec)
        _derive_state(db)
    return db


def _layout(spec: TableSpec) -> tuple[list[Any], dict[str, tuple[int, type, Callable[[Any], Any]]]]:
    """A row of empty values, and per event key: its column, the type stored as it is, and
    the converter for any other value."""
    defaults = [_converter(c)(None) for c in spec.columns]
    where = {c.key: (i, str if c.type == "TEXT" and not c.json else int if c.type != "TEXT" else type(None),
                     _converter(c)) for i, c in enumerate(spec.columns)}
    return defaults, where


def _converter(c: Column) -> Callable[[Any], Any]:
    """An event value -> the stored value, as ``to_row`` then SQLite's affinity would give it
    (without the text round trip: this runs for every column of every event in the file)."""
    if c.json:
        return lambda v: "" if v is None else json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    if c.type == "TEXT":
        return lambda v: "" if v is None else ("1" if v else "0") if isinstance(v, bool) else v if isinstance(v, str) else str(v)

    def numeric(v: Any) -> Any:
        if v is None or isinstance(v, int | float):
            return int(v) if isinstance(v, bool) else v
        return _typed(render(v, False), c.type)
    return numeric


def _first(col: str) -> str:
    return f"max(NULLIF(\"{col}\", ''))"


def _derive_state(db: apsw.Connection) -> None:
    events = " UNION ALL ".join(
        f'SELECT container_id, container_runtime, pod_uid, qos_class, cgroup_path, time, pod_name, namespace, '
        f'container_name, image, image_digest, privileged, workload_kind, workload_name, node_name, '
        f'service_account, pod_ips, host_network, host_pid, pod_labels FROM "{s.name}"'
        for s in TABLES.values() if s.kind is not None)
    db.execute(f"""
        INSERT INTO containers SELECT container_id, {_first('container_runtime')}, {_first('pod_uid')},
            {_first('qos_class')}, {_first('cgroup_path')}, CAST(min(time) AS INTEGER), CAST(max(time) AS INTEGER),
            {_first('pod_name')}, {_first('namespace')}, {_first('container_name')}, {_first('image')},
            {_first('image_digest')}, max(privileged), {_first('workload_kind')}, {_first('workload_name')}
        FROM ({events}) WHERE container_id != '' GROUP BY container_id;
        INSERT INTO pods SELECT pod_uid, {_first('pod_name')}, {_first('namespace')}, {_first('node_name')},
            {_first('service_account')}, {_first('workload_kind')}, {_first('workload_name')}, {_first('pod_ips')},
            max(host_network), max(host_pid), {_first('pod_labels')}, 0
        FROM ({events}) WHERE pod_uid != '' GROUP BY pod_uid;
        INSERT INTO container_processes
        SELECT e.pid, e.parent, e.path, e.cmdline, e.cwd, e.uid, e.comm, e.process_key, e.container_id,
            e.container_runtime, e.pod_uid, e.pod_name, e.namespace, e.container_name, e.image, e.workload_kind,
            e.workload_name, e.cgroup_path
        FROM container_process_events e
        JOIN (SELECT process_key, max(time) AS t FROM container_process_events
              WHERE action = 'exec' AND process_key != '' GROUP BY process_key) last
          ON e.process_key = last.process_key AND e.time = last.t
        WHERE e.action = 'exec'
          AND e.process_key NOT IN (SELECT process_key FROM container_process_events WHERE action = 'exit')
        GROUP BY e.process_key;
    """)
