"""The health endpoint bound to 0.0.0.0, as in the Kubernetes config: a probe to a non-loopback
address gets the status only; the detail (outputs, spool, counts) stays on loopback.

A real `podtrail run` inside a network namespace the test creates, with loopback and a second,
non-loopback address (10.200.0.1, the stand-in for a pod IP); the requests are made inside
that namespace, so no traffic leaves it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, require_ebpf

from podtrail.health import body, is_loopback

POD_IP = "10.200.0.1"
FETCH = """
import json, sys, urllib.error, urllib.request
out = {}
for host in sys.argv[2:]:
    for path in ("/healthz", "/readyz"):
        try:
            with urllib.request.urlopen(f"http://{host}:{sys.argv[1]}{path}", timeout=2) as r:
                out[host + path] = [r.status, json.loads(r.read())]
        except urllib.error.HTTPError as e:
            out[host + path] = [e.code, json.loads(e.read())]
print(json.dumps(out))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    require(os.geteuid() == 0 and shutil.which("ip") is not None, "root and iproute2")
    name = f"podtrail-health-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # The kernel here has no dummy interfaces: the pod IP goes on the namespace's lo.
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", f"{POD_IP}/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_probe_on_the_pod_ip_gets_status_only_and_loopback_gets_detail(netns: str, tmp_path: Path) -> None:
    require_ebpf()
    cfg = tmp_path / "podtrail.yaml"
    cfg.write_text("metrics: {address: 0.0.0.0, port: 9464, health_port: 9465}\n"
                   "osquery: {api_socket: ''}\nsensor: {sockets: false, files: false}\n"
                   "outputs: [{type: stdout, format: json}]\n")
    inns = ["ip", "netns", "exec", netns]
    p = subprocess.Popen([*inns, sys.executable, "-m", "podtrail", "run", "--config", str(cfg), "--duration", "40"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        got: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            r = subprocess.run([*inns, sys.executable, "-c", FETCH, "9465", "127.0.0.1", POD_IP],
                               capture_output=True, text=True, timeout=20)
            if r.returncode == 0:
                got = json.loads(r.stdout)
                if got["127.0.0.1/readyz"][0] == 200:
                    break
            time.sleep(0.5)
        assert got, p.stderr.read() if p.poll() is not None and p.stderr else "no answer"
        for path in ("/healthz", "/readyz"):
            status, detail = got["127.0.0.1" + path]
            assert status == 200 and detail["ok"] is True and detail["source"] == "ebpf" and "spool_pending" in detail
            status, short = got[POD_IP + path]
            assert status == 200 and short == {"ok": True}, short
    finally:
        p.terminate()
        p.communicate(timeout=30)


def test_body_and_address_rules() -> None:
    st = {"source": "ebpf", "spool_pending": {"syslog siem.example:6514": 3}}
    assert json.loads(body(False, st, detail=False)) == {"ok": False}
    assert json.loads(body(True, st, detail=True)) == {"ok": True, **st}
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.200.0.1") and not is_loopback("0.0.0.0") and not is_loopback("::ffff:10.0.0.1")
    assert not is_loopback("fe80::1%eth0") and not is_loopback("")
