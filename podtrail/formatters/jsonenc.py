"""The JSON encoder of every JSON output: orjson (measured against msgspec and the stdlib in
``bench/json_encoders.py``), with the stdlib as the exact fallback.

Output is ASCII, as the stdlib's ``ensure_ascii`` made it, so no byte of an attacker's value
can look like a line break to any reader. orjson escapes control characters but writes other
text as UTF-8; non-ASCII only ever occurs inside JSON strings, so its output is made ASCII by
escaping each such character as ``\\uXXXX`` (a surrogate pair beyond the BMP). That is common,
not rare: truncated ancestor command lines end in '…', which one bytes replace escapes; other
text goes through a codec error handler (C, but for the non-ASCII runs themselves). Values
orjson refuses (integers beyond 64 bits, lone surrogates from undecodable names) take the
stdlib path, never an error.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import orjson

_ERRORS = "podtrail-json-escape"


def _escape(e: UnicodeError) -> tuple[str, int]:
    """The codec error handler: JSON escapes for the run of characters ASCII cannot encode."""
    assert isinstance(e, UnicodeEncodeError)
    out = []
    for ch in e.object[e.start:e.end]:
        n = ord(ch)
        if n > 0xFFFF:
            n -= 0x10000
            out.append(f"\\u{0xD800 | (n >> 10):04x}\\u{0xDC00 | (n & 0x3FF):04x}")
        else:
            out.append(f"\\u{n:04x}")
    return "".join(out), e.end


codecs.register_error(_ERRORS, _escape)
_ELLIPSIS, _ELLIPSIS_ESC = "…".encode(), b"\\u2026"


def dumpb(obj: Any) -> bytes:
    """``obj`` as compact JSON in ASCII bytes (what a writer sends as it is)."""
    try:
        b = orjson.dumps(obj, default=str)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")
    return b if b.isascii() else ascii_json(b)


def ascii_json(b: bytes) -> bytes:
    """orjson's output with its non-ASCII characters escaped (they occur in strings only)."""
    b = b.replace(_ELLIPSIS, _ELLIPSIS_ESC)  # the common case, in one C pass
    if b.isascii():
        return b
    return b.decode("utf-8").encode("ascii", _ERRORS)


def dumps(obj: Any) -> str:
    """``obj`` as compact JSON, ASCII text."""
    return dumpb(obj).decode("ascii")
