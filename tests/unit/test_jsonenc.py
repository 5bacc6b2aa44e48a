"""The JSON encoder: ASCII-only output that reads back as the stdlib's, for hostile text too."""

from __future__ import annotations

import json
import random

from podtrail.formatters.jsonenc import dumps

_PIECES = [*"ab \"\\/\t\n\r\x00\x1b\x7f\x85\u00e9\u2026\u2028\u2029\ufeff\U0001f600\U0010ffff", "…", "\\u2026", "\\\\…"]


def _stdlib(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str)


def test_hostile_text_is_ascii_and_reads_back_as_the_stdlib_output() -> None:
    rnd = random.Random(14)
    for _ in range(2000):
        text = "".join(rnd.choice(_PIECES) for _ in range(rnd.randrange(12)))
        obj = {"cmdline": text, "ancestors": [{"pid": 1, "cmdline": "x" * 3 + text}], text or "k": 1}
        out = dumps(obj)
        assert out.isascii() and "\n" not in out and "\r" not in out
        assert json.loads(out) == json.loads(_stdlib(obj)) == obj


def test_escapes_are_the_stdlib_spelling_beyond_the_bmp_too() -> None:
    obj = {"a": "\u2026 \u00e9 \U0001f600 \u2028"}
    assert dumps(obj) == _stdlib(obj)


def test_values_orjson_refuses_take_the_stdlib_path() -> None:
    for obj in ({"n": 2**70}, {"s": "bad \udcff name …"}, {"o": object.__name__}):
        out = dumps(obj)
        assert out.isascii() and json.loads(out) == json.loads(_stdlib(obj))
