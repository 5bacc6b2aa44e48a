"""Parts behind issue 16, each against the real thing it talks to: the webhook's batching (a
local HTTP server stands in for a SOAR endpoint: any HTTP server is one), a failing syslog
output (a closed loopback port, then a real listener), the agent lock (a real flock in another
process), UNIX sockets (live, stale, foreign), the metrics endpoint's paths, library log levels,
and `podtrail extension` with no agent (osqueryd's side is the protocol-faithful FakeOsqueryd
built from osquery's own Thrift definitions; no osqueryd exists here)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from loopback import free_port, listen, stop

sys.path[:0] = [str(Path(__file__).parents[1] / "osquery"), str(Path(__file__).parents[1] / "forwarder")]
from fake_manager import FakeOsqueryd  # noqa: E402
from test_webhook_ecs import Endpoint, _ev  # noqa: E402

from podtrail.lock import AgentLock, AgentRunning  # noqa: E402
from podtrail.outputs.syslog import SyslogConfig, SyslogSink  # noqa: E402
from podtrail.outputs.webhook import WebhookConfig, WebhookSink  # noqa: E402
from podtrail.tables.unix_server import UnixAcceptor  # noqa: E402

PODTRAIL = [sys.executable, "-m", "podtrail"]



def test_webhook_lingers_for_fuller_batches_and_splits_by_size(tmp_path: Path) -> None:
    """Events arriving a few ms apart go out in a few POSTs, not one each."""
    ep = Endpoint()
    sink = WebhookSink(WebhookConfig(url=ep.url, linger_seconds=0.5, batch_max=500), str(tmp_path))
    evs = [_ev(i) for i in range(60)]
    for e in evs:
        sink.submit(e)
        time.sleep(0.005)
    assert sink.flush(30)
    sink.close()
    assert sum(len(b) for b in ep.batches) == 60
    assert len(ep.batches) <= 6, [len(b) for b in ep.batches]
    small = WebhookSink(WebhookConfig(url=ep.url, batch_max=3, batch_max_bytes=25), str(tmp_path / "s"))
    small.close()
    assert small.batches([b"x" * 10] * 5) == [[b"x" * 10] * 2, [b"x" * 10] * 2, [b"x" * 10]]
    assert small.batches([b"y" * 40, b"z"]) == [[b"y" * 40], [b"z"]]  # oversized goes alone


def test_failing_output_warns_at_once_then_periodically_and_recovers(tmp_path: Path, caplog: Any) -> None:
    port = free_port()
    sink = SyslogSink(SyslogConfig(port=port, protocol="tcp"), str(tmp_path))
    health: list[dict[str, Any]] = []
    sink.on_health = health.append
    sink.warn_every_s = 1.0
    caplog.set_level(logging.WARNING, logger="podtrail.outputs.syslog")
    sink.submit(_ev(1))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(caplog.records) < 2:
        time.sleep(0.1)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0].startswith(f"output syslog-tcp-127.0.0.1-{port}: cannot deliver (") and "Connection refused" in msgs[0]
    assert f"keeping messages in the spool {tmp_path}/syslog-tcp-127.0.0.1-{port}" in msgs[0]
    assert "still failing after" in msgs[1]
    assert health and health[0]["event_type"] == "agent" and health[0]["message"] == msgs[0]
    assert sink.failing_for() > 0.5
    # the receiver keeps the connection open (one that closes with unread data resets it:
    # nothing was delivered, and the sink sends it again)
    lsock = listen(port, hold=30)
    try:
        assert sink.flush(40)
        assert sink.failing_for() == 0.0
        assert any("delivering again" in r.getMessage() for r in caplog.records)
    finally:
        sink.close()
        stop(lsock)


def test_lock_names_the_holder_and_never_removes_anothers(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "agent.lock")
    a = AgentLock(path)
    a.acquire()
    r = subprocess.run([sys.executable, "-c", f"from podtrail.lock import AgentLock; AgentLock({path!r}).acquire()"],
                       capture_output=True, text=True)
    assert f"AgentRunning: another podtrail agent is running on this node (pid {os.getpid()}, lock {path})" in r.stderr
    a.release()
    assert not os.path.exists(path)
    b = AgentLock(path)
    b.acquire()  # free again
    with pytest.raises(AgentRunning):
        AgentLock(path).acquire()  # a second open file description conflicts even in one process
    os.unlink(path)
    c = AgentLock(path)
    c.acquire()  # someone replaced the file: b must not remove c's
    b.release()
    assert os.path.exists(path)
    c.release()


def test_unix_socket_never_takes_over_a_live_or_foreign_path(tmp_path: Path) -> None:
    path = str(tmp_path / "api.sock")
    first = UnixAcceptor(path, lambda c: c.close(), "t1")
    first.start()
    second = UnixAcceptor(path, lambda c: c.close(), "t2")
    with pytest.raises(OSError, match="in use by another process"):
        second.start()
    first.stop()
    assert not os.path.exists(path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # bound, never listening: what a killed server leaves
    stale.close()
    second.start()  # a stale socket is replaced
    os.unlink(path)
    third = UnixAcceptor(path, lambda c: c.close(), "t3")
    third.start()  # another server now owns the path
    second.stop()
    assert os.path.exists(path)  # second did not remove third's socket
    third.stop()
    Path(path).write_text("not a socket")
    with pytest.raises(OSError, match="is not a socket"):
        UnixAcceptor(path, lambda c: c.close(), "t4").start()
    assert Path(path).read_text() == "not a socket"


def test_metrics_only_on_metrics_path() -> None:
    from podtrail.metrics import metrics_server

    srv = metrics_server("127.0.0.1", 0)
    srv.start("t")
    port = srv.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200 and b"podtrail_events_total" in r.read()
        for path in ("/", "/healthz", "/readyz", "/anything"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}")
            assert e.value.code == 404
    finally:
        srv.stop()


def test_verbose_keeps_library_debug_out() -> None:
    from podtrail.cli import main

    assert main(["-v", "fields", "--format", "json"]) == 0
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("thrift").getEffectiveLevel() == logging.CRITICAL
    assert main(["fields", "--format", "json"]) == 0
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.CRITICAL  # no library ERROR spam without -v


def test_extension_without_agent_answers_empty_with_status(tmp_path: Path) -> None:
    mgr = FakeOsqueryd(str(tmp_path / "osquery.em"))
    api = str(tmp_path / "api.sock")
    p = subprocess.Popen([*PODTRAIL, "extension", "--socket", mgr.path, "--api-socket", api],
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not mgr.handler.registered and time.monotonic() < deadline:
            time.sleep(0.1)
        (uuid,) = mgr.handler.registered
        while not os.path.exists(f"{mgr.path}.{uuid}") and time.monotonic() < deadline:
            time.sleep(0.05)  # the extension serves right after osqueryd registered it
        for _ in range(3):
            resp = mgr.generate(uuid, "containers")
            assert resp.status.code == 0 and resp.response == []
            assert resp.status.message == f"no podtrail agent at {api}: start `podtrail run`"
    finally:
        p.terminate()
        err = p.communicate(timeout=30)[1]
        mgr.stop()
    assert err.splitlines() == [f"podtrail: WARNING podtrail.extension: no podtrail daemon at {api} "
                                "(No such file or directory); start `podtrail run`; answering osquery with empty results until it runs"]


def test_doctor_checks_outputs_and_spool(tmp_path: Path) -> None:
    """A syslog receiver that is down and a spool_dir that is a file: both FAIL, exit 1; a
    listening receiver and a writable spool: ok."""
    down, up = free_port(), free_port()
    (tmp_path / "afile").write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"spool_dir: {tmp_path}/spool\noutputs:\n  - {{type: syslog, port: {down}}}\n  - {{type: syslog, port: {up}}}\n")
    lsock = listen(up)
    try:
        r = subprocess.run([*PODTRAIL, "doctor", "-c", str(cfg), "--json"], capture_output=True, text=True, timeout=300)
    finally:
        stop(lsock)
    import json

    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.returncode == 1 and not checks["outputs[0] syslog"]["ok"]
    assert checks["outputs[0] syslog"]["detail"].startswith(f"cannot connect to 127.0.0.1:{down}: ")
    assert checks["outputs[1] syslog"] == {"name": "outputs[1] syslog", "ok": True, "detail": f"connected to 127.0.0.1:{up}",
                                           "fix": "", "needed_by": ""}
    assert checks["spool"]["ok"] and checks["spool"]["detail"].startswith(f"{tmp_path}/spool: writable, ")
    assert not (tmp_path / "spool").exists()  # checked, not created
    cfg.write_text(f"spool_dir: {tmp_path}/afile\noutputs:\n  - {{type: webhook, url: 'http://127.0.0.1:{down}/x'}}\n")
    r = subprocess.run([*PODTRAIL, "doctor", "-c", str(cfg)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and f"[FAIL] config          spool_dir: {tmp_path}/afile is not a directory" in r.stdout


def test_readme_points_at_the_real_health_and_metrics_addresses() -> None:
    from podtrail.config import MetricsConfig

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    m = MetricsConfig()
    assert f"http://127.0.0.1:{m.health_port}/healthz" in readme and f"http://127.0.0.1:{m.port}/metrics" in readme
    assert "sudo make" not in readme and readme.split("```sh\n", 1)[1].startswith("make run > events.jsonl")


def test_shipped_configs_pass_the_start_up_checks() -> None:
    """The new range/output checks must not reject the configurations podtrail ships."""
    import yaml

    from podtrail import config
    from podtrail.agent import check_outputs

    root = Path(__file__).parents[2]
    cfgs = [config.load(root / "deploy/systemd/podtrail.yaml")]
    cm = yaml.safe_load((root / "deploy/kubernetes/base/configmap.yaml").read_text())
    cfgs += [config.from_dict(config.Config, yaml.safe_load(text)) for text in cm["data"].values()]
    for cfg in [config.Config(), *cfgs]:
        config.check(cfg)
        check_outputs(cfg)
