"""`podtrail run` end to end as a first user meets it (issue 16), with the real eBPF sensors
and a real runc container: the ready and stopping lines, a container running before the agent
starts, one agent per node, a broken output made visible (stderr, agent-health event, /readyz
degraded), no ERROR spam while osqueryd is absent, `| head -1` and `make run > file`.

The SIEM is a closed loopback port (nothing listens: what a down receiver looks like)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import require_ebpf, require_runc
from containers import run_container
from loopback import free_port

PODTRAIL = [sys.executable, "-m", "podtrail"]
REPO = Path(__file__).parents[2]



def _config(tmp: Path, outputs: str = "  - {type: stdout}\n", extra: str = "") -> str:
    p = tmp / "c.yaml"
    p.write_text(f"lock_file: {tmp}/agent.lock\nspool_dir: {tmp}/spool\nosquery:\n  api_socket: {tmp}/api.sock\n"
                 f"outputs:\n{outputs}{extra}")
    return str(p)


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Agent:
    """A `podtrail run` process whose stdout and stderr are collected by threads."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([*PODTRAIL, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=lambda s=stream, i=into: i.extend(s), daemon=True).start()

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = next((ln for ln in list(self.err) + list(self.out) if text in ln), None)
            if hit is not None:
                return hit
            assert self.p.poll() is None or time.monotonic() < deadline, self.err
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} in time; stderr: {self.err}")


def test_first_run_ready_containers_single_agent_broken_output_and_stop(tmp_path: Path) -> None:
    require_ebpf()
    require_runc()
    c = run_container("kubelet-cgroupfs-burstable")  # running before the agent starts, idle after
    siem, mport, hport = free_port(), free_port(), free_port()
    cfg = _config(tmp_path, f"  - {{type: stdout}}\n  - {{type: syslog, host: 127.0.0.1, port: {siem}, protocol: tcp}}\n",
                  "metrics:\n  output_stall_seconds: 2\n")
    a = Agent("-c", cfg, "--metrics-port", str(mport), "--health-port", str(hport), "--no-files",
              "--osquery-socket", str(tmp_path / "no-osqueryd" / "osquery.em"))
    try:
        ready = a.wait_for("podtrail: ready in ")
        assert (f"source=ebpf sensors=ebpf-process,ebpf-socket api={tmp_path}/api.sock osquery={tmp_path}/no-osqueryd/osquery.em "
                f"metrics=http://127.0.0.1:{mport}/metrics health=http://127.0.0.1:{hport}/readyz "
                f"outputs=stdout,syslog-tcp-127.0.0.1-{siem}") in ready, ready
        # a container that was running before the agent, found by the start-up scan
        q = subprocess.run([*PODTRAIL, "query", "--api-socket", f"{tmp_path}/api.sock", "--format", "json",
                            f"SELECT container_id, qos_class FROM containers WHERE container_id = '{c.id}'"],
                           capture_output=True, text=True, timeout=60)
        assert json.loads(q.stdout) == [{"container_id": c.id, "qos_class": "burstable"}], q.stderr
        code, body = _get(f"http://127.0.0.1:{hport}/healthz")
        assert code == 200 and body["containers"] >= 1
        # the broken output: named on stderr at once, an agent-health event, /readyz degraded
        warn = a.wait_for(f"output syslog-tcp-127.0.0.1-{siem}: cannot deliver (", 30)
        assert "Connection refused" in warn and f"spool {tmp_path}/spool/" in warn
        a.wait_for('"event_type":"agent"', 30)
        health = [json.loads(ln) for ln in a.out if '"event_type":"agent"' in ln]
        assert any("cannot deliver" in h["message"] for h in health)
        deadline = time.monotonic() + 30
        code, body = _get(f"http://127.0.0.1:{hport}/readyz")
        while not body.get("stalled_outputs") and time.monotonic() < deadline:
            time.sleep(0.5)
            code, body = _get(f"http://127.0.0.1:{hport}/readyz")
        assert code == 503 and f"syslog-tcp-127.0.0.1-{siem}" in body["stalled_outputs"]
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            assert b"podtrail_output_failed_total" in r.read()
        # a second agent on the node: refused, naming the first; the first one's socket stays
        for extra in ([], ["--no-metrics"]):
            r = subprocess.run([*PODTRAIL, "run", "-c", cfg, *extra], capture_output=True, text=True, timeout=60)
            assert r.returncode == 2
            assert r.stderr == (f"podtrail: error: another podtrail agent is running on this node "
                                f"(pid {a.p.pid}, lock {tmp_path}/agent.lock)\n")
        q = subprocess.run([*PODTRAIL, "query", "--api-socket", f"{tmp_path}/api.sock", "SELECT count(*) FROM pods"],
                           capture_output=True, text=True, timeout=60)
        assert q.returncode == 0, q.stderr
        # stop: SIGINT
        t0 = time.monotonic()
        a.p.send_signal(signal.SIGINT)
        assert a.p.wait(60) == 0
        print(f"SIGINT to exit: {time.monotonic() - t0:.2f}s (BCC detaches each tracepoint on the way out)")
        time.sleep(0.3)
        assert "podtrail: stopping (SIGINT)\n" in a.err
        assert not (tmp_path / "agent.lock").exists() and not (tmp_path / "api.sock").exists()
        joined = "".join(a.err)
        assert "Traceback" not in joined and "ERROR" not in joined and "Could not connect" not in joined, joined
        lines = [ln for ln in a.err if not ln.startswith(("podtrail: ready", "podtrail: stopping"))]
        assert all("output syslog-tcp" in ln for ln in lines), lines  # only the output's own warnings
    finally:
        if a.p.poll() is None:
            a.p.kill()
        c.destroy()


def test_head_one_ends_the_agent(tmp_path: Path) -> None:
    """`podtrail run | head -1`: the reader goes away, the agent (stdout its only output) ends."""
    require_ebpf()
    cfg = _config(tmp_path, extra="metrics:\n  enabled: false\n")
    r = subprocess.run(["bash", "-c", f"{' '.join(PODTRAIL)} run -c {cfg} | head -1; echo \"rc=${{PIPESTATUS[0]}}\""],
                       capture_output=True, text=True, timeout=120)
    first, rc = r.stdout.splitlines()
    assert json.loads(first)["event_type"] in ("process", "socket", "file", "agent") and rc == "rc=0", r.stderr  # a quiet host: the first may be a health report
    assert "podtrail: stopping (output stdout closed)" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "agent.lock").exists()


def _top_level_make_env() -> dict[str, str]:
    """The environment of a user's shell: under `make test` the parent make's MAKELEVEL would
    make the child announce "make[1]: Entering directory" (before it reads any makefile)."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


def test_make_run_captures_only_events(tmp_path: Path) -> None:
    """The README's first command: `make run > events.jsonl` holds events and nothing else."""
    require_ebpf()
    cfg = _config(tmp_path, extra="metrics:\n  enabled: false\n")
    out = tmp_path / "events.jsonl"
    # execs to report while it runs (a quiet host may have none of its own in two seconds)
    busy = subprocess.Popen(["sh", "-c", "while :; do /bin/true; sleep 0.1; done"])
    try:
        with open(out, "w") as f:
            r = subprocess.run(["make", "run", f"ARGS=--duration 2 -c {cfg}"], cwd=REPO, stdout=f,
                               stderr=subprocess.PIPE, text=True, timeout=600, env=_top_level_make_env())
    finally:
        busy.kill()
        busy.wait()
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(ln)["event_id"] for ln in lines)
    assert "podtrail: ready in " in r.stderr
