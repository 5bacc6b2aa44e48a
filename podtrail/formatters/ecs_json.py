"""JSON with Elastic Common Schema names (``process.*``, ``container.*``, ``orchestrator.*``,
``host.*``), paths and value renames taken from the field declaration."""

from __future__ import annotations

import json
import time
from typing import Any

from podtrail.model.fields import FIELDS_LIST, FieldType

# canonical name -> (path parts, value renames, is timestamp)
_PLAN: dict[str, tuple[list[str], dict[str, str], bool]] = {
    f.name: (f.ecs.split("."), f.ecs_values, f.type is FieldType.TIMESTAMP_NS) for f in FIELDS_LIST if f.ecs
}


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{(ns // 1_000_000) % 1000:03d}Z"


def to_ecs(ev: dict[str, Any]) -> dict[str, Any]:
    kind = "alert" if ev.get("event_type") == "alert" else "event"
    doc: dict[str, Any] = {"ecs": {"version": "8.11.0"}, "event": {"module": "podtrail", "kind": kind}}
    for name, v in ev.items():
        plan = _PLAN.get(name)
        if plan is None or v is None:
            continue
        parts, renames, is_ts = plan
        if is_ts:
            v = _iso(v)
        elif renames and isinstance(v, str):
            v = renames.get(v, v)
        node = doc
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = v
    return doc


def format_ecs(ev: dict[str, Any]) -> str:
    return json.dumps(to_ecs(ev), ensure_ascii=True, separators=(",", ":"), default=str)
