"""The normalized event: a flat dict keyed by the canonical names in ``fields.py``.

A plain dict keeps the per-event path cheap (no object per field, no defaults to fill in);
``validate`` checks any event against the declaration, and tests run it on every source.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from podtrail.model.context import EventDict, consistent
from podtrail.model.fields import FIELDS, Field, FieldType, Kind

Event = dict[str, Any]  # every consumer reads an event as a dict; new_event makes an EventDict

RUN_PREFIX = os.urandom(6).hex()
_SEQ = itertools.count(1)
HOSTNAME = socket.gethostname()

# AF_* and IPPROTO_* numbers, spelled out for readability of the model code.
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17


def new_event_id() -> str:
    """Unique per event: a random per-agent-run prefix and a counter (no syscall, no lock)."""
    return f"{RUN_PREFIX}-{next(_SEQ):x}"


def new_event(kind: Kind, action: str, *, time_ns: int | None = None, **values: Any) -> Event:
    """Start an event of ``kind``; sources add their fields, enrichers add context."""
    t = time.time_ns() if time_ns is None else time_ns
    ev = EventDict(event_id=new_event_id(), event_type=kind.value, action=action, time=t // 1_000_000_000,
                   time_ns=t, hostname=HOSTNAME)
    ev.update(values)
    return ev


DERIVED = frozenset({"outcome", "src_address", "src_port", "dst_address", "dst_port", "file_name", "severity"})
_SRC_DST = ("src_address", "src_port", "dst_address", "dst_port")


def derived(ev: Event) -> dict[str, Any]:
    """The fields ``finalize`` derives, computed from the others (whatever ``ev`` holds for
    them now): outcome, initiator-oriented addresses, file name, severity."""
    out: dict[str, Any] = {}
    res = ev.get("result")
    if res is not None:
        out["outcome"] = "failure" if res < 0 else "success"
    if ev.get("event_type") == "socket":
        inbound = ev.get("direction") == "inbound"
        la, lp = ev.get("local_address"), ev.get("local_port")
        ra, rp = ev.get("remote_address"), ev.get("remote_port")
        for name, v in zip(_SRC_DST, (ra, rp, la, lp) if inbound else (la, lp, ra, rp), strict=True):
            if v is not None:
                out[name] = v
    tp = ev.get("target_path")
    if tp:
        out["file_name"] = tp.rstrip("/").rsplit("/", 1)[-1]
    out["severity"] = severity_of(ev)
    return out


def finalize(ev: Event) -> Event:
    """Fill the fields derived from others (outcome, initiator-oriented addresses, file name).

    Called once per event after enrichment, before any consumer sees it (and again by the
    pipeline's delivery: idempotent). A field a source set itself is kept (for the addresses:
    when it set ``src_address``). The same values as ``derived``, computed inline: this runs
    for every event.
    """
    get = ev.get
    et = get("event_type")
    if "outcome" not in ev:
        res = get("result")
        if res is not None:
            ev["outcome"] = "failure" if res < 0 else "success"
    if et == "socket" and "src_address" not in ev:
        d = derived(ev)
        for name in _SRC_DST:
            if name in d:
                ev[name] = d[name]
    if "file_name" not in ev:
        tp = get("target_path")
        if tp:
            ev["file_name"] = tp.rstrip("/").rsplit("/", 1)[-1]
    if "severity" not in ev:
        ev["severity"] = _severity(ev, et)
    return ev


# Severity, 0..10, one table for every consumer (CEF header, LEEF sev, ECS event.severity).
_SEVERITY = {
    ("process", "exec"): 3,
    ("process", "fork"): 1,
    ("process", "exit"): 1,
    ("socket", "connect"): 3,
    ("socket", "accept"): 3,
    ("socket", "bind"): 2,
    ("socket", "listen"): 3,
    ("file", "read"): 6,
    ("agent", "health"): 1,
}


def severity_of(ev: Event) -> int:
    """Map an event to 0..10: the action's base, raised for drift and sensitive files."""
    return _severity(ev, ev.get("event_type", ""))


def _severity(ev: Event, et: Any) -> int:
    get = ev.get
    base = _SEVERITY.get((et, get("action", "")), 4)
    if get("drift"):
        base = max(base, 8)
    if get("sensitive"):
        base = max(base, 7)
    if et == "agent" and get("dropped_before"):
        base = max(base, 6)
    return base


_PY_TYPES: dict[FieldType, tuple[type, ...]] = {
    FieldType.TEXT: (str,),
    FieldType.INTEGER: (int,),
    FieldType.BIGINT: (int,),
    FieldType.DOUBLE: (float, int),
    FieldType.BOOLEAN: (bool,),
    FieldType.TIMESTAMP_NS: (int,),
    FieldType.JSON: (list, dict),
}


def validate(ev: Event) -> list[str]:
    """Problems of ``ev`` against the declaration (unknown keys, wrong types, wrong kind), and
    any attached context entity that disagrees with the event's own values."""
    problems: list[str] = [f"stale context entity field {n}" for n in consistent(ev)]
    try:
        kind = Kind(ev.get("event_type"))
    except ValueError:
        return [f"unknown event_type {ev.get('event_type')!r}"]
    for key, value in ev.items():
        f: Field | None = FIELDS.get(key)
        if f is None:
            problems.append(f"unknown field {key!r}")
            continue
        if kind not in f.kinds:
            problems.append(f"field {key!r} is not declared for {kind.value} events")
        if value is None:
            continue
        ok = _PY_TYPES[f.type]
        if not isinstance(value, ok) or (f.type is not FieldType.BOOLEAN and isinstance(value, bool)):
            problems.append(f"field {key!r}: {type(value).__name__} is not {f.type.value}")
    return problems


def missing(ev: Event, required: Iterable[str]) -> list[str]:
    """Names in ``required`` that ``ev`` lacks (None counts as lacking)."""
    return [n for n in required if ev.get(n) is None]
