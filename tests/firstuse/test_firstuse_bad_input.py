"""The bad-input table (issue 16): each input gives exactly one line of error (flag mistakes:
the command's usage, then one error line), a non-zero exit, no traceback, and nothing lost
or left behind: the input files are unchanged, and no lock file, socket or spool appears.

Every ``podtrail run`` case fails in the checks that come before any sensor loads (the run
would otherwise print its ready line), so these need no eBPF."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PODTRAIL = [sys.executable, "-m", "podtrail"]
ROOT_ONLY = os.geteuid() != 0


def _config(tmp: Path, body: str, spool: str = "", osquery: str = "", metrics: str = "") -> str:
    """A config whose lock, API socket and spool live in ``tmp`` (so leftovers are visible)."""
    p = tmp / "c.yaml"
    p.write_text(f"lock_file: {tmp}/agent.lock\nspool_dir: {spool or tmp / 'spool'}\n"
                 f"osquery:\n  api_socket: {tmp}/api.sock\n{osquery}"
                 f"metrics:\n  port: 29464\n  health_port: 29465\n{metrics}{body}")
    return str(p)


def _bytes(tmp: Path, name: str, data: bytes) -> str:
    p = tmp / name
    p.write_bytes(data)
    return str(p)


EVENT = b'{"event_type":"process","action":"exec","pid":1,"time":1.0}\n'

# (id, argv builder given tmp, the exact last stderr line with {tmp} for the directory)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("syslog port 70000",
     lambda t: ["run", "-c", _config(t, "outputs:\n  - {type: syslog, port: 70000}\n")],
     "podtrail: error: outputs[0].port: a port 1-65535, not 70000"),
    ("ringbuf_pages -5",
     lambda t: ["run", "-c", _config(t, "sensor:\n  ringbuf_pages: -5\n")],
     "podtrail: error: sensor.ringbuf_pages: a power of two 1-262144, not -5"),
    ("argv_max_args -1",
     lambda t: ["run", "-c", _config(t, "sensor:\n  argv_max_args: -1\n")],
     "podtrail: error: sensor.argv_max_args: must be 1-128, not -1"),
    ("events_max -10",
     lambda t: ["run", "-c", _config(t, "", osquery="  events_max: -10\n")],
     "podtrail: error: osquery.events_max: must be > 0, not -10"),
    ("spool_max_bytes -100",
     lambda t: ["run", "-c", _config(t, "outputs:\n  - {type: syslog, spool_max_bytes: -100}\n")],
     "podtrail: error: outputs[0].spool_max_bytes: must be > 0, not -100"),
    ("metrics address",
     lambda t: ["run", "-c", _config(t, "", metrics="  address: localhost:9\n")],
     "podtrail: error: metrics.address: an IP address, not 'localhost:9'"),
    ("unknown output type",
     lambda t: ["run", "-c", _config(t, "outputs:\n  - {type: kafka}\n")],
     "podtrail: error: outputs[0].type: output type 'kafka' is not available (stdout, syslog, webhook)"),
    ("spool_dir is a file",
     lambda t: ["run", "-c", _config(t, "outputs:\n  - {type: syslog}\n", spool=_bytes(t, "afile", b"x"))],
     "podtrail: error: spool_dir: {tmp}/afile is not a directory"),
    ("missing ca_file",
     lambda t: ["run", "-c", _config(t, f"outputs:\n  - {{type: syslog, protocol: tls, ca_file: {t}/nope.pem}}\n")],
     "podtrail: error: outputs[0].ca_file: cannot read {tmp}/nope.pem"),
    ("missing client_key",
     lambda t: ["run", "-c", _config(t, f"outputs:\n  - {{type: syslog, protocol: tls, client_cert: {_bytes(t, 'c.pem', b'x')}, client_key: {t}/k.pem}}\n")],
     "podtrail: error: outputs[0].client_key: cannot read {tmp}/k.pem"),
    ("config not UTF-8",
     lambda t: ["run", "-c", _bytes(t, "bad.yaml", b"sensor:\n  source: \xff\xfe\n")],
     "podtrail: error: {tmp}/bad.yaml:2: not UTF-8 text (byte 0xff)"),
    ("--duration -1", lambda t: ["run", "--duration", "-1"],
     "podtrail run: error: argument --duration: must be > 0 seconds, not -1"),
    ("--metrics-port 99999", lambda t: ["run", "--metrics-port", "99999"],
     "podtrail run: error: argument --metrics-port: a port is 1-65535, not 99999"),
    ("--health-port abc", lambda t: ["run", "--health-port", "abc"],
     "podtrail run: error: argument --health-port: not a port number: 'abc'"),
    ("run --bogus", lambda t: ["run", "--bogus"], "podtrail run: error: unrecognized arguments: --bogus"),
    ("query --bogus", lambda t: ["query", "select 1", "--bogus"], "podtrail query: error: unrecognized arguments: --bogus"),
    ("events not UTF-8 (query)",
     lambda t: ["query", "--events", _bytes(t, "e.jsonl", EVENT + b'{"comm":"\xff"}\n'), "select 1"],
     "podtrail: error: {tmp}/e.jsonl:2: not UTF-8 text (--skip-bad-lines skips such lines)"),
    ("events not UTF-8 (shell)",
     lambda t: ["shell", "--events", _bytes(t, "e.jsonl", EVENT + b'{"comm":"\xff"}\n')],
     "podtrail: error: {tmp}/e.jsonl:2: not UTF-8 text (--skip-bad-lines skips such lines)"),
    ("events not UTF-8 (rules test)",
     lambda t: ["rules", "test", "--events", _bytes(t, "e.jsonl", EVENT + b'{"comm":"\xff"}\n')],
     "podtrail: error: {tmp}/e.jsonl:2: not UTF-8 text (--skip-bad-lines skips such lines)"),
    ("events bad JSON line",
     lambda t: ["query", "--events", _bytes(t, "e.jsonl", EVENT + b"{oops\n" + EVENT), "select 1"],
     "podtrail: error: {tmp}/e.jsonl:2: not a JSON event (--skip-bad-lines skips such lines)"),
    ("empty SQL", lambda t: ["query", "--events", _bytes(t, "e.jsonl", EVENT), " ; "],
     "podtrail: error: no SQL statement given"),
    ("field name as column",
     lambda t: ["query", "--events", _bytes(t, "e.jsonl", EVENT), "select ppid from container_process_events"],
     "podtrail: error: SQL: no such column: ppid (the column is `parent`; `podtrail fields` lists every name)"),
    ("no daemon", lambda t: ["query", "--api-socket", f"{t}/none.sock", "select * from containers"],
     "podtrail: error: no podtrail daemon at {tmp}/none.sock (No such file or directory); start `podtrail run`"),
]


def _snapshot(tmp: Path) -> dict[str, str]:
    return {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else p.stat().st_mode.__str__()
            for p in sorted(tmp.rglob("*"))}


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(tmp_path: Path, argv: Callable[[Path], list[str]], expected: str) -> None:
    args = argv(tmp_path)
    before = _snapshot(tmp_path)
    r = subprocess.run([*PODTRAIL, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    lines = r.stderr.splitlines()
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr and "ready" not in r.stderr, r.stderr
    assert lines and lines[-1] == expected.format(tmp=tmp_path), r.stderr
    if expected.startswith("podtrail: error"):
        assert len(lines) == 1, r.stderr
    else:  # a flag mistake: that command's usage, then the error line
        assert lines[0].startswith(f"usage: podtrail {args[0]}"), r.stderr
    assert _snapshot(tmp_path) == before  # nothing lost (inputs intact), nothing left behind


def test_busy_health_port_is_reported_before_anything_runs(tmp_path: Path) -> None:
    """A busy port fails the run before the lock file, the sensors or the API socket exist."""
    if ROOT_ONLY:
        pytest.skip("podtrail run checks for root before the ports")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cfg = _config(tmp_path, "")
        before = _snapshot(tmp_path)
        r = subprocess.run([*PODTRAIL, "run", "-c", cfg, "--health-port", str(port)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == f"podtrail: error: cannot serve health on 127.0.0.1:{port}: Address already in use (--health-port)\n"
    assert _snapshot(tmp_path) == before


def test_second_agent_names_the_running_one(tmp_path: Path) -> None:
    """The lock is a real flock held by another process (as a running agent holds it); the
    second run names that pid, and leaves the holder's lock file and API socket alone."""
    if ROOT_ONLY:
        pytest.skip("podtrail run checks for root before the lock")
    cfg = _config(tmp_path, "")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, socket, sys, time\n"
        f"fd = os.open('{tmp_path}/agent.lock', os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        f"s = socket.socket(socket.AF_UNIX); s.bind('{tmp_path}/api.sock'); s.listen(1)\n"
        "print('held', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        before = _snapshot(tmp_path)
        for extra in ([], ["--no-metrics"]):
            r = subprocess.run([*PODTRAIL, "run", "-c", cfg, *extra], capture_output=True, text=True, timeout=60)
            assert r.returncode == 2
            assert r.stderr == (f"podtrail: error: another podtrail agent is running on this node "
                                f"(pid {holder.pid}, lock {tmp_path}/agent.lock)\n")
            assert _snapshot(tmp_path) == before and (tmp_path / "api.sock").is_socket()
    finally:
        holder.kill()
        holder.wait()
    assert fcntl  # the holder used the same primitive the agent uses
