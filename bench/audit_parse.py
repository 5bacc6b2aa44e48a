"""Audit parse-and-assemble rate: podtrail vs auparse (the C library) on the same real log.

    .venv/bin/python -m bench audit_parse [--execs 5000] [--rounds 5]

A real auditd (ENRICHED, one execve rule) records an exec storm; then, in one run with the
rounds alternating, each reader walks that log's text. Pairs do the same work:

- ``all_fields``: events assembled and every field's value of every record read — podtrail's
  records split into raw values (``Record.raw``); auparse ``get_field_str`` on every field.
- ``mapping_fields``: events assembled and the values the mapping reads (``SYSCALL_FIELDS``
  of SYSCALL, every EXECVE field, CWD's cwd), decoded — podtrail through the calls
  ``to_event`` makes (``syscall_values``, ``execve_args``, the CWD value); auparse walks those
  records' fields and reads the same ones (it has no lookup by name within a record), other
  records' types only.
- ``assemble``: events assembled and each record's type — podtrail's rows; auparse's events
  and each record's type.

Plus the source's whole path without I/O, text to podtrail events (``to_event``), with the
own parser and with podtrail's auparse-backed reader (auparse parses and groups, podtrail
builds its records, every field decoded): µs per event. Times are CPU seconds of this process (the machine
is shared; wall time would count waiting for a core), best of the rounds; both read the same
text from memory: podtrail in 64 KiB pieces cut after a newline, as the source reads it
(``assemble_text``), auparse the whole text through ``AUSOURCE_BUFFER``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"), str(Path(__file__).resolve().parents[1] / "tests" / "audit")]

from real_auditd import real_auditd  # noqa: E402

from podtrail.audit.assemble import assemble_text, text_chunks  # noqa: E402
from podtrail.audit.auparse_reader import AuparseAssembler  # noqa: E402
from podtrail.audit.mapping import cwd_of, execve_args, to_event  # noqa: E402
from podtrail.audit.records import SYSCALL_FIELDS, Record, syscall_of  # noqa: E402

WANTED = {"SYSCALL": frozenset(SYSCALL_FIELDS), "CWD": frozenset({"cwd"})}


def own_assemble(text: str) -> tuple[int, int]:
    events = records = 0
    for ev in assemble_text(text):
        events += 1
        records += len(ev.types)
    return events, records


def own_all_fields(text: str) -> tuple[int, int]:
    events = records = 0
    for recs in assemble_text(text):
        events += 1
        for r in recs:
            records += 1
            r.raw  # noqa: B018 - the split is the work measured
    return events, records


def own_mapping_fields(text: str) -> tuple[int, int]:
    events = records = 0
    for ev in assemble_text(text):
        events += 1
        types = ev.types
        records += len(types)
        syscall_of(ev)
        if "EXECVE" in types:
            execve_args(ev)
        if "CWD" in types:
            cwd_of(ev)
    return events, records


def to_events(text: str, assemble: Callable[[str], Iterable[Sequence[Record]]]) -> tuple[int, int]:
    """Text to podtrail events, as the source does, with either assembler."""
    events = records = 0
    for recs in assemble(text):
        events += 1
        records += len(recs)
        to_event(recs)
    return events, records


def auparse_backed(text: str) -> list[list[Record]]:
    """The auparse-backed reader fed as the source feeds it: a read's worth at a time."""
    a = AuparseAssembler()
    out = [ev for chunk in text_chunks(text) for ev in a.feed_text(chunk)]
    return out + a.flush()


def _auparse(text: str, fields: str) -> tuple[int, int]:
    import auparse

    au = auparse.AuParser(auparse.AUSOURCE_BUFFER, text)
    events = records = 0
    while au.parse_next_event():
        events += 1
        au.first_record()
        while True:
            records += 1
            if fields == "all":
                if au.first_field():
                    while True:
                        au.get_field_str()
                        if not au.next_field():
                            break
            elif fields == "mapping":
                t = au.get_type_name()
                if t == "EXECVE":
                    if au.first_field():
                        while True:
                            au.get_field_name()
                            au.get_field_str()
                            if not au.next_field():
                                break
                elif t in WANTED:
                    want = WANTED[t]
                    if au.first_field():
                        while True:
                            if au.get_field_name() in want:
                                au.get_field_str()
                            if not au.next_field():
                                break
            else:
                au.get_type_name()
            if not au.next_record():
                break
    return events, records


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--log", help="an existing audit.log to read instead of recording one")
    a = ap.parse_args()
    if a.log:
        log = Path(a.log)
    else:
        d = Path(tempfile.mkdtemp(prefix="podtrail-bench-audit-"))
        with real_auditd(d, [["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "exec"]]) as log:
            subprocess.run(["/bin/busybox", "sh", "-c", f"i=0; while [ $i -lt {a.execs} ]; do /bin/busybox true a b c; i=$((i+1)); done"])
            time.sleep(1.5)
    text = log.read_text(errors="surrogateescape")
    runs: dict[str, Callable[[], tuple[int, int]]] = {
        "own_assemble": lambda: own_assemble(text), "auparse_assemble": lambda: _auparse(text, "types"),
        "own_mapping_fields": lambda: own_mapping_fields(text), "auparse_mapping_fields": lambda: _auparse(text, "mapping"),
        "own_all_fields": lambda: own_all_fields(text), "auparse_all_fields": lambda: _auparse(text, "all"),
        "own_to_events": lambda: to_events(text, assemble_text),
        "auparse_backed_to_events": lambda: to_events(text, auparse_backed),
    }
    best = dict.fromkeys(runs, float("inf"))
    counts: dict[str, tuple[int, int]] = {}
    for _ in range(a.rounds):  # alternating, best of each: a shared machine's load hits all alike
        for name, fn in runs.items():
            t0 = time.process_time()
            counts[name] = fn()
            best[name] = min(best[name], time.process_time() - t0)
    assert len({c for c in counts.values()}) == 1, counts  # every reader found the same events and records
    events, records = next(iter(counts.values()))
    rate = {k: records / v for k, v in best.items()}
    print(json.dumps({
        "lines": text.count("\n"), "events": events, "records": records, "loadavg": os.getloadavg(),
        "records_per_cpu_s": {k: round(v) for k, v in rate.items()},
        "ratio_own_to_auparse": {w: round(rate[f"own_{w}"] / rate[f"auparse_{w}"], 2)
                                 for w in ("assemble", "mapping_fields", "all_fields")},
        "ratio_own_mapping_fields_to_auparse_all_fields": round(rate["own_mapping_fields"] / rate["auparse_all_fields"], 2),
        "us_per_event_lines_to_events": {k: round(1e6 * best[k] / events, 1) for k in ("own_to_events", "auparse_backed_to_events")},
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
