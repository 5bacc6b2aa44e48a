"""The JSON encoder of every JSON output: orjson (measured against msgspec and the stdlib in
``bench/json_encoders.py``), with the stdlib as the exact fallback.

Output is ASCII, as the stdlib's ``ensure_ascii`` made it, so no byte of an attacker's value
can look like a line break to any reader (orjson escapes control characters but writes other
text as UTF-8: such rare events take the stdlib path). Values orjson refuses (integers beyond
64 bits, lone surrogates from undecodable names) also take the stdlib path, never an error.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> str:
    try:
        b = orjson.dumps(obj, default=str)
    except (TypeError, orjson.JSONEncodeError):
        b = b""
    if b and b.isascii():
        return b.decode("ascii")
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str)
