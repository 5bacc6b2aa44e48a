"""`podtrail run` and `podtrail doctor` as a user runs them: real processes, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from conftest import require_ebpf, require_runc
from containers import run_container

from podtrail.model.event import validate

PODTRAIL = [sys.executable, "-m", "podtrail"]


def test_run_emits_valid_container_aware_json_lines() -> None:
    require_ebpf()
    require_runc()
    c = run_container("kubelet-cgroupfs-burstable")
    try:
        p = subprocess.Popen([*PODTRAIL, "run", "--duration", "25", "--no-metrics"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and p.poll() is None:
            c.exec("/bin/busybox", "true", "cli-container-marker")
            time.sleep(0.5)
            if any("cli-container-marker" in ln and '"comm":"busybox"' in ln for ln in list(lines)):
                break
        p.send_signal(2)
        p.wait(30)  # not communicate(): it would read stdout too, racing the reader thread (torn lines)
        reader.join(10)
        err = p.stderr.read() if p.stderr else ""
        assert p.returncode == 0, err
        events = [json.loads(line) for line in lines]
        assert events, err
        bad = [(e.get("action"), validate(e)) for e in events if validate(e)]
        assert not bad, bad[:3]
        mine = [e for e in events if e["action"] == "exec" and "cli-container-marker" in e.get("cmdline", "")
                and e.get("comm") != "runc"]
        assert mine and all(e["container_id"] == c.id and e["pod_uid"] == c.pod_uid for e in mine)
        assert mine[0]["qos_class"] == "burstable"
    finally:
        c.destroy()


def test_doctor_says_which_source_and_why() -> None:
    require_ebpf()
    r = subprocess.run([*PODTRAIL, "doctor", "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["source"] == "ebpf", report
    assert {c["name"] for c in report["checks"]} >= {"tracefs", "bpf load", "btf", "libbpf", "bpf objects", "cgroup v2"}


def test_user_mistakes_are_one_line_errors(tmp_path: os.PathLike[str]) -> None:
    bad = os.path.join(tmp_path, "bad.yaml")
    with open(bad, "w") as f:
        f.write("sensor:\n  argv_max_args: lots\n")
    r = subprocess.run([*PODTRAIL, "run", "--config", bad], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "sensor.argv_max_args" in r.stderr
    r = subprocess.run([*PODTRAIL, "run", "--config", "/nonexistent.yaml"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "cannot read config" in r.stderr
    r = subprocess.run([*PODTRAIL, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("podtrail ")


def _with_alarm(seconds: int, body: Any) -> Any:
    """``body()`` with SIGALRM turning a wait that does not end into a failure; the
    signal handlers as they were after."""
    import signal

    def alarm(*_: Any) -> None:
        raise TimeoutError("the wait did not end")

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return body()
    finally:
        signal.alarm(0)
        for s, h in saved.items():
            signal.signal(s, h)


def test_a_signal_from_another_thread_ends_the_wait_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM sent while ``_wait`` sleeps: the wake-up fd ends the sleep at once. Its look
    interval is set to a minute, so a wait that only noticed the signal at its next look fails
    at the 5 s alarm. (It once took the stop event's lock in the handler and never stopped.)"""
    import signal
    from types import SimpleNamespace

    from podtrail.commands import run

    monkeypatch.setattr(run, "WAIT_S", 60.0)
    agent = SimpleNamespace(stop_event=threading.Event(), end_reason="")
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert _with_alarm(5, lambda: run._wait(agent, None)) == "SIGTERM"
    assert agent.stop_event.is_set()
    assert signal.set_wakeup_fd(-1) == -1  # the wake-up fd is given back


def test_the_agent_ending_by_itself_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source that ends sets the stop event from its thread: the wait sees it at its next
    look and says why."""
    from types import SimpleNamespace

    from podtrail.commands import run

    monkeypatch.setattr(run, "WAIT_S", 0.05)
    agent = SimpleNamespace(stop_event=threading.Event(), end_reason="its only output closed")
    threading.Timer(0.2, agent.stop_event.set).start()
    assert _with_alarm(5, lambda: run._wait(agent, None)) == "its only output closed"
