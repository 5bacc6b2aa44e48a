"""ArcSight CEF, with every key, label and length limit taken from the field declaration.

Header: ``CEF:0|podtrail|podtrail|<version>|<event_type>:<action>|<name>|<severity>|`` with
``\\`` and ``|`` escaped; an alert's name is its rule title and its severity follows the rule
level. Extension values escape ``\\``, ``=``, and line breaks as ``\\n`` and ``\\r``, so no
byte of a process name, argument or path can end the message or start a forged key. Other
control characters become U+FFFD. Values longer than the spec's limit for their key are cut
visibly (ending in "…"). The six context strings go in cs1..cs6 with their ``csNLabel``.

Keys come in the event's own order, then the context entities' texts (process, container,
pod), each rendered once per entity version: CEF is key=value, order carries no meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from podtrail import __version__
from podtrail.formatters.common import own_then_entities, render, scrub_controls, truncate
from podtrail.model.fields import FIELDS_LIST, FieldType

VENDOR = PRODUCT = "podtrail"

NAMES = {
    ("process", "exec"): "Process executed", ("process", "fork"): "Process forked", ("process", "exit"): "Process exited",
    ("socket", "connect"): "Outbound connection", ("socket", "accept"): "Inbound connection",
    ("socket", "bind"): "Socket bound", ("socket", "listen"): "Socket listening",
    ("file", "read"): "Sensitive file read", ("file", "open"): "File opened for writing", ("file", "create"): "File created",
    ("file", "write"): "File written", ("file", "unlink"): "File deleted", ("file", "rename"): "File renamed",
    ("file", "chmod"): "File mode changed", ("file", "truncate"): "File truncated", ("agent", "health"): "Agent health",
}

_EXT_ESC = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})
_HDR_ESC = str.maketrans({"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " "})

# canonical name -> ("key=", " labelKey=label" or "", limit, type): derived once.
_PLAN: dict[str, tuple[str, str, int, FieldType]] = {
    f.name: (f"{f.cef}=", f" {f.cef}Label={f.cef_label}" if f.cef_label else "", f.cef_max, f.type)
    for f in FIELDS_LIST if f.cef
}
_NEEDS_ESCAPE = re.compile(r"[\\=\x00-\x1f\x7f]")
_STR, _INT, _TS = FieldType.TEXT, (FieldType.INTEGER, FieldType.BIGINT), FieldType.TIMESTAMP_NS
_HEADERS: dict[tuple[str, str, int, str | None], str] = {}


def escape_value(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: nothing to escape
        return text
    return scrub_controls(text).translate(_EXT_ESC)


def escape_header(text: str) -> str:
    return scrub_controls(text).translate(_HDR_ESC)


def _header(et: str, act: str, sev: int, title: str | None = None) -> str:
    """The header; an alert's name is its rule's title (so the key holds the title too)."""
    key = (et, act, sev, title)
    h = _HEADERS.get(key)
    if h is None:
        sig, name = escape_header(f"{et}:{act}"), escape_header(title or NAMES.get((et, act), f"{et} {act}"))
        h = f"CEF:0|{VENDOR}|{PRODUCT}|{__version__}|{sig}|{name}|{sev}|"
        if len(_HEADERS) < 4096:  # bounded: kinds x actions x 11 severities in practice
            _HEADERS[key] = h
    return h


_PLANS: dict[frozenset[str], dict[str, tuple[str, str, int, FieldType]]] = {}


def _plan_without(skip: frozenset[str]) -> dict[str, tuple[str, str, int, FieldType]]:
    """The plan minus the names an event's entities cover: one lookup per field, not two."""
    p = _PLANS.get(skip)
    if p is None:
        p = {k: v for k, v in _PLAN.items() if k not in skip}
        if len(_PLANS) < 256:  # one per combination of attached entities, in practice a handful
            _PLANS[skip] = p
    return p


# canonical name -> {value: rendered "key=value..."}: the text of values that repeat (host,
# kind, action, namespace, comm, paths, ports...) is made once. Bounded per name; only exact
# str and int values (a bool must not hit an int's entry).
# Names unique to each event are not cached (they would only fill the cache).
_UNIQUE = frozenset({"event_id", "time", "time_ns", "mono_ns"})
_TEXTS: dict[str, dict[Any, str]] = {name: {} for name in _PLAN if name not in _UNIQUE}
_TEXTS_MAX = 4096


def clear_caches() -> None:
    """Forget every cached text (benchmarks start each round cold)."""
    for c in _TEXTS.values():
        c.clear()
    _HEADERS.clear()


def _extension(items: Iterable[tuple[str, Any]], skip: frozenset[str]) -> list[str]:
    """``key=value`` texts for the declared fields among ``items``, escaped and cut to size."""
    parts: list[str] = []
    append = parts.append
    plan = _plan_without(skip)
    texts = _TEXTS
    for name, v in items:
        p = plan.get(name)
        if p is None or v is None:
            continue
        tv = type(v)
        cache = texts.get(name) if tv is str or tv is int else None
        if cache is not None:
            t = cache.get(v)
            if t is not None:
                append(t)
                continue
        key, label, limit, ftype = p
        if tv is str and ftype is _STR:
            if not v:
                continue
            text = v if len(v) <= limit else truncate(v, limit)
        elif tv is int and ftype in _INT:
            text = str(v)
        elif tv is int and ftype is _TS:
            text = str(v // 1_000_000)
        else:
            text = truncate(render(v, ftype), limit)
            if not text:
                continue
        # the common case needs no escape: three C-level scans instead of a regex call
        if "\\" in text or "=" in text or not text.isprintable():
            text = scrub_controls(text).translate(_EXT_ESC)
        t = f"{key}{text}{label}"
        if cache is not None and len(cache) < _TEXTS_MAX and len(t) <= 256:  # bounded: at most ~1 MB per name
            cache[v] = t
        append(t)
    return parts


def format_cef(ev: dict[str, Any]) -> str:
    """Header, the event's own fields, then each context entity's extension text (rendered
    once per entity and kept in its memo)."""
    sev = max(0, min(10, int(ev.get("severity") or 0)))
    parts = own_then_entities(ev, _extension, "cef", _fragment)
    et = ev.get("event_type", "")
    title = ev.get("rule_title") if et == "alert" else None
    return _header(et, ev.get("action", ""), sev, title) + " ".join(parts)


_NO_SKIP: frozenset[str] = frozenset()


def _fragment(values: dict[str, Any]) -> str:
    return " ".join(_extension(values.items(), _NO_SKIP))
