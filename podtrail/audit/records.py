"""Audit record text -> records (pure, fast: string methods, no regex per field).

A line is ``[node=N ]type=T msg=audit(SEC.MS:SERIAL): k=v k=v ...[\\x1dENRICHED k=v ...]``.
Values the kernel may have hex-encoded (names, paths, command lines, keys) are decoded by
field name, as auparse does; the ENRICHED section (after 0x1D) is kept apart. Split input on
"\\n" only: ``str.splitlines`` also splits on 0x1D, 0x1C and 0x1E.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Fields the kernel hex-encodes when the value has a space, quote, control or non-ASCII byte.
ENCODED = frozenset({"comm", "exe", "cwd", "name", "proctitle", "key", "path", "data", "old", "new", "ocomm",
                     "acct", "cmd", "dir", "file", "new-disk", "old-disk", "root_dir", "sw", "watch", "vm"})


class MalformedRecord(ValueError):
    pass


@dataclass(slots=True)
class Record:
    type: str
    node: str
    time: str  # "SEC.MS", kept as text (exact) for grouping
    serial: int
    fields: dict[str, str]
    enriched: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.node, self.time, self.serial)


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


def _split_fields(body: str) -> list[str]:
    if "msg='" not in body:  # only user-space records quote a whole msg='...' section
        return body.split()
    # user-space records carry msg='k=v k=v ...': keep the quoted part whole
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


def parse_record(line: str) -> Record:
    raw, _, enriched = line.partition("\x1d")
    node = ""
    if raw.startswith("node="):
        node, _, raw = raw[5:].partition(" ")
    if not raw.startswith("type="):
        raise MalformedRecord("no type=")
    typ, _, rest = raw[5:].partition(" ")
    if not typ or not rest.startswith("msg=audit("):
        raise MalformedRecord("no msg=audit(")
    close = rest.find("):", 10)
    if close == -1:
        raise MalformedRecord("unterminated audit(...)")
    stamp, _, serial = rest[10:close].partition(":")
    if not serial.isdigit() or "." not in stamp:
        raise MalformedRecord("bad timestamp or serial")
    fields: dict[str, str] = {}
    body = rest[close + 2:]
    if "msg='" in body:
        for tok in _split_fields(body):
            k, eq, v = tok.partition("=")
            if not eq or not k:
                continue  # free text some user-space records carry
            if k == "msg" and v[:1] == "'":
                for sub in _split_fields(v.strip("'")):
                    sk, seq, sv = sub.partition("=")
                    if seq and sk:
                        fields[sk] = decode_value(sk, sv, typ)
                continue
            fields[k] = decode_value(k, v, typ)
    else:  # kernel records: decode_value inlined (this loop is the parser's hot path)
        execve = typ == "EXECVE"
        for tok in body.split():
            k, eq, v = tok.partition("=")
            if not eq or not k:
                continue
            if v[:1] == '"' and len(v) >= 2 and v[-1] == '"':
                v = v[1:-1]
            elif v == "(null)":
                v = ""
            elif k in ENCODED or (execve and k[:1] == "a" and k[1:2].isdigit() and "_len" not in k):
                dec = unhex(v)
                if dec is not None:
                    v = dec
            fields[k] = v
    enr = {}
    if enriched:
        for tok in enriched.split():
            k, eq, v = tok.partition("=")
            if eq:
                enr[k] = v[1:-1] if len(v) >= 2 and v[0] == '"' == v[-1] else v
    return Record(typ, node, stamp, int(serial), fields, enr)
