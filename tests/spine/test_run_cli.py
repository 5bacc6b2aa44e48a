"""`podtrail run` and `podtrail doctor` as a user runs them: real processes, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

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


def test_a_signal_while_the_wait_holds_the_stop_events_lock_still_stops() -> None:
    """SIGTERM handled at the moment the main thread's ``stop.wait`` holds the stop event's
    lock (as Condition.wait does when it wakes after each 0.1 s): the handler must not take
    that lock (it did, through Event.set, and `podtrail run` never stopped on SIGINT; seen
    under load in bench gc_storm). SIGALRM turns such a deadlock into a failure."""
    import signal
    from types import SimpleNamespace
    from typing import Any

    from podtrail.commands.run import _wait

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            with self._cond:  # type: ignore[attr-defined]
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # bytecodes: the handler runs here, the lock held
                    pass
            return super().wait(timeout)

    def alarm(*_: Any) -> None:
        raise TimeoutError("the signal handler waited for the lock its own thread holds")

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(5)
    try:
        agent = SimpleNamespace(stop_event=Stop(), end_reason="")
        assert _wait(agent, None) == "SIGTERM"
        assert agent.stop_event.is_set()
    finally:
        signal.alarm(0)
        for s, h in saved.items():
            signal.signal(s, h)
