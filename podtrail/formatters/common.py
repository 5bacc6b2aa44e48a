"""What every text formatter shares: one rendering of values by declared type, and the
truncation rule (visible: a value cut to its limit ends with "…")."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from podtrail.formatters.jsonenc import dumps
from podtrail.model.context import covered
from podtrail.model.fields import FieldType

ELLIPSIS = "…"


def render(value: Any, ftype: FieldType) -> str:
    """A field value as text, by its declared type (booleans true/false, JSON compact and
    ASCII, as every JSON output writes it)."""
    if ftype is FieldType.BOOLEAN:
        return "true" if value else "false"
    if ftype is FieldType.JSON:
        return dumps(value)
    if ftype is FieldType.TIMESTAMP_NS:
        return str(int(value) // 1_000_000)  # epoch milliseconds
    return str(value)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


# C0 controls other than TAB, LF and CR (which each format handles) and DEL: no SIEM parser
# survives them (a NUL ends a C string), so each becomes U+FFFD, visibly.
_CONTROLS = {c: "\ufffd" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)}


def scrub_controls(text: str) -> str:
    return text.translate(_CONTROLS)


Render = Callable[[Iterable[tuple[str, Any]], frozenset[str]], list[str]]


def own_then_entities(ev: dict[str, Any], render: Render, fmt: str, fragment: Callable[[dict[str, Any]], str]) -> list[str]:
    """The texts of an event's own fields (``render`` skips the names its entities cover),
    then each context entity's text for ``fmt``, made once per entity version (its memo)."""
    ents, cover = covered(ev)
    parts = render(ev.items(), cover)
    for ent in ents:
        frag = ent.fragment(fmt, fragment)
        if frag:
            parts.append(frag)
    return parts
