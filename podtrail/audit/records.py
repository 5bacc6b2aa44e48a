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

The assembler cuts a whole read into rows ``(type, "[NODE ]SEC.MS:SERIAL", body)`` with one
``findall`` (``text_rows``), and an assembled event (``AuditEvent``) keeps its rows: a
``Record`` is made only for a record read as one. The records the mapping reads, in the
layout the kernel writes them, are read from the row text by one strict match each
(``syscall_of``, ``execve_argv``, ``cwd_value``); a record that does not match exactly takes
the general split, so both give the same values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Any, overload

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
    if " msg='" not in body and not body.startswith("msg='"):  # a token, not a value like comm="msg='x"
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
            r = self.raw
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


# node= (optional), type=, msg=audit(SEC.MS:SERIAL): in one C call; the body follows. The
# kernel writes the stamp as %llu.%03lu and the serial as %u.
_HEADER = re.compile(r"(?:node=([^ \x1d]*) )?type=([^ \x1d]+) msg=audit\(([0-9]+\.[0-9]+):([0-9]+)\):")
# The same header at the start of every line of a read, with the rest of the line as the
# body: one C call per read makes a row per record, (type, key, body), key "SEC.MS:SERIAL".
# A line it skips is blank, malformed, or has a node= prefix (``NODE_ROWS``: its key is then
# "NODE SEC.MS:SERIAL"; a node name has no space).
# (Possessive "++"/"*+": no character a class takes can be the one that follows it, so
# giving some back could never help; the engine then keeps no backtracking state.)
ROWS = re.compile(r"^type=([^ \x1d\n]++) msg=audit\(([0-9]++\.[0-9]++:[0-9]++)\):(.*+)", re.M)  # "." is [^\n]
NODE_ROWS = re.compile(r"^(?:node=([^ \x1d\n]*+) )?type=([^ \x1d\n]++) msg=audit\(([0-9]++\.[0-9]++:[0-9]++)\):(.*+)", re.M)
Row = tuple[str, str, str]


def text_rows(text: str, lines: int = 0) -> tuple[list[Row], int]:
    """The rows of a read's text ("\\n"-separated lines; ``lines``: their number, if
    counted already) and how many of its lines are not blank and no record (malformed)."""
    rows = ROWS.findall(text)
    if len(rows) == (lines or text.count("\n") + 1):
        return rows, 0
    rows = [(t, f"{n} {k}" if n else k, b) for n, t, k, b in NODE_ROWS.findall(text)]
    return rows, sum(1 for line in text.split("\n") if line.strip()) - len(rows)


def row_record(row: Row) -> Record:
    typ, key, body = row
    node, _, key = key.rpartition(" ")
    stamp, _, serial = key.partition(":")
    return Record.lazy(typ, node, stamp, int(serial), body, 0)


class AuditEvent(Sequence[Record]):
    """One assembled event: its records' rows, in order. Indexing and iteration give
    ``Record`` objects, made on demand; ``first``, ``of_type`` and ``types`` make only what
    they return."""

    __slots__ = ("rows", "types")

    def __init__(self, rows: list[Row], types: list[str] | None = None) -> None:
        self.rows = rows
        self.types = [r[0] for r in rows] if types is None else types  # the rows' types, in order

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> Record: ...

    @overload
    def __getitem__(self, i: slice) -> list[Record]: ...

    def __getitem__(self, i: int | slice) -> Record | list[Record]:
        if isinstance(i, slice):
            return [row_record(r) for r in self.rows[i]]
        return row_record(self.rows[i])

    def __iter__(self) -> Iterator[Record]:
        return map(row_record, self.rows)

    def body(self, rtype: str) -> str | None:
        """The body (the text after the header) of the first record of ``rtype``."""
        t = self.types
        return self.rows[t.index(rtype)][2] if rtype in t else None

    def first(self, rtype: str) -> Record | None:
        for r in self.rows:
            if r[0] == rtype:
                return row_record(r)
        return None

    def of_type(self, rtype: str) -> list[Record]:
        return [row_record(r) for r in self.rows if r[0] == rtype]

    def __repr__(self) -> str:
        return f"AuditEvent({self.rows!r})"


def first_of(records: Sequence[Record], rtype: str) -> Record | None:
    """The first record of ``rtype`` (an ``AuditEvent`` makes only that one)."""
    if isinstance(records, AuditEvent):
        return records.first(rtype)
    return next((r for r in records if r.type == rtype), None)


def all_of(records: Sequence[Record], rtype: str) -> list[Record]:
    if isinstance(records, AuditEvent):
        return records.of_type(rtype)
    return [r for r in records if r.type == rtype]


def types_of(records: Sequence[Record]) -> list[str]:
    return records.types if isinstance(records, AuditEvent) else [r.type for r in records]


