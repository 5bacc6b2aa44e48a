"""ArcSight CEF, with every key, label and length limit taken from the field declaration.

Header: ``CEF:0|podtrail|podtrail|<version>|<event_type>:<action>|<name>|<severity>|`` with
``\\`` and ``|`` escaped; extension values escape ``\\``, ``=``, and line breaks as ``\\n``
and ``\\r``, so no byte of a process name, argument or path can end the message or start a
forged key. Other control characters become U+FFFD. Values longer than the spec's limit for
their key are cut visibly (ending in "…"). The six context strings go in cs1..cs6 with their
``csNLabel``.

Keys come in the event's own order, then the context entities' texts (process, container,
pod), each rendered once per entity version: CEF is key=value, order carries no meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from podtrail import __version__
from podtrail.formatters.common import render, scrub_controls, truncate
from podtrail.model.context import covered
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
_STR, _INT = FieldType.TEXT, (FieldType.INTEGER, FieldType.BIGINT)
_HEADERS: dict[tuple[str, str, int], str] = {}


def escape_value(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: nothing to escape
        return text
    return scrub_controls(text).translate(_EXT_ESC)


def escape_header(text: str) -> str:
    return scrub_controls(text).translate(_HDR_ESC)


def _header(et: str, act: str, sev: int) -> str:
    key = (et, act, sev)
    h = _HEADERS.get(key)
    if h is None:
        sig, name = escape_header(f"{et}:{act}"), escape_header(NAMES.get((et, act), f"{et} {act}"))
        h = f"CEF:0|{VENDOR}|{PRODUCT}|{__version__}|{sig}|{name}|{sev}|"
        if len(_HEADERS) < 4096:  # bounded: kinds x actions x 11 severities in practice
            _HEADERS[key] = h
    return h


def _extension(items: Iterable[tuple[str, Any]], skip: frozenset[str]) -> list[str]:
    """``key=value`` texts for the declared fields among ``items``, escaped and cut to size."""
    parts = []
    plan = _PLAN
    for name, v in items:
        if name in skip or v is None or v == "":
            continue
        p = plan.get(name)
        if p is None:
            continue
        key, label, limit, ftype = p
        tv = type(v)
        if tv is str and ftype is _STR:
            text = v if len(v) <= limit else truncate(v, limit)
        elif tv is int and ftype in _INT:
            parts.append(f"{key}{v}{label}")
            continue
        else:
            text = truncate(render(v, ftype), limit)
        if _NEEDS_ESCAPE.search(text) is not None:
            text = scrub_controls(text).translate(_EXT_ESC)
        parts.append(f"{key}{text}{label}" if label else key + text)
    return parts


def format_cef(ev: dict[str, Any]) -> str:
    """Header, the event's own fields, then each context entity's extension text (rendered
    once per entity and kept in its memo)."""
    sev = max(0, min(10, int(ev.get("severity") or 0)))
    ents, cover = covered(ev)
    parts = _extension(ev.items(), cover)
    for ent in ents:
        frag = ent.memo.get("cef")
        if frag is None:
            frag = ent.memo["cef"] = " ".join(_extension(ent.values.items(), _NO_SKIP))
        if frag:
            parts.append(frag)
    return _header(ev.get("event_type", ""), ev.get("action", ""), sev) + " ".join(parts)


_NO_SKIP: frozenset[str] = frozenset()
