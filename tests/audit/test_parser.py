"""The audit parser and assembler against auparse (python3-audit) as the oracle, on a log
written by a real auditd for real syscalls: long chunked arguments, spaces, quotes and
non-ASCII in arguments, IPv4, IPv6 and unix sockaddrs, multiple keys; and fuzzed input."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from real_auditd import real_auditd

from podtrail.audit.assemble import Assembler, assemble_lines, assemble_text
from podtrail.audit.auparse_reader import assemble_lines_auparse
from podtrail.audit.mapping import to_event
from podtrail.audit.records import AuditEvent, Record, _syscall_text, execve_argv, syscall_of
from podtrail.model.event import validate

LONG = "L" * 10000  # > 7,500 bytes: the kernel splits it into a1[0], a1[1], ...
ODD = ["two words", 'quo"te', "it's", "ünïcödé", "tab\there", "x=y"]
# argv and a program name that try to forge fields: quotes, spaces, "=", 0x1D (the ENRICHED
# separator), a newline (a record separator), a fake header
HOSTILE_NAME = 'h=x" pid=1 \x1dSYSCALL=connect\ntype=SYSCALL'
HOSTILE = ['a1="forged"', "pid=1 uid=0 success=no", "\x1dARCH=i386 SYSCALL=connect", "new\nline type=EXECVE msg=audit(1.1:1): argc=9",
           'cwd="/etc"', "="]


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("auditd")
    hostile = d / "bin" / HOSTILE_NAME
    hostile.parent.mkdir()
    hostile.write_bytes(Path("/bin/true").read_bytes())
    hostile.chmod(0o755)
    rules = [["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "exec", "-k", "T1059"],
             ["-a", "always,exit", "-F", "arch=b64", "-S", "connect", "-F", "success=0", "-k", "net"],
             ["-a", "always,exit", "-F", "arch=b64", "-S", "connect", "-F", "success=1", "-k", "net"]]
    with real_auditd(d, rules) as log:
        subprocess.run(["/bin/busybox", "echo", "chunk-marker", LONG], stdout=subprocess.DEVNULL)
        subprocess.run(["/bin/busybox", "echo", "odd-marker", *ODD], stdout=subprocess.DEVNULL)
        subprocess.run(["/bin/busybox", "sh", "-c", "true"], stdout=subprocess.DEVNULL)
        subprocess.run([str(hostile), "hostile-marker", *HOSTILE], cwd=hostile.parent)
        for fam, addr in ((socket.AF_INET, ("127.0.0.1", 9)), (socket.AF_INET6, ("::1", 9))):
            subprocess.run(["python3", "-c", f"import socket; s=socket.socket({int(fam)}); s.settimeout(1)\ntry: s.connect({addr!r})\nexcept OSError: pass"])
        subprocess.run(["python3", "-c", "import socket; s=socket.socket(socket.AF_UNIX)\ntry: s.connect('/tmp/podtrail-no-such.sock')\nexcept OSError: pass"])
        subprocess.run(["sleep", "1.5"])
    return log


def _auparse_events(path: Path) -> dict[int, dict[str, Any]]:
    import auparse

    au = auparse.AuParser(auparse.AUSOURCE_FILE, str(path))
    out: dict[int, dict[str, Any]] = {}
    while au.parse_next_event():
        serial = au.get_timestamp().serial
        types, fields = [], {}
        au.first_record()
        while True:
            t = au.get_type_name()
            types.append(t)
            if t == "EXECVE":
                au.first_field()
                while True:
                    fields[au.get_field_name()] = au.interpret_field()
                    if not au.next_field():
                        break
            if not au.next_record():
                break
        out[serial] = {"types": types, "execve": fields}
    return out


def test_events_and_records_match_auparse(audit_log: Path) -> None:
    text = audit_log.read_text(errors="surrogateescape")
    ours = {recs[0].serial: recs for recs in assemble_lines(text.split("\n"))}
    oracle = _auparse_events(audit_log)
    assert oracle and set(ours) == set(oracle)
    for serial, recs in ours.items():
        assert [r.type for r in recs] == oracle[serial]["types"], serial


def test_execve_arguments_match_auparse(audit_log: Path) -> None:
    text = audit_log.read_text(errors="surrogateescape")
    oracle = _auparse_events(audit_log)
    seen = set()
    for recs in assemble_lines(text.split("\n")):
        ev = to_event(recs)
        if ev is None or ev["event_type"] != "process":
            continue
        assert validate(ev) == [], validate(ev)
        argv = ev["argv"]
        o = oracle[recs[0].serial]["execve"]
        simple = [o[f"a{i}"].strip('"') for i in range(int(o.get("argc", 0))) if f"a{i}" in o]
        if "chunk-marker" in argv:
            assert argv == ["/bin/busybox", "echo", "chunk-marker", LONG]
            seen.add("chunk")
        elif "odd-marker" in argv:
            assert argv == ["/bin/busybox", "echo", "odd-marker", *ODD]
            # auparse interprets the same values (it shows control characters as \\ooo escapes)
            assert [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), a) for a in simple] == argv
            seen.add("odd")
        assert "exec" in recs[0].fields.get("key", "") and "T1059" in recs[0].fields.get("key", "")
    assert seen == {"chunk", "odd"}


def test_hostile_names_and_arguments_forge_nothing(audit_log: Path) -> None:
    """The kernel hex-encodes what has a space, quote or control byte; decoded only when read,
    such values come back whole and never become fields, records or an ENRICHED part."""
    text = audit_log.read_text(errors="surrogateescape")
    a = Assembler()
    evs = [(recs, to_event(recs)) for recs in [*a.feed_lines(text.split("\n")), *a.flush()]]
    assert a.malformed == 0
    hits = [(recs, e) for recs, e in evs if e and "hostile-marker" in e.get("argv", [])]
    assert len(hits) == 1
    recs, ev = hits[0]
    path = str(audit_log.parent / "bin" / HOSTILE_NAME)
    assert ev["argv"] == [path, "hostile-marker", *HOSTILE] and ev["path"] == path
    assert ev["comm"] == HOSTILE_NAME[:15] and ev["cwd"] == str(audit_log.parent / "bin")
    assert ev["pid"] != 1 and ev["result"] == 0 and validate(ev) == []
    sc = next(r for r in recs if r.type == "SYSCALL")
    assert sc.enriched["SYSCALL"] == "execve" and sc.enriched["ARCH"] == "x86_64"
    execve = next(r for r in recs if r.type == "EXECVE")
    assert set(execve.fields) == {"argc", *(f"a{i}" for i in range(2 + len(HOSTILE)))}


def test_lazy_fields_equal_eager_decoding_and_free_text_is_skipped() -> None:
    from podtrail.audit.records import decode_value, parse_record

    line = ('type=AVC msg=audit(1700000000.5:7): avc:  denied  { execute } for  pid=12 comm="a=b" name=2F7420782E7368 '
            '=junk path="/x" pid=13\x1dAUID="unset"')
    r = parse_record(line)
    assert r.get("pid") == "13" and r.get("comm") == "a=b" and r.get("name") == "/t x.sh" and r.get("nope", "-") == "-"
    assert r.fields == {"pid": "13", "comm": "a=b", "name": "/t x.sh", "path": "/x"}  # free text skipped, the last pid wins
    assert r.fields == {k: decode_value(k, v, "AVC") for k, v in r.raw.items()} and r.enriched == {"AUID": "unset"}
    user = parse_record("type=USER_CMD msg=audit(1.5:8): pid=1 uid=0 msg='cwd=\"/root\" cmd=6C73202D6C res=success'")
    assert user.fields == {"pid": "1", "uid": "0", "cwd": "/root", "cmd": "ls -l", "res": "success"}


def test_syscall_names_from_the_arch_table_or_enriched() -> None:
    """x86_64 numbers from the table; other arches by auditd's ENRICHED name, and a RAW log's
    i386 exec by the i386 number (11), never by the x86_64 meaning of that number."""
    head = "type=SYSCALL msg=audit(1.000:{s}): arch={a} syscall={n} success=yes exit=0 pid=7 comm=\"c\" exe=\"/bin/c\""
    tail = ['type=EXECVE msg=audit(1.000:{s}): argc=1 a0="c"', "type=PROCTITLE msg=audit(1.000:{s}): proctitle=63"]
    cases = [("c000003e", 59, "", "exec"), ("40000003", 11, "", "exec"), ("40000003", 11, "\x1dARCH=i386 SYSCALL=execve", "exec"),
             ("40000003", 59, "", None)]  # 59 is not an i386 exec
    for s, (arch, n, enr, want) in enumerate(cases):
        lines = [head.format(s=s, a=arch, n=n) + enr, *(t.format(s=s) for t in tail)]
        ev = to_event(next(iter(assemble_lines(lines))))
        assert (ev and ev["action"]) == want, (arch, n, enr)


def test_malformed_lines_are_counted_and_skipped() -> None:
    a = Assembler()
    good = "type=SYSCALL msg=audit(5.000:1): syscall=59 arch=c000003e"
    bad = ["type=SYSCALL msg=audit(5.000): x=1", "msg=audit(5.000:2): x=1", "type=SYSCALL msg=audit(5.0.0:3): x=1",
           "type= msg=audit(5.000:4): x=1", "node=n type=X", "garbage"]
    assert a.feed_lines([good, "", "   ", *bad, good.replace("SYSCALL", "PROCTITLE")]) and a.malformed == len(bad)


def test_sockaddrs_ipv4_ipv6_unix(audit_log: Path) -> None:
    text = audit_log.read_text(errors="surrogateescape")
    socks = [e for e in (to_event(r) for r in assemble_lines(text.split("\n"))) if e and e["event_type"] == "socket"]
    remotes = {(e.get("remote_address"), e.get("remote_port")) for e in socks}
    assert ("127.0.0.1", 9) in remotes and ("::1", 9) in remotes
    assert any(e.get("socket_path") == "/tmp/podtrail-no-such.sock" for e in socks)
    assert all(validate(e) == [] for e in socks)


def test_enriched_section_kept_apart_and_node_prefix() -> None:
    from podtrail.audit.records import parse_record

    r = parse_record('node=n1 type=SYSCALL msg=audit(1700000000.123:42): arch=c000003e syscall=59 success=yes exit=0 '
                     'comm="ls" exe=2F62696E2F6C73 key=65786563016E6574\x1dARCH=x86_64 SYSCALL=execve AUID="unset"')
    assert (r.node, r.serial, r.fields["comm"], r.fields["exe"]) == ("n1", 42, "ls", "/bin/ls")
    assert r.fields["key"] == "exec\x01net" and r.enriched == {"ARCH": "x86_64", "SYSCALL": "execve", "AUID": "unset"}


def test_interleaved_and_timeout_in_stream_time() -> None:
    a = Assembler(timeout_s=2.0)
    line = 'type={t} msg=audit({ts}:{s}): a=b'
    assert a.feed_line(line.format(t="SYSCALL", ts="100.000", s=1)) == []
    assert a.feed_line(line.format(t="SYSCALL", ts="100.001", s=2)) == []
    done = a.feed_line(line.format(t="PROCTITLE", ts="100.001", s=2))
    assert [(r.type, r.serial) for r in done[0]] == [("SYSCALL", 2), ("PROCTITLE", 2)]
    late = a.feed_line(line.format(t="SYSCALL", ts="103.000", s=3))  # stream clock passes serial 1's timeout
    assert [[r.serial for r in ev] for ev in late] == [[1]]
    assert a.feed_line(line.format(t="USER_LOGIN", ts="103.5", s=4))[0][0].type == "USER_LOGIN"


def test_a_late_stamped_event_is_not_cut_from_its_records() -> None:
    """The kernel stamps a syscall at entry and writes its records at exit: a slow exec's
    records arrive after records stamped seconds later. Its age counts from its arrival."""
    a = Assembler(timeout_s=2.0)
    assert a.feed_line("type=SYSCALL msg=audit(110.000:2): syscall=59") == []  # the clock is at 110
    assert a.feed_line("type=SYSCALL msg=audit(105.000:1): syscall=59") == []  # entered at 105, out now
    assert [ev[0].serial for ev in a.feed_line("type=PROCTITLE msg=audit(110.000:2): proctitle=78")] == [2]
    assert a.feed_line('type=EXECVE msg=audit(105.000:1): argc=1 a0="x"') == []
    done = a.feed_line("type=PROCTITLE msg=audit(105.000:1): proctitle=78")
    assert [[r.type for r in ev] for ev in done] == [["SYSCALL", "EXECVE", "PROCTITLE"]]
    assert a.feed_line("type=SYSCALL msg=audit(111.000:3): syscall=59") == []
    assert a.feed_line("type=CWD msg=audit(111.000:4): cwd=2F") == []
    late = a.feed_line("type=SYSCALL msg=audit(113.000:5): syscall=59")  # 2 s after serial 3 arrived
    assert [ev[0].serial for ev in late] == [3, 4]


def test_idle_counts_from_the_last_input_not_the_wall_clock() -> None:
    """Records delivered late (auditd behind under load) are not cut off by the wall clock:
    an event expires only after ``timeout_s`` without input."""
    a = Assembler(timeout_s=2.0)
    stamp = 1_000_000.0  # far in the past: a wall-clock tick would expire it at once
    assert a.feed_line(f"type=SYSCALL msg=audit({stamp:.3f}:9): syscall=59") == []
    assert a.idle(0.5) == [] and a.idle(1.9) == []
    assert a.feed_line(f"type=EXECVE msg=audit({stamp:.3f}:9): argc=1 a0=\"x\"") == []
    assert a.idle(0.05) == []  # counted from where the EXECVE's arrival left the clock (1.9 s on)
    done = a.idle(0.2)
    assert [[r.type for r in ev] for ev in done] == [["SYSCALL", "EXECVE"]]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzzed_lines_never_raise(junk: str) -> None:
    a = Assembler()
    for line in (junk, "type=SYSCALL msg=audit(" + junk, "node=" + junk, junk + "\x1d" + junk,
                 f"type=EXECVE msg=audit(1.1:1): argc=3 a0={junk} a1[0]={junk}"):
        for ev in a.feed_line(line):
            to_event(ev)
    for ev in a.flush():
        to_event(ev)


def _comparable(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k != "event_id"}  # a fresh id per event made


def test_auparse_reader_and_own_parser_give_identical_events(audit_log: Path) -> None:
    """The auparse-backed reader (auparse parses and groups in C) and podtrail's own parser
    and assembler, on the same real auditd log: the same records (auparse drops the ENRICHED
    part) and, through the shared mapping, identical events."""
    lines = audit_log.read_text(errors="surrogateescape").split("\n")
    own = {recs[0].serial: recs for recs in assemble_lines(lines)}
    via = {recs[0].serial: recs for recs in assemble_lines_auparse(lines)}
    assert own and set(own) == set(via)
    mapped = 0
    for serial, recs in own.items():
        other = via[serial]
        assert [(r.type, r.node, r.time, r.serial, r.fields) for r in recs] == \
            [(r.type, r.node, r.time, r.serial, r.fields) for r in other], serial
        a, b = to_event(recs), to_event(other)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert _comparable(a) == _comparable(b), serial
            mapped += 1
    assert mapped >= 7  # execs (chunked, odd arguments) and IPv4, IPv6, unix connects


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE", "EOE", "USER_CMD", "AVC"]),
                          st.integers(0, 4)), max_size=60),
       st.integers(1, 7))
def test_batched_feed_equals_one_record_at_a_time(recs: list[tuple[int, str, int]], chunk: int) -> None:
    """The batch path (a run of one event's records filed whole, or joining its open list)
    gives the same events, in the same order, as adding each record on its own: interleaved
    events, late records past the timeout, EOE, PROCTITLE and one-record types included."""
    lines = [f"type={t} msg=audit({100 + 1.5 * sec:.3f}:{serial}): pid={serial}" for serial, t, sec in recs]
    one = Assembler(timeout_s=2.0)
    want = [ev for line in lines for ev in one.feed_line(line)] + one.flush()  # each record through _add
    batched = Assembler(timeout_s=2.0)
    got = [ev for i in range(0, len(lines), chunk) for ev in batched.feed_lines(lines[i:i + chunk])] + batched.flush()
    assert [[(r.type, r.time, r.serial) for r in ev] for ev in got] == [[(r.type, r.time, r.serial) for r in ev] for ev in want]


def _generic(recs: Any) -> list[Record]:
    """The same records with their values given (split by the general path): the fast
    readers (strict SYSCALL/EXECVE/CWD matches on the row text) are skipped for these."""
    return [Record(r.type, r.node, r.time, r.serial, dict(r.fields), dict(r.enriched)) for r in recs]


def test_row_readers_equal_the_general_split_on_a_real_log(audit_log: Path) -> None:
    """Every event of a real auditd log (hostile names and arguments, chunked arguments,
    sockets): mapped from its rows (one strict match per SYSCALL/EXECVE/CWD record) and from
    records split field by field, the same event."""
    text = audit_log.read_text(errors="surrogateescape")
    strict = 0
    for ev in assemble_text(text):
        assert isinstance(ev, AuditEvent)
        a, b = to_event(ev), to_event(_generic(ev))
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert _comparable(a) == _comparable(b), ev
        body = ev.body("SYSCALL")
        if body is not None and _syscall_text(body) is not None:
            strict += 1
            assert syscall_of(ev) == syscall_of(_generic(ev))
        if ev.types.count("EXECVE") == 1 and execve_argv(ev.body("EXECVE") or "") is not None:
            strict += 1
    assert strict > 20  # the strict readers did read most of them


_NUMBER = st.sampled_from(["0", "-1", "yes", "no", "c000003e", "4294967295", "a=b", "'", ""])
_TEXT = st.sampled_from(['"bash"', "(null)", '""', "2F62696E", "2F6", '"msg=\'x"', "x", '"a"b"'])
_TOKEN = st.text(st.sampled_from('ab0"=()\t\x1d\x85 \'x'), max_size=6)


@settings(max_examples=500, deadline=None)
@given(st.tuples(*[_NUMBER] * 9, *[_TEXT] * 3).map(list), st.none() | st.tuples(st.integers(0, 11), _TOKEN), st.booleans(),
       st.sampled_from(["", "\x1dARCH=x86_64 SYSCALL=execve", " x=1", " pid=9"]), st.lists(_TOKEN, max_size=4), st.integers(0, 5),
       _TOKEN)
def test_strict_readers_equal_the_general_split(vals: list[str], odd: tuple[int, str] | None, with_exit: bool, tail: str,
                                                args: list[str], argc: int, cwd: str) -> None:
    """Kernel-shaped SYSCALL, EXECVE and CWD bodies with odd values (quotes, "(null)", spaces,
    tabs, 0x1D, NEL, "=", a repeated name after key=): whatever the strict matches accept,
    they read as the general split."""
    from podtrail.audit.mapping import cwd_of, execve_args

    if odd is not None:
        vals[odd[0]] = odd[1]
    arch, number, success, exit_, ppid, pid, auid, uid, gid, comm, exe, key = vals
    ret = f" success={success} exit={exit_}" if with_exit else ""
    syscall = (f"type=SYSCALL msg=audit(1.000:1): arch={arch} syscall={number}{ret} a0=1 a1=2 a2=3 a3=4 items=1 ppid={ppid} "
               f"pid={pid} auid={auid} uid={uid} gid={gid} euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 "
               f"comm={comm} exe={exe} key={key}{tail}")
    execve = f"type=EXECVE msg=audit(1.000:1): argc={argc}" + "".join(f" a{i}={v}" for i, v in enumerate(args))
    lines = [syscall, execve, f"type=CWD msg=audit(1.000:1): cwd={cwd}", "type=PROCTITLE msg=audit(1.000:1): proctitle=78"]
    evs = list(assemble_text("\n".join(lines)))
    if len(evs) != 1 or len(evs[0]) != 4:
        return  # a value with a newline-like split made other records: not this test's subject
    ev = evs[0]
    assert syscall_of(ev) == syscall_of(_generic(ev))
    assert execve_args(ev) == execve_args(_generic(ev))
    assert cwd_of(ev) == cwd_of(_generic(ev))


def test_a_comm_that_reads_msg_quote_does_not_hide_the_fields_after_it() -> None:
    """A program named msg='x is written comm="msg='x" (no space: not hex-encoded); it once
    sent the record to the user-space split, which swallowed exe= and key= into comm."""
    from podtrail.audit.records import parse_record

    line = ("type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 "
            "ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 "
            "comm=\"msg='x\" exe=\"/bin/true\" key=\"exec\"")
    r = parse_record(line)
    assert (r.fields["comm"], r.fields["exe"], r.fields["key"]) == ("msg='x", "/bin/true", "exec")
    got = syscall_of([r])
    assert got is not None and got[0][-3:] == ("msg='x", "/bin/true", "exec")


def test_node_prefixed_and_malformed_lines_in_one_read() -> None:
    """A read mixing node= lines, plain lines, blank and malformed lines: rows in order,
    events keyed by node too, the malformed counted."""
    lines = ["node=a type=SYSCALL msg=audit(1.000:1): pid=1", "type=SYSCALL msg=audit(1.000:1): pid=2", "",
             "garbage", "node=a type=PROCTITLE msg=audit(1.000:1): proctitle=78", "node=b:1 type=USER_CMD msg=audit(1.000:2): pid=3",
             "type=PROCTITLE msg=audit(1.000:1): proctitle=79", "type=X msg=audit(1.000): x=1"]
    a = Assembler()
    evs = a.feed_text("\n".join(lines)) + a.flush()
    assert a.malformed == 2
    assert [[(r.node, r.type, r.serial, r.get("pid")) for r in ev] for ev in evs] == [
        [("a", "SYSCALL", 1, "1"), ("a", "PROCTITLE", 1, "")], [("b:1", "USER_CMD", 2, "3")],
        [("", "SYSCALL", 1, "2"), ("", "PROCTITLE", 1, "")]]


def test_plugin_stream_events_closed_by_eoe_are_filed_whole() -> None:
    """auditd's dispatcher sends an EOE after each multi-record event (after its PROCTITLE,
    or alone): read as a batch, the same events as record by record, EOE never a record."""
    lines = []
    for s in range(1, 60):
        lines += [f"type=SYSCALL msg=audit(1.{s:03d}:{s}): x=1", f"type=EXECVE msg=audit(1.{s:03d}:{s}): argc=0"]
        if s % 2:
            lines.append(f"type=PROCTITLE msg=audit(1.{s:03d}:{s}): proctitle=78")
        lines.append(f"type=EOE msg=audit(1.{s:03d}:{s}): ")
    one = Assembler()
    want = [ev for line in lines for ev in one.feed_line(line)] + one.flush()
    batched = Assembler()
    got = batched.feed_lines(lines)
    assert batched.flush() == [] and len(got) == 59
    assert [[(r.type, r.serial) for r in ev] for ev in got] == [[(r.type, r.serial) for r in ev] for ev in want]
    assert all(ev.types[:2] == ["SYSCALL", "EXECVE"] and "EOE" not in ev.types for ev in got)
