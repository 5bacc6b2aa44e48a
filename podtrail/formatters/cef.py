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
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from podtrail import __version__
from podtrail.formatters.common import render, scrub_controls, truncate
from podtrail.model.context import EventDict
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
    return _escape_ext(text)


def _escape_ext(text: str) -> str:
    """What ``translate(_EXT_ESC)`` after ``scrub_controls`` gives, with C-level replaces:
    a per-character ``translate`` cost ~10 µs on a 1 kB ancestry (measured), replaces ~1 µs.
    The backslash goes first, so the escapes added after it are not doubled."""
    if not text.isprintable():  # controls (and LF, CR) are rare: only then the scrub pass
        text = scrub_controls(text)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


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


# canonical name -> {value: rendered " key=value..."}: the text of values that repeat (host,
# kind, action, namespace, comm, paths, ports...) is made once, by the cache's ``__missing__``
# (so a batch looks every field up with one C-level ``map``, and only a new value runs Python).
# Each text starts with the separating space; an absent or empty value is "". Names unique to
# each event are not kept (they would only fill the cache). Bounded: a full cache starts over.
_UNIQUE = frozenset({"event_id", "time", "time_ns", "mono_ns"})
_TEXTS_MAX = 4096


class _Texts(dict[Any, str]):
    """value -> `` key=value`` for one declared name (scalar values; equal values render alike)."""

    __slots__ = ("key", "label", "limit", "ftype", "keep")

    def __init__(self, name: str, keep: bool) -> None:
        super().__init__()
        self.key, self.label, self.limit, self.ftype = _PLAN[name]
        self.keep = keep

    def __missing__(self, v: Any) -> str:
        t = _text(v, self.key, self.label, self.limit, self.ftype)
        if self.keep and len(t) <= 256:  # bounded: at most ~1 MB per name
            if len(self) >= _TEXTS_MAX:
                self.clear()
            self[v] = t
        return t


