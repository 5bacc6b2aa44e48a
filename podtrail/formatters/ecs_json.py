"""JSON with Elastic Common Schema names (``process.*``, ``container.*``, ``orchestrator.*``,
``host.*``), paths and value renames taken from the field declaration.

``format_ecs`` builds the event's own fields and merges each context entity's ECS object,
built once per entity version and kept in its memo (shared, never modified: a merge copies
the nodes it extends)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from podtrail.formatters.jsonenc import dumps
from podtrail.model.context import covered
from podtrail.model.fields import FIELDS_LIST, FieldType

# canonical name -> (path parts, value renames, is timestamp)
_PLAN: dict[str, tuple[list[str], dict[str, str], bool]] = {
    f.name: (f.ecs.split("."), f.ecs_values, f.type is FieldType.TIMESTAMP_NS) for f in FIELDS_LIST if f.ecs
}
_NO_SKIP: frozenset[str] = frozenset()


_SECONDS: dict[int, str] = {}


def _iso(ns: int) -> str:
    s = ns // 1_000_000_000
    head = _SECONDS.get(s)
    if head is None:  # strftime once per second, not per event
        if len(_SECONDS) > 64:
            _SECONDS.clear()
        head = _SECONDS[s] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return f"{head}.{(ns // 1_000_000) % 1000:03d}Z"


_PLANS: dict[frozenset[str], dict[str, tuple[list[str], dict[str, str], bool]]] = {}


def _plan_without(skip: frozenset[str]) -> dict[str, tuple[list[str], dict[str, str], bool]]:
    """The plan minus the names an event's entities cover (one lookup per field, not two)."""
    p = _PLANS.get(skip)
    if p is None:
        p = {k: v for k, v in _PLAN.items() if k not in skip}
        if len(_PLANS) < 256:
            _PLANS[skip] = p
    return p


def _fill(doc: dict[str, Any], items: Iterable[tuple[str, Any]], skip: frozenset[str]) -> dict[str, Any]:
    plan_of = _plan_without(skip)
    for name, v in items:
        plan = plan_of.get(name)
        if plan is None or v is None:
            continue
        parts, renames, is_ts = plan
        if is_ts:
            v = _iso(v)
        elif renames and type(v) is str:
            v = renames.get(v, v)
        node = doc
        for p in parts[:-1]:
            nxt = node.get(p)
            if type(nxt) is not dict:
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = v
    return doc


def _merge(doc: dict[str, Any], frag: dict[str, Any]) -> None:
    """Merge a shared fragment into ``doc``: its nodes are referenced, never modified; a
    node both have becomes a new dict."""
    for k, v in frag.items():
        mine = doc.get(k)
        if isinstance(mine, dict) and isinstance(v, dict):
            new = dict(mine)
            _merge(new, v)
            doc[k] = new
        else:
            doc[k] = v


def _head(ev: dict[str, Any]) -> dict[str, Any]:
    kind = "alert" if ev.get("event_type") == "alert" else "event"  # ECS event.kind
    return {"ecs": {"version": "8.11.0"}, "event": {"module": "podtrail", "kind": kind}}


def to_ecs(ev: dict[str, Any]) -> dict[str, Any]:
    """The ECS document of an event, every node fresh (the caller may change it)."""
    return _fill(_head(ev), ev.items(), _NO_SKIP)


def _fragment(values: dict[str, Any]) -> dict[str, Any]:
    return _fill({}, values.items(), _NO_SKIP)


def format_ecs(ev: dict[str, Any]) -> str:
    ents, cover = covered(ev)
    doc = _fill(_head(ev), ev.items(), cover)
    for ent in ents:
        _merge(doc, ent.fragment("ecs", _fragment))
    return dumps(doc)
