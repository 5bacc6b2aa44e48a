"""Strict parsers for what podtrail emits (CEF, LEEF): the tests' proof that every message
says exactly what the event said, and nothing more."""

from __future__ import annotations

_UNESC = {"\\": "\\", "=": "=", "n": "\n", "r": "\r", "|": "|"}


class ParseError(ValueError):
    pass


def _split_header(msg: str, n: int) -> tuple[list[str], str]:
    fields: list[str] = []
    cur: list[str] = []
    i = 0
    while len(fields) < n:
        if i >= len(msg):
            raise ParseError("truncated header")
        ch = msg[i]
        if ch == "\\" and i + 1 < len(msg) and msg[i + 1] in "\\|":
            cur.append(msg[i + 1])
            i += 2
            continue
        if ch == "|":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    return fields, msg[i:]


def parse_cef(msg: str) -> tuple[list[str], dict[str, str]]:
    if "\n" in msg or "\r" in msg:
        raise ParseError("raw line break in a CEF message")
    header, ext = _split_header(msg, 7)
    if header[0] != "CEF:0":
        raise ParseError("not CEF:0")
    out: dict[str, str] = {}
    i, n = 0, len(ext)
    while i < n:
        j = ext.find("=", i)
        if j < 0:
            raise ParseError(f"no '=' after key at {i}")
        key = ext[i:j]
        if not key.isidentifier():
            raise ParseError(f"bad key {key!r}")
        i = j + 1
        val: list[str] = []
        while i < n:
            ch = ext[i]
            if ch == "\\":
                if i + 1 >= n or ext[i + 1] not in "\\=nr":
                    raise ParseError("bad escape")
                val.append(_UNESC[ext[i + 1]])
                i += 2
                continue
            if ch == "=":
                raise ParseError("unescaped '=' in a value")
            if ch == " ":
                # a space ends the value only if a key= follows
                k = i + 1
                while k < n and (ext[k].isalnum() or ext[k] == "_"):
                    k += 1
                if k < n and k > i + 1 and ext[k] == "=":
                    i += 1
                    break
            val.append(ch)
            i += 1
        if key in out:
            raise ParseError(f"duplicate key {key}")
        out[key] = "".join(val)
    return header, out


def parse_leef(msg: str) -> tuple[list[str], dict[str, str]]:
    if "\n" in msg or "\r" in msg:
        raise ParseError("raw line break in a LEEF message")
    if msg.startswith("LEEF:2.0|"):
        parts = msg.split("|", 6)
        if len(parts) != 7 or parts[5] != "x09":
            raise ParseError("bad LEEF 2.0 header")
        header, body = parts[:6], parts[6]
    elif msg.startswith("LEEF:1.0|"):
        parts = msg.split("|", 5)
        if len(parts) != 6:
            raise ParseError("bad LEEF 1.0 header")
        header, body = parts[:5], parts[5]
    else:
        raise ParseError("not LEEF")
    out: dict[str, str] = {}
    for attr in body.split("\t") if body else []:
        k, sep, v = attr.partition("=")
        if not sep or not k or k in out:
            raise ParseError(f"bad attribute {attr!r}")
        out[k] = v
    return header, out
