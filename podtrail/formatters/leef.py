"""IBM QRadar LEEF 1.0 and 2.0, keys from the field declaration.

LEEF has no escaping, so podtrail's rule is: attributes are separated by TAB (LEEF 1.0's
only delimiter, and 2.0's declared one), and in every value TAB, CR and LF become a single
space; other control characters become U+FFFD. A value can then never split an attribute or
the message. ``=`` inside a value is safe (QRadar splits an attribute at its first ``=``).
Header fields are podtrail's own constants; ``|`` in them would become ``/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from podtrail import __version__
from podtrail.formatters.common import own_then_entities, render, scrub_controls
from podtrail.model.fields import FIELDS_LIST, FieldType

_TEXT = FieldType.TEXT

_VALUE = str.maketrans({"\t": " ", "\r": " ", "\n": " "})
_HEADER = str.maketrans({"|": "/", "\t": " ", "\r": " ", "\n": " "})
_PLAN: dict[str, tuple[str, FieldType]] = {f.name: (f"{f.leef}=", f.type) for f in FIELDS_LIST if f.leef}
_HEADERS: dict[tuple[str, str, str], str] = {}
_NO_SKIP: frozenset[str] = frozenset()


def leef_value(text: str) -> str:
    return scrub_controls(text.translate(_VALUE))


def _header(et: str, act: str, version: str) -> str:
    key = (et, act, version)
    h = _HEADERS.get(key)
    if h is None:
        event_id = f"{et}:{act}".translate(_HEADER)
        if version == "1.0":
            h = f"LEEF:1.0|podtrail|podtrail|{__version__}|{event_id}|"
        else:
            h = f"LEEF:2.0|podtrail|podtrail|{__version__}|{event_id}|x09|"
        if len(_HEADERS) < 4096:
            _HEADERS[key] = h
    return h


def _attributes(items: Iterable[tuple[str, Any]], skip: frozenset[str]) -> list[str]:
    attrs = []
    plan = _PLAN
    for name, v in items:
        if name in skip or v is None or v == "":
            continue
        p = plan.get(name)
        if p is None:
            continue
        key, ftype = p
        if name == "severity":
            v = max(1, min(10, int(v)))  # LEEF sev is 1..10
        text = v if type(v) is str and ftype is _TEXT else render(v, ftype)
        if not text.isprintable():  # TAB, CR, LF and other controls (and rarer non-printables)
            text = leef_value(text)
        attrs.append(key + text)
    return attrs


def _fragment(values: dict[str, Any]) -> str:
    return "\t".join(_attributes(values.items(), _NO_SKIP))


def format_leef(ev: dict[str, Any], version: str = "2.0") -> str:
    """Header, the event's own attributes, then each context entity's attributes (rendered
    once per entity version and kept in its memo)."""
    attrs = own_then_entities(ev, _attributes, "leef", _fragment)
    return _header(ev.get("event_type", ""), ev.get("action", ""), version) + "\t".join(attrs)
