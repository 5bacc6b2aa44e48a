"""CEF and LEEF: hostile values (an attacker controls argv, comm, paths and labels) never
forge or break a message, and every field round-trips through a strict parser (and pycef)."""

from __future__ import annotations

import os

import pycef
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podtrail.formatters import cef
from podtrail.formatters.cef import clear_caches, escape_value, format_cef, format_cef_many
from podtrail.formatters.common import ELLIPSIS, render, scrub_controls
from podtrail.formatters.leef import format_leef, leef_value
from podtrail.formatters.parse import parse_cef, parse_leef
from podtrail.model.context import CONTAINER_CTX, POD_CTX, PROCESS_CTX, share
from podtrail.model.event import finalize, new_event
from podtrail.model.fields import FIELDS, Kind

EXAMPLES = int(os.environ.get("PODTRAIL_HYPOTHESIS_EXAMPLES", "300"))

_PIECES = [*"ab =|\\\t\n\r\x00\x1b\x7f\u00e9\u2028", "\\xff", "CEF:0|", " key=", " cs1=x", "LEEF:2.0|", "\\="]
hostile = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


def _event(comm: str, arg: str, path: str, label: str, shared: bool = False) -> dict:
    """``shared``: with process, container and pod entities attached, as the stages do, so
    the hostile values sit in the memoized fragments."""
    ev = finalize(new_event(
        Kind.PROCESS, "exec", pid=42, ppid=1, uid=0, comm=comm, path=path, argv=["/bin/sh", arg], cmdline=f"/bin/sh {arg}",
        container_id="a" * 64, pod_name=label, namespace="ns", pod_labels={"app": label}, drift=True, source="ebpf",
        parent_path=path, ancestors=[{"pid": 1, "path": path, "cmdline": arg}], image=label))
    if shared:
        for kind in (PROCESS_CTX, CONTAINER_CTX, POD_CTX):
            share(ev, kind, None)
        assert ev.ctx and ev.cover
    return ev


def _expected_cef(ev: dict, name: str) -> str:
    f = FIELDS[name]
    text = scrub_controls(render(ev[name], f.type))
    return text if len(text) <= f.cef_max else text[: f.cef_max - 1] + ELLIPSIS


@settings(max_examples=EXAMPLES, deadline=None)
@given(hostile, hostile, hostile, hostile, st.booleans())
def test_cef_round_trip_and_no_forgery(comm: str, arg: str, path: str, label: str, shared: bool) -> None:
    ev = _event(comm, arg, path, label, shared)
    msg = format_cef(ev)
    assert "\n" not in msg and "\r" not in msg and "\x00" not in msg  # one event, one line
    header, ext = parse_cef(msg)
    assert header[4] == "process:exec" and header[6] == str(ev["severity"])
    for name in ("comm", "path", "cmdline", "pod_name", "pod_labels", "container_id", "argv", "parent_path", "ancestors", "image"):
        key = FIELDS[name].cef
        if key is None:
            continue
        if ev.get(name) in (None, ""):
            assert key not in ext
        else:
            assert ext[key] == _expected_cef(ev, name), name
    assert ext["cs4Label"] == "containerId" and ext.get("cs3Label", "pod") == "pod"
    # no key appears that podtrail did not write
    allowed = {f.cef for f in FIELDS.values() if f.cef} | {f"{f.cef}Label" for f in FIELDS.values() if f.cef_label}
    assert set(ext) <= allowed


def _check_cef(ev: dict, msg: str) -> None:
    """Every declared field of ``ev`` (entity-covered or not) is in ``msg`` exactly as the
    strict parser reads it, and nothing else is."""
    assert "\n" not in msg and "\r" not in msg and "\x00" not in msg
    header, ext = parse_cef(msg)
    assert header[4] == f"{ev['event_type']}:{ev['action']}" and header[6] == str(ev["severity"])
    want = {}
    for name, v in ev.items():
        f = FIELDS.get(name)
        if f is None or not f.cef or v is None or v == "":
            continue
        want[f.cef] = _expected_cef(ev, name)
        if f.cef_label:
            want[f"{f.cef}Label"] = f.cef_label
    assert ext == want


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(st.lists(st.tuples(hostile, hostile, hostile, hostile, st.booleans(), st.sampled_from(["exec", "socket", "file"])),
                min_size=1, max_size=6))