# What the mapping reads of a SYSCALL record, in the kernel's order (audit_log_exit,
# audit_log_task_info): ``syscall_values`` returns them in this order.
SYSCALL_FIELDS = ("arch", "syscall", "success", "exit", "ppid", "pid", "auid", "uid", "gid", "comm", "exe", "key")
_V = r"[!-~]*+"  # a kernel value: printable ASCII, no space (else the kernel hex-encodes it)
_N = r"([!#-'*-~][!-~]*+|)"  # one that needs no decoding: not quoted, not "(null)"
# A SYSCALL body exactly as the kernel writes it (its optional parts: success/exit, one
# LSM subj=); every token named, so the general split could find nothing else in it.
_SYSCALL = re.compile(
    rf" arch={_N} syscall={_N}(?: success={_N} exit={_N})? a0={_V} a1={_V} a2={_V} a3={_V} items={_V}"
    rf" ppid={_N} pid={_N} auid={_N} uid={_N} gid={_N} euid={_V} suid={_V} fsuid={_V} egid={_V} sgid={_V}"
    rf" fsgid={_V} tty={_V} ses={_V} comm=({_V}) exe=({_V})(?: subj={_V})? key=({_V})(?:\x1d|\Z)")


def _syscall_text(text: str, at: int = 0) -> tuple[str, ...] | None:
    m = _SYSCALL.match(text, at)
    if m is None:
        return None
    arch, number, success, exit_, ppid, pid, auid, uid, gid, comm, exe, key = m.groups()
    # decode_value, with its common case (a quoted value) inline
    return (arch, number, success or "", exit_ or "", ppid, pid, auid, uid, gid,
            comm[1:-1] if len(comm) >= 2 and comm[0] == '"' == comm[-1] else decode_value("comm", comm, "SYSCALL"),
            exe[1:-1] if len(exe) >= 2 and exe[0] == '"' == exe[-1] else decode_value("exe", exe, "SYSCALL"),
            key[1:-1] if len(key) >= 2 and key[0] == '"' == key[-1] else decode_value("key", key, "SYSCALL"))


def syscall_values(rec: Record) -> tuple[str, ...]:
    """``SYSCALL_FIELDS`` of a SYSCALL record, decoded as ``Record.get`` gives them ("" when
    absent): one strict match, or ``get`` for a body in another layout."""
    values = _syscall_text(rec._line, rec._body_at) if rec._fields is None else None
    if values is None:
        get = rec.get
        return tuple(get(name) for name in SYSCALL_FIELDS)
    return values


def syscall_of(records: Sequence[Record]) -> tuple[tuple[str, ...], str] | None:
    """(``syscall_values`` of the event's SYSCALL record, the event's stamp); None without
    one. An ``AuditEvent`` is read from its row, no ``Record`` made."""
    if isinstance(records, AuditEvent):
        t = records.types
        if "SYSCALL" not in t:
            return None
        _, key, body = records.rows[t.index("SYSCALL")]
        values = _syscall_text(body)
        if values is not None:
            return values, key[key.find(" ") + 1:key.rindex(":")]  # its stamp (a node name has no space)
    sc = first_of(records, "SYSCALL")
    return None if sc is None else (syscall_values(sc), sc.time)


# One EXECVE record with every argument whole (no aN[k] chunks): argc, then a0 ... a<argc-1>
# in order, matched by one pattern per argc.
_ARGV: dict[str, re.Pattern[str]] = {}  # by argc, as written
_ARGCS = frozenset(str(i) for i in range(100))
_CWD = re.compile(r" cwd=([!-~]*+)(?:\x1d|\Z)")


def execve_argv(body: str) -> list[str] | None:
    """argv of the body of an event's only EXECVE record in the kernel's plain layout,
    decoded as ``fields`` would decode it; None for any other layout (chunked or more than
    99 arguments, odd text)."""
    if body[:6] != " argc=":
        return None
    end = body.find(" ", 6)
    argc = body[6:] if end == -1 else body[6:end]
    p = _ARGV.get(argc)
    if p is None:
        if argc not in _ARGCS:
            return None
        p = _ARGV[argc] = re.compile(f" argc={argc}" + "".join(f" a{i}=([!-~]*+)" for i in range(int(argc))) + r"(?:\x1d|\Z)")
    m = p.match(body)
    if m is None:
        return None
    return [v[1:-1] if len(v) >= 2 and v[0] == '"' == v[-1] else decode_value("a0", v, "EXECVE") for v in m.groups()]


def cwd_value(body: str) -> str | None:
    """cwd of a CWD record's body in the kernel's layout (one field), decoded; else None."""
    m = _CWD.match(body)
    if m is None:
        return None
    v = m.group(1)
    return v[1:-1] if len(v) >= 2 and v[0] == '"' == v[-1] else decode_value("cwd", v, "CWD")


def parse_record(line: str) -> Record:
    """The header is checked and split now; the body and the ENRICHED part when read."""
    m = _HEADER.match(line)
    if m is None:
        raise MalformedRecord("no node=/type=/msg=audit(SEC.MS:SERIAL): header")
    node, typ, stamp, serial = m.groups()
    return Record.lazy(typ, node or "", stamp, int(serial), line, m.end())
