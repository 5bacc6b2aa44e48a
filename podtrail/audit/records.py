"""Audit record text -> records: the header now, the fields when they are read.

A line is ``[node=N ]type=T msg=audit(SEC.MS:SERIAL): k=v k=v ...[\\x1dENRICHED k=v ...]``.
Assembling needs only the header, and the mapping reads a few fields of a few records (an
exec's SYSCALL, EXECVE and CWD, not its PATH, BPRM_FCAPS or PROCTITLE), so a record keeps its
body text and splits it into raw values on the first read of any field (in C: ``str.split``
and ``dict(map(...))``, no per-field Python loop), and a value is unquoted or hex-decoded only
when it is read. Values the kernel may have hex-encoded (names, paths, command lines, keys)
are decoded by field name, as auparse does; the ENRICHED section (after 0x1D) is kept apart
and split only if read. Split input on "\\n" only: ``str.splitlines`` also splits on 0x1D,
0x1C and 0x1E.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import Any

# Fields the kernel hex-encodes when the value has a space, quote, control or non-ASCII byte.
ENCODED = frozenset({"comm", "exe", "cwd", "name", "proctitle", "key", "path", "data", "old", "new", "ocomm",
                     "acct", "cmd", "dir", "file", "new-disk", "old-disk", "root_dir", "sw", "watch", "vm"})


class MalformedRecord(ValueError):
    pass


def unhex(v: str) -> str | None:
    """Hex text -> text; None when ``v`` is not hex (odd length, empty, other characters)."""
    if len(v) % 2 or not v or not v.isalnum():  # isalnum: rules out the spaces fromhex would skip
        return None
    try:
        return bytes.fromhex(v).decode("utf-8", "backslashreplace")
    except ValueError:
        return None


def decode_value(name: str, raw: str, rtype: str) -> str:
    """Quoted -> unquoted; encoded names (and EXECVE aN) -> hex-decoded; else as is."""
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1]
    if raw == "(null)":
        return ""
    if name in ENCODED or (rtype == "EXECVE" and name[:1] == "a" and name[1:2].isdigit() and "_len" not in name):
        dec = unhex(raw)
        if dec is not None:
            return dec
    return raw


def _split_quoted(body: str) -> list[str]:
    """Tokens of a user-space body: ``msg='k=v k=v ...'`` stays one token."""
    out, i, n = [], 0, len(body)
    while i < n:
        while i < n and body[i] == " ":
            i += 1
        if i >= n:
            break
        j = body.find(" ", i)
        q = body.find("'", i)
        if q != -1 and (j == -1 or q < j):
            end = body.find("'", q + 1)
            j = n if end == -1 else body.find(" ", end)
            if j == -1:
                j = n
        elif j == -1:
            j = n
        out.append(body[i:j])
        i = j
    return out


def _pairs_slow(tokens: list[str], out: dict[str, str]) -> None:
    """Free text (tokens without ``=`` or with an empty name) is skipped; a later name wins."""
    for tok in tokens:
        k, eq, v = tok.partition("=")
        if eq and k:
            out[k] = v


_split = str.split


def raw_fields(body: str) -> dict[str, str]:
    """Body text -> {name: raw value} (quotes and hex kept), split at the first ``=`` of each
    whitespace-separated token. Kernel bodies take the C path; a token without ``=`` (free
    text, as in AVC records) or with an empty name falls back to the loop, which skips it."""
    if "msg='" not in body:
        tokens = body.split()
        try:
            out = dict(map(_split, tokens, repeat("="), repeat(1)))
        except ValueError:  # a token without "=": [tok] is no pair
            out = {}
            _pairs_slow(tokens, out)
            return out
        if "" in out:
            out = {}
            _pairs_slow(tokens, out)
        return out
    # user-space records carry msg='k=v k=v ...': its fields are the record's fields
    out = {}
    for tok in _split_quoted(body):
        k, eq, v = tok.partition("=")
        if not eq or not k:
            continue
        if k == "msg" and v[:1] == "'":
            _pairs_slow(_split_quoted(v.strip("'")), out)
            continue
        out[k] = v
    return out


def _enriched_fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for tok in text.split():
        k, eq, v = tok.partition("=")
        if eq:
            out[k] = v[1:-1] if len(v) >= 2 and v[0] == '"' == v[-1] else v
    return out


class Record:
    """One audit record. ``get`` decodes one field; ``fields`` decodes them all (cached);
    ``raw`` is the undecoded split. Made from text (``parse_record``), the body is split on
    the first read; made from values (the auparse reader), ``fields`` is given."""

    __slots__ = ("type", "node", "time", "serial", "_line", "_body_at", "_raw", "_fields", "_enriched")
    _raw: dict[str, str] | None
    _fields: dict[str, str] | None
    _enriched: dict[str, str] | None

    def __init__(self, type: str, node: str, time: str, serial: int, fields: dict[str, str] | None = None,
                 enriched: dict[str, str] | None = None) -> None:
        self.type = type
        self.node = node
        self.time = time  # "SEC.MS", kept as text (exact) for grouping
        self.serial = serial
        self._line, self._body_at = "", 0
        self._fields = self._raw = {} if fields is None else fields  # given values: nothing left to decode
        self._enriched = {} if enriched is None else enriched

    @classmethod
    def lazy(cls, type: str, node: str, time: str, serial: int, line: str, body_at: int) -> Record:
        """A record of ``line`` whose body (from ``body_at``) and ENRICHED part are split
        when first read: most records of an event are never read."""
        r = cls.__new__(cls)
        r.type, r.node, r.time, r.serial = type, node, time, serial
        r._line, r._body_at = line, body_at
        r._raw = r._fields = r._enriched = None
        return r

    def _parts(self) -> tuple[str, str]:
        line, at = self._line, self._body_at
        end = line.find("\x1d", at)
        return (line[at:], "") if end == -1 else (line[at:end], line[end + 1:])

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.node, self.time, self.serial)

    @property
    def raw(self) -> dict[str, str]:
        r = self._raw
        if r is None:
            r = self._raw = raw_fields(self._parts()[0])
        return r

    def get(self, name: str, default: str = "") -> str:
        """One field's value, unquoted / hex-decoded as ``fields`` would give it."""
        f = self._fields
        if f is not None:
            return f.get(name, default)
        r = self._raw
        if r is None:
            r = self._raw = raw_fields(self._parts()[0])
        v = r.get(name)
        if v is None:
            return default
        c = v[:1]
        if c == '"' or c == "(" or name in ENCODED or self.type == "EXECVE":
            return decode_value(name, v, self.type)
        return v  # a plain value: decode_value would return it as it is

    @property
    def fields(self) -> dict[str, str]:
        f = self._fields
        if f is None:
            t = self.type
            f = self._fields = {k: decode_value(k, v, t) for k, v in self.raw.items()}
        return f

    @property
    def enriched(self) -> dict[str, str]:
        e = self._enriched
        if e is None:
            e = self._enriched = _enriched_fields(self._parts()[1])
        return e

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.type, self.node, self.time, self.serial, self.fields, self.enriched) == \
            (other.type, other.node, other.time, other.serial, other.fields, other.enriched)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Record({self.type!r}, {self.node!r}, {self.time!r}, {self.serial}, {self.fields!r}, {self.enriched!r})"


# node= (optional), type=, msg=audit(SEC.MS:SERIAL): in one C call; the body follows
_HEADER = re.compile(r"(?:node=([^ \x1d]*) )?type=([^ \x1d]+) msg=audit\(([^:)\x1d]*\.[^:)\x1d]*):([0-9]+)\):")


def parse_record(line: str) -> Record:
    """The header is checked and split now; the body and the ENRICHED part when read."""
    m = _HEADER.match(line)
    if m is None:
        raise MalformedRecord("no node=/type=/msg=audit(SEC.MS:SERIAL): header")
    node, typ, stamp, serial = m.groups()
    return Record.lazy(typ, node or "", stamp, int(serial), line, m.end())
