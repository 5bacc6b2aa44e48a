"""ArcSight CEF, with every key, label and length limit taken from the field declaration.

Header: ``CEF:0|podtrail|podtrail|<version>|<event_type>:<action>|<name>|<severity>|`` with
``\\`` and ``|`` escaped; an alert's name is its rule title and its severity follows the rule
level. Extension values escape ``\\``, ``=``, and line breaks as ``\\n`` and ``\\r``, so no
byte of a process name, argument or path can end the message or start a forged key. Other
control characters become U+FFFD. Values longer than the spec's limit for their key are cut
visibly (ending in "…"). The six context strings go in cs1..cs6 with their ``csNLabel``.
"""

from __future__ import annotations

import re
from typing import Any

from podtrail import __version__
from podtrail.formatters.common import render, scrub_controls, truncate
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

# canonical name -> (declaration order, "key=", " labelKey=label" or "", limit, type): derived once.
_PLAN: dict[str, tuple[int, str, str, int, FieldType]] = {
    f.name: (i, f"{f.cef}=", f" {f.cef}Label={f.cef_label}" if f.cef_label else "", f.cef_max, f.type)
    for i, f in enumerate(FIELDS_LIST) if f.cef
}
_NEEDS_ESCAPE = re.compile(r"[\\=\x00-\x1f\x7f]")
_STR, _INT = FieldType.TEXT, (FieldType.INTEGER, FieldType.BIGINT)


def escape_value(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: nothing to escape
        return text
    return scrub_controls(text).translate(_EXT_ESC)


def escape_header(text: str) -> str:
    return scrub_controls(text).translate(_HDR_ESC)


def format_cef(ev: dict[str, Any]) -> str:
    et, act = ev.get("event_type", ""), ev.get("action", "")
    sev = max(0, min(10, int(ev.get("severity") or 0)))
    title = ev.get("rule_title") if et == "alert" else None  # an alert's name is its rule's title
    sig, name = escape_header(f"{et}:{act}"), escape_header(title or NAMES.get((et, act), f"{et} {act}"))
    header = f"CEF:0|{VENDOR}|{PRODUCT}|{__version__}|{sig}|{name}|{sev}|"
    parts = []
    plan = _PLAN
    for name, v in ev.items():
        p = plan.get(name)
        if p is None or v is None or v == "":
            continue
        _, key, label, limit, ftype = p
        if ftype is _STR and type(v) is str:
            text = v if len(v) <= limit else truncate(v, limit)
        elif ftype in _INT and type(v) is int:
            parts.append((p[0], f"{key}{v}{label}"))
            continue
        else:
            text = truncate(render(v, ftype), limit)
        parts.append((p[0], f"{key}{escape_value(text)}{label}"))
    parts.sort()
    return header + " ".join(t for _, t in parts)
