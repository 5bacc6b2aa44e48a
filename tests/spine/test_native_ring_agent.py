"""The real agent on the real kernel delivers the same process events with the C ring callback
and decoder (podtrail/bpf/_ring.c, _process.c) as with ``PODTRAIL_NATIVE=0`` (the ctypes
callback and ProcessDecoder.decode): one workload run under each, the events of its processes
compared key by key (keys in the same order, same values and types), except what differs
between two runs of a process by nature (ids, times, pids and the keys derived from them)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from agent_harness import process_only_config, start_agent
from conftest import require_core

BB = "/bin/busybox"
# differ between two runs of the same command by nature
VOLATILE = {"event_id", "time", "time_ns", "mono_ns", "start_ns", "pid", "tid", "ppid", "process_key", "parent_key",
            "ancestors"}


def workload(tmp: Path, mark: str) -> None:
    """Execs with the marker in argv: plain, relative, deep cwd, hostile bytes, many and long
    arguments, a failed exec, exit codes and a fatal signal."""
    subprocess.run([BB, "true", mark, "plain"], check=True)
    link = tmp / "true"
    if not link.exists():
        os.symlink(BB, link)
    subprocess.run(["./true", mark, "relative"], cwd=tmp, check=True)
    deep = tmp / "/".join(["d" * 60] * 20)
    deep.mkdir(parents=True, exist_ok=True)
    subprocess.run([BB, "true", mark, "deep"], cwd=deep, check=True)
    subprocess.run([os.fsencode(BB), b"true", mark.encode(), b"\xff\xfe", b"a\nb\x1b[31m", "caf\u00e9".encode()],
                   check=True)
    subprocess.run([BB, "true", mark, *(["many"] * 40), "x" * 300], check=True)
    subprocess.run([BB, "sh", "-c", f"exit 7 # {mark}"])
    p = subprocess.Popen([BB, "sh", "-c", "sleep 30", mark])  # $0 is the marker
    time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    try:
        subprocess.run([str(tmp / "missing"), mark])
    except FileNotFoundError:
        pass


def run_once(native: bool, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, type, Any]]]:
    monkeypatch.setenv("PODTRAIL_NATIVE", "1" if native else "0")
    mark = f"native-{native}-{uuid.uuid4().hex[:8]}"
    agent, sink = start_agent(process_only_config())
    try:
        src = next(s for s in agent.sources if s.name == "ebpf-process")
        assert (src.native_decoder is not None) is native
        workload(tmp, mark)
        execs = sink.wait_for(lambda e: e.get("action") == "exec" and mark in e.get("cmdline", ""), count=8)
        pids = {e["pid"] for e in execs}
        exits = sink.wait_for(lambda e: e.get("action") == "exit" and e["pid"] in pids, count=len(pids))
        assert src._ring.native is native
    finally:
        agent.stop()
    assert len(execs) == 8 and len(exits) == len(pids)
    out = []
    for ev in [*execs, *exits]:
        out.append([(k, type(v), v.replace(mark, "MARK") if isinstance(v, str) else
                     [a.replace(mark, "MARK") for a in v] if k == "argv" else v)
                    for k, v in ev.items() if k not in VOLATILE])
    return out


def test_native_and_python_ring_paths_deliver_the_same_events(monkeypatch: pytest.MonkeyPatch) -> None:
    require_core()
    with tempfile.TemporaryDirectory(prefix="podtrail-native-") as d:
        tmp = Path(d)
        c = run_once(True, tmp, monkeypatch)
        py = run_once(False, tmp, monkeypatch)
    assert len(c) == len(py) == 16
    for a, b in zip(c, py, strict=True):
        assert a == b
