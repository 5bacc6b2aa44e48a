"""A value as the text of an osquery cell: osquery hands every value over as text.

One rule for every path that makes rows (dict rows for the local API and the SQL engine,
the Thrift writer's bytes, the ``--events`` database): None is "", a boolean is "1"/"0",
a list or dict in a JSON column is compact JSON (non-ASCII as it is), anything else is
``str(value)``. JSON comes from orjson (≈ 15× the stdlib here); where the two could differ
(``null``: NaN and infinities, which orjson writes as null) or orjson refuses a value
(integers beyond 64 bits, lone surrogates, non-text keys), the stdlib writes it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_stdlib_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # built once, not per value


def json_text(value: Any) -> str:
    try:
        b = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return _stdlib_json(value)
    if b"null" in b:
        return _stdlib_json(value)
    return b.decode()


def json_bytes(value: Any) -> bytes:
    """``json_text`` as UTF-8 bytes (``text_bytes`` of it)."""
    try:
        b = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return text_bytes(_stdlib_json(value))
    if b"null" in b:
        return text_bytes(_stdlib_json(value))
    return b


def text_bytes(s: str) -> bytes:
    """UTF-8; text that is not valid Unicode (lone surrogates: undecodable bytes kept with
    ``surrogateescape``) with backslash escapes (``\\xff``, as podtrail's decoders write
    undecodable bytes elsewhere) instead of an error that would fail a whole reply."""
    try:
        return s.encode()
    except UnicodeEncodeError:
        try:
            return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode()
        except UnicodeEncodeError:
            return s.encode("utf-8", "backslashreplace")


def render(value: Any, as_json: bool) -> str:
    if value is None:
        return ""
    if as_json:
        return json_text(value)
    if value is True or value is False:
        return "1" if value else "0"
    return str(value)


def cell(value: Any, as_json: bool) -> str:
    """``render``, with the common case (a text value) first."""
    if value.__class__ is str and not as_json:
        return value  # type: ignore[no-any-return]
    return render(value, as_json)


def cell_bytes(value: Any, as_json: bool) -> bytes:
    """``text_bytes(cell(value, as_json))``, without the detour through text for JSON."""
    if as_json:
        return b"" if value is None else json_bytes(value)
    if value.__class__ is str:
        return text_bytes(value)
    return text_bytes(render(value, False))
