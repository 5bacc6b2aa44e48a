"""IBM QRadar LEEF 1.0 and 2.0, keys from the field declaration.

LEEF has no escaping, so podtrail's rule is: attributes are separated by TAB (LEEF 1.0's
only delimiter, and 2.0's declared one), and in every value TAB, CR and LF become a single
space; other control characters become U+FFFD. A value can then never split an attribute or
the message. ``=`` inside a value is safe (QRadar splits an attribute at its first ``=``).
Header fields are podtrail's own constants; ``|`` in them would become ``/``.
"""

from __future__ import annotations

from typing import Any

from podtrail import __version__
from podtrail.formatters.common import render, scrub_controls
from podtrail.model.fields import FIELDS_LIST, FieldType

_VALUE = str.maketrans({"\t": " ", "\r": " ", "\n": " "})
_HEADER = str.maketrans({"|": "/", "\t": " ", "\r": " ", "\n": " "})
_PLAN: list[tuple[str, str, FieldType]] = [(f.name, f.leef, f.type) for f in FIELDS_LIST if f.leef]


def leef_value(text: str) -> str:
    return scrub_controls(text.translate(_VALUE))


def format_leef(ev: dict[str, Any], version: str = "2.0") -> str:
    event_id = f"{ev.get('event_type', '')}:{ev.get('action', '')}".translate(_HEADER)
    if version == "1.0":
        header = f"LEEF:1.0|podtrail|podtrail|{__version__}|{event_id}|"
    else:
        header = f"LEEF:2.0|podtrail|podtrail|{__version__}|{event_id}|x09|"
    attrs = []
    for name, key, ftype in _PLAN:
        v = ev.get(name)
        if v is None or v == "":
            continue
        if name == "severity":
            v = max(1, min(10, int(v)))  # LEEF sev is 1..10
        attrs.append(f"{key}={leef_value(render(v, ftype))}")
    return header + "\t".join(attrs)