def _text(v: Any, key: str, label: str, limit: int, ftype: FieldType) -> str:
    """`` key=value...`` of one value, escaped and cut to size; "" when absent or empty."""
    if v is None:
        return ""
    tv = type(v)
    if tv is str and ftype is _STR:
        if not v:
            return ""
        text = v if len(v) <= limit else truncate(v, limit)
    elif tv is int and ftype in _INT:
        text = str(v)
    elif tv is int and ftype is _TS:
        text = str(v // 1_000_000)
    else:
        text = truncate(render(v, ftype), limit)
        if not text:
            return ""
    # the common case needs no escape: three C-level scans instead of a regex call
    if "\\" in text or "=" in text or not text.isprintable():
        text = _escape_ext(text)
    return f" {key}{text}{label}"


_TEXTS: dict[str, _Texts] = {name: _Texts(name, name not in _UNIQUE) for name in _PLAN}
_JSON = FieldType.JSON


def clear_caches() -> None:
    """Forget every cached text (benchmarks start each round cold)."""
    for c in _TEXTS.values():
        c.clear()
    _HEADERS.clear()
    _HDR_RAW.clear()
    _SHAPES.clear()


class _Shape:
    """For events with one sequence of names (and one set of names their entities cover):
    the declared names to render, fetched by one ``itemgetter``, and their value caches.
    JSON-typed values (lists, dicts: not hashable) are rendered apart, after the others; so
    are the event id and time, new in every event (no cache lookup that always misses)."""

    __slots__ = ("get", "caches", "jget", "jplan", "eid", "ts")

    def __init__(self, names: tuple[str, ...], skip: frozenset[str]) -> None:
        cols = [n for n in names if n in _PLAN and n not in skip]
        self.eid = "event_id" in cols and _PLAN["event_id"][1:] == _EID_PLAN
        self.ts = "time_ns" in cols and _PLAN["time_ns"][1:] == _TS_PLAN
        own = {"event_id"} if self.eid else set()
        if self.ts:
            own.add("time_ns")
        scalar = [n for n in cols if _PLAN[n][3] is not _JSON and n not in own]
        js = [n for n in cols if _PLAN[n][3] is _JSON]
        self.get = _getter(scalar)
        self.caches = tuple(_TEXTS[n] for n in scalar)
        self.jget = _getter(js)
        self.jplan = tuple(_PLAN[n] for n in js)


# the id and time: " key=value" made inline when the value is plain (else by ``_text``)
_EID_PLAN = ("", 40, _STR)
_TS_PLAN = ("", 4000, _TS)
_EID_KEY, _EID_MAX = " " + _PLAN["event_id"][0], _PLAN["event_id"][2]
_TS_KEY = " " + _PLAN["time_ns"][0]


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        n = names[0]
        return lambda ev: (ev[n],)
    return lambda ev: ()


_SHAPES: dict[tuple[frozenset[str], tuple[str, ...]], _Shape] = {}
_HDR_RAW: dict[tuple[Any, Any, Any, Any], str] = {}
_NONE: frozenset[str] = frozenset()


def _shape(skip: frozenset[str], names: tuple[str, ...]) -> _Shape:
    key = (skip, names)
    s = _SHAPES.get(key)
    if s is None:
        if len(_SHAPES) >= 1024:
            _SHAPES.clear()
        s = _SHAPES[key] = _Shape(names, skip)
    return s


def _extension(items: Iterable[tuple[str, Any]], skip: frozenset[str]) -> list[str]:
    """`` key=value`` texts for the declared fields among ``items`` (any values: the path for
    events the batch path cannot take)."""
    parts: list[str] = []
    for name, v in items:
        p = _PLAN.get(name)
        if p is None or name in skip:
            continue
        t = _text(v, *p)
        if t:
            parts.append(t)
    return parts


def _fragment(values: dict[str, Any]) -> str:
    return "".join(_extension(values.items(), _NONE))


def _header_of(ev: dict[str, Any]) -> str:
    et = ev.get("event_type", "")
    sv = ev.get("severity")
    title = ev.get("rule_title") if et == "alert" else None
    key = (et, ev.get("action", ""), sv, title)
    try:
        return _HDR_RAW[key]
    except (KeyError, TypeError):
        pass
    h = _header(et, key[1], max(0, min(10, int(sv or 0))), title)
    if len(_HDR_RAW) < 4096:
        try:
            _HDR_RAW[key] = h
        except TypeError:  # an unhashable value: rendered, not kept
            pass
    return h


def format_cef(ev: dict[str, Any]) -> str:
    """Header, the event's own fields, then each context entity's extension text (rendered
    once per entity and kept in its memo)."""
    return format_cef_many([ev])[0]


def format_cef_many(evs: Iterable[dict[str, Any]]) -> list[str]:
    """The CEF text of each event: per event, one tuple of its names (its shape), one
    ``itemgetter`` of the values to render, one ``map`` over their caches, the memoized
    fragments of its entities, and one join."""
    out: list[str] = []
    append = out.append
    getitem = dict.__getitem__
    last_names: tuple[str, ...] | None = None
    last_skip: frozenset[str] | None = None
    shape: _Shape | None = None
    hdrs = _HDR_RAW
    for ev in evs:
        c = getattr(ev, "_ctx", None) if type(ev) is EventDict else None
        skip = c[0] if c else _NONE
        names = tuple(ev)
        if names != last_names or skip is not last_skip:
            shape = _shape(skip, names)
            last_names, last_skip = names, skip
        assert shape is not None
        try:
            parts = list(map(getitem, shape.caches, shape.get(ev)))
        except TypeError:  # an unhashable value where a scalar is declared: the general path
            parts = _extension(ev.items(), skip)  # every own field
        else:
            if shape.eid:
                v = ev["event_id"]
                if type(v) is str and 0 < len(v) <= _EID_MAX and v.isprintable() and "=" not in v and "\\" not in v:
                    parts.append(_EID_KEY + v)
                else:
                    parts.append(_text(v, *_PLAN["event_id"]))
            if shape.ts:
                v = ev["time_ns"]
                parts.append(f"{_TS_KEY}{v // 1_000_000}" if type(v) is int else _text(v, *_PLAN["time_ns"]))
            if shape.jplan:
                for v, p in zip(shape.jget(ev), shape.jplan, strict=True):
                    parts.append(_text(v, *p))
        if c:
            for ent in c[1:]:
                m = ent.memo
                f = m.get("cef") if m is not None else None
                parts.append(f if f is not None else ent.fragment("cef", _fragment))
        et = ev.get("event_type", "")
        try:
            h = hdrs[(et, ev.get("action", ""), ev.get("severity"), ev.get("rule_title") if et == "alert" else None)]
        except (KeyError, TypeError):
            h = _header_of(ev)
        append(h + "".join(parts)[1:])
    return out
