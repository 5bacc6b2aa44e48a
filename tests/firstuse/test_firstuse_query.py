"""`podtrail query`, `shell` and `fields` as a first user meets them (issue 16): whole values,
headers on empty results, column hints, `--events` into indexed tables with state tables, torn
and bad lines, the shell's dot commands, history, Ctrl-C and exit status. Files of events are
made with the real event constructor (``new_event``/``finalize``), as `podtrail run` writes them."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from podtrail.model.event import finalize, new_event
from podtrail.model.fields import Kind
from podtrail.outputs.stdout import to_json_line
from podtrail.tables import events_db
from podtrail.tables.schema import TABLES
from podtrail.tables.service import to_row
from podtrail.tables.sql import connect, query

PODTRAIL = [sys.executable, "-m", "podtrail"]
CID = "3f" * 32  # a 64-character container id


def _events(n: int = 60) -> list[dict[str, Any]]:
    """A process tree in a container (exec/exit), writes then execs of the same paths, a host process."""
    evs = []
    for i in range(n):
        ctx = dict(container_id=CID, container_runtime="containerd", pod_uid="pod-uid-1", pod_name="web-1",
                   namespace="shop", workload_kind="Deployment", workload_name="web") if i % 3 else {}
        evs.append(finalize(new_event(Kind.PROCESS, "exec", pid=1000 + i, ppid=1000 + i - 1, comm="sh", path=f"/tmp/x{i % 7}",
                                      cmdline=f"sh -c job-{i}", process_key=f"{1000 + i}:1", parent_key=f"{999 + i}:1",
                                      time=1000.0 + i, source="ebpf", **ctx)))
        evs.append(finalize(new_event(Kind.FILE, "write", pid=1000 + i, path=f"/tmp/x{i % 7}", time=999.5 + i,
                                      process_key=f"{1000 + i}:1", source="ebpf", **ctx)))
        if i % 5 == 0:
            evs.append(finalize(new_event(Kind.PROCESS, "exit", pid=1000 + i, process_key=f"{1000 + i}:1",
                                          time=1000.2 + i, exit_code=0, source="ebpf", **ctx)))
    return evs


def _write(path: Path, evs: list[dict[str, Any]], tail: bytes = b"") -> str:
    path.write_bytes(b"".join(to_json_line(e).encode() + b"\n" for e in evs) + tail)
    return str(path)


def _pt(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODTRAIL, *args], capture_output=True, text=True, input=stdin, timeout=120,
                          env={**os.environ, **(env or {})})


JOINS = [
    "SELECT c.pid, p.pid FROM container_process_events c JOIN container_process_events p ON c.parent_key = p.process_key ORDER BY 1",
    "SELECT c.pid, p.pid FROM container_process_events c JOIN container_process_events p ON c.parent = p.pid ORDER BY 1",
    "SELECT f.pid, e.pid FROM container_file_events f JOIN container_process_events e ON e.path = f.path "
    "AND e.time BETWEEN f.time AND f.time + 3 WHERE e.action = 'exec' ORDER BY 1, 2",
    "SELECT count(*) FROM container_process_events WHERE container_id = '" + CID + "' AND time > 1010 AND time <= 1030",
    "SELECT count(*) FROM container_process_events WHERE pid = '1005'",
    "SELECT count(*) FROM container_process_events WHERE pid = NULL",
]


def test_indexed_virtual_tables_answer_joins_like_plain_sqlite(tmp_path: Path) -> None:
    """The daemon path (virtual tables, BestIndex over per-statement snapshots) and the
    --events path (indexed tables) give the same rows as SQLite over plain tables."""
    import apsw

    evs = _events()
    rows = {name: [to_row(spec, e) for e in evs if spec.kind is not None and e["event_type"] == spec.kind.value]
            for name, spec in TABLES.items()}
    calls: list[str] = []

    def generate(table: str, cs: Any) -> list[dict[str, str]]:
        calls.append(table)
        return rows[table]

    vdb = connect(TABLES, generate)
    edb = events_db.load(iter(evs), str(tmp_path))
    plain = apsw.Connection(":memory:")
    for name, spec in TABLES.items():
        plain.execute(f'CREATE TABLE "{name}"({", ".join(f"{c.name} {c.type}" for c in spec.columns)})')
        cur = edb.execute(f'SELECT * FROM "{name}"') if spec.kind is not None else []
        plain.executemany(f'INSERT INTO "{name}" VALUES ({",".join("?" * len(spec.columns))})', list(cur))
    from podtrail.tables.sql import _typed

    for name, spec in TABLES.items():  # the loader stores exactly what the osquery rows say
        if spec.kind is not None:
            want_rows = [tuple(_typed(r[c.name], c.type) for c in spec.columns) for r in rows[name]]
            assert list(edb.execute(f'SELECT * FROM "{name}"')) == want_rows, name
    for sql in JOINS:
        want = list(plain.execute(sql))
        assert query(vdb, sql)[1] == want, sql
        assert query(edb, sql)[1] == want, sql
    assert query(vdb, JOINS[0])[1]  # not vacuous
    calls.clear()
    query(vdb, JOINS[0])
    assert calls == ["container_process_events"]  # one snapshot per statement, not one per outer row
    assert os.listdir(tmp_path) == []  # the database file is unlinked while open


def test_events_file_state_tables_torn_and_bad_lines(tmp_path: Path) -> None:
    evs = _events()
    f = _write(tmp_path / "e.jsonl", evs, tail=b'{"event_type":"process","act')  # torn by a kill -9
    r = _pt("query", "--events", f, "SELECT container_id, pod_name, namespace FROM containers", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"container_id": CID, "pod_name": "web-1", "namespace": "shop"}]
    assert r.stderr == f"podtrail: {f}: ignored a torn last line (the writer stopped mid-line)\n"
    r = _pt("query", "--events", f, "SELECT pod_uid, workload_name FROM pods", "--format", "csv")
    assert r.stdout.splitlines() == ["pod_uid,workload_name", "pod-uid-1,web"]
    r = _pt("query", "--events", f, "SELECT count(*) AS n FROM container_processes", "--format", "json")
    execs = {e["process_key"] for e in evs if e["action"] == "exec"}
    exited = {e["process_key"] for e in evs if e["action"] == "exit"}
    assert json.loads(r.stdout) == [{"n": len(execs - exited)}]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(to_json_line(evs[0]).encode() + b"\nnot json\n[1]\n\xff\xfe\n" + to_json_line(evs[1]).encode() + b"\n")
    r = _pt("query", "--events", str(bad), "--skip-bad-lines", "SELECT count(*) AS n FROM container_process_events", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == [{"n": 1}]
    assert r.stderr == f"podtrail: {bad}: skipped 3 bad lines (line 2, 3, 4)\n"


def test_table_view_whole_values_empty_header_and_hints(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.jsonl", _events(6))
    r = _pt("query", "--events", f, "SELECT container_id, cmdline FROM container_process_events WHERE container_id != '' LIMIT 1")
    assert r.returncode == 0 and f"| {CID} |" in r.stdout and "…" not in r.stdout
    r = _pt("query", "--events", f, "SELECT pid, comm FROM container_process_events WHERE pid < 0")
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["+-----+------+", "| pid | comm |", "+-----+------+"]
    r = _pt("query", "--events", f, "SELECT pid FROM container_process_events WHERE pid < 0", "--format", "csv")
    assert r.stdout == "pid\n"  # (text mode folds the CSV \\r\\n)
    for field, column in (("ppid", "parent"), ("user", "username"), ("event_id", "eid")):
        r = _pt("query", "--events", f, f"SELECT e.{field} FROM container_process_events e")
        assert r.returncode == 2
        assert r.stderr == (f"podtrail: error: SQL: no such column: e.{field} (the column is `{column}`; "
                            "`podtrail fields` lists every name)\n")
    r = _pt("query", "--events", f, "SELECT eid FROM container_process_events LIMIT 1", "--format", "line")
    assert r.stdout.startswith("eid = ") and len(r.stdout.strip()) > len("eid = ")


def test_shell_piped_dot_commands_last_statement_and_status(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.jsonl", _events(6))
    script = ".tables\n.schema containers\n.mode csv\nSELECT count(*) AS n FROM container_process_events;\n.help\nSELECT 7 AS last"
    r = _pt("shell", "--events", f, stdin=script)
    assert r.returncode == 0, r.stderr
    assert "  => container_process_events" in r.stdout and "CREATE TABLE containers(" in r.stdout
    assert "n\n8\n" in r.stdout and r.stdout.rstrip().endswith("last\n7")  # .mode csv applied; last line without ';' ran
    assert ".schema [TABLE]" in r.stdout
    r = _pt("shell", "--events", f, stdin="SELECT nope FROM pods;\nSELECT 1 AS one;\n.schema nope\n.frobnicate\n")
    assert r.returncode == 1
    assert "one" in r.stdout
    assert r.stderr.splitlines() == [
        "Error: SQL: no such column: nope",
        "Error: no such table: nope (tables: " + ", ".join(sorted(TABLES)) + ")",
        "Error: unknown command .frobnicate (.help lists them)"]


def _pty_run(args: list[str], keys: list[bytes], home: Path) -> tuple[int, str]:
    """Run under a real terminal; type ``keys`` one chunk at a time, each after output settles."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["HOME"] = str(home)
        os.environ["TERM"] = "dumb"
        os.execv(sys.executable, [*PODTRAIL, *args])
    out = b""

    def drain(wait: float) -> bool:
        """Read for ``wait`` seconds; False once the child closed the terminal."""
        nonlocal out
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return False
                if not data:
                    return False
                out += data
        return True
    drain(5)
    for k in keys:
        os.write(fd, k)
        drain(1.5)
    deadline = time.monotonic() + 120
    while drain(0.5) and time.monotonic() < deadline:
        pass
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_shell_on_a_terminal_banner_ctrl_c_history(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.jsonl", _events(6))
    code, out = _pty_run(["shell", "--events", f],
                         [b"SELECT 'half typed", b"\x03", b"SELECT 40 + 2 AS answer;\r", b"\x04"], tmp_path)
    assert code == 0, out
    assert "Enter .help for help" in out and "| answer |" in out and "| 42     |" in out
    assert "half typed" not in out.split("^C", 1)[1]  # Ctrl-C cleared the line, the shell stayed
    assert "SELECT 40 + 2 AS answer;" in (tmp_path / ".podtrail_history").read_text()


def test_fields_table_on_a_terminal_json_in_a_pipe(tmp_path: Path) -> None:
    code, out = _pty_run(["fields"], [], tmp_path)
    assert code == 0 and "| field " in out and "| ppid " in out and "| parent " in out
    r = _pt("fields")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {"name": "ppid", "osquery": "parent"}.items() <= next(x for x in rows if x["name"] == "ppid").items()


def test_events_progress_on_a_terminal(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.jsonl", _events(6) * 4000)
    code, out = _pty_run(["query", "--events", f, "SELECT count(*) AS n FROM container_process_events"], [], tmp_path)
    assert code == 0 and f"podtrail: loading {f}: " in out and "| 32000 |" in out