def test_cef_batches_equal_single_events_cold_and_warm(specs: list) -> None:
    """One batch of events of several shapes (with and without entities, hostile values):
    formatted together, cold and then with warm caches, each message is exactly the event's,
    and the same as formatting it alone."""
    evs = []
    for comm, arg, path, label, shared, kind in specs:
        if kind == "exec":
            evs.append(_event(comm, arg, path, label, shared))
        elif kind == "socket":
            evs.append(finalize(new_event(Kind.SOCKET, "connect", pid=7, comm=comm, cmdline=arg, remote_address=label,
                                          remote_port=443, local_port=40000, direction="outbound", transport="tcp",
                                          pod_name=label or None, source="ebpf")))
        else:
            evs.append(finalize(new_event(Kind.FILE, "create", pid=8, comm=comm, target_path=path or "/x", source="ebpf",
                                          drift=bool(arg))))
    clear_caches()
    cold = format_cef_many(evs)
    warm = format_cef_many(evs + evs)
    assert warm == cold + cold == [format_cef(e) for e in evs] * 2
    for ev, msg in zip(evs, cold, strict=True):
        _check_cef(ev, msg)


@settings(max_examples=EXAMPLES, deadline=None)
@given(hostile, hostile, hostile, hostile, st.sampled_from(["1.0", "2.0"]), st.booleans())
def test_leef_round_trip_and_no_forgery(comm: str, arg: str, path: str, label: str, version: str, shared: bool) -> None:
    ev = _event(comm, arg, path, label, shared)
    msg = format_leef(ev, version)
    assert "\n" not in msg and "\r" not in msg and "\x00" not in msg
    header, attrs = parse_leef(msg)
    assert header[4] == "process:exec"
    for name in ("comm", "path", "cmdline", "pod_name", "parent_path", "image"):
        key = FIELDS[name].leef
        if ev.get(name) in (None, ""):
            assert key not in attrs
        else:
            assert attrs[key] == leef_value(ev[name]), name
    assert set(attrs) <= {f.leef for f in FIELDS.values() if f.leef}
    assert 1 <= int(attrs["sev"]) <= 10


@pytest.mark.parametrize("shared", [False, True])
def test_pycef_reads_what_we_write(shared: bool) -> None:
    ev = _event("nc|x", "-e /bin/sh 10.0.0.1 4444 a=b \\", "/tmp/x y", "web", shared)
    parsed = pycef.parse(format_cef(ev))
    assert parsed["DeviceVendor"] == "podtrail" and parsed["Severity"] == str(ev["severity"])
    # pycef splits fields as we do but leaves escapes in place
    assert parsed["cmdline"] == escape_value(ev["cmdline"]) and parsed["sproc"] == "nc|x"
    assert parsed["pod"] == "web" and parsed["containerId"] == "a" * 64  # pycef names csN by its csNLabel
    allowed = {f.cef for f in FIELDS.values() if f.cef} | {f.cef_label for f in FIELDS.values() if f.cef_label}
    assert {k for k in parsed if k[0].islower()} <= allowed


def test_length_limits_are_visible() -> None:
    ev = finalize(new_event(Kind.FILE, "create", pid=1, target_path="/" + "a" * 5000, source="ebpf"))
    _, ext = parse_cef(format_cef(ev))
    assert len(ext["filePath"]) == 1023 and ext["filePath"].endswith(ELLIPSIS)
    assert escape_value("a=b\\c\nd") == "a\\=b\\\\c\\nd"


def test_mistyped_value_takes_the_general_path_once() -> None:
    """A list where a text is declared cannot be looked up in a value cache: that event is
    rendered field by field instead, every field exactly once, and the batch goes on."""
    odd = _event("sh", "-c x", "/bin/sh", "web")
    odd["comm"] = ["not", "a", "string"]
    fine = _event("sh", "-c y", "/bin/sh", "web", shared=True)
    msgs = format_cef_many([fine, odd, fine])
    assert msgs[0] == msgs[2] == format_cef(fine)
    _check_cef(fine, msgs[0])
    _check_cef(odd, msgs[1])
    keys = [tok.split("=", 1)[0] for tok in parse_cef(msgs[1])[1]]
    assert len(keys) == len(set(keys))
    assert msgs[1].count(" ancestors=") == 1  # a JSON field, rendered apart on the batch path


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from("ab=\\|\n\r\t\x00\x1f\x7f é\u2028\u00a0"), max_size=40))
def test_extension_escape_by_replaces_equals_the_one_pass_table(text: str) -> None:
    """The fast escape (C-level replaces, backslash first) gives exactly the one-pass translation."""
    assert cef._escape_ext(text) == scrub_controls(text).translate(cef._EXT_ESC)
