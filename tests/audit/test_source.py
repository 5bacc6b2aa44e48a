"""The auditd source end to end: a real auditd with the shipped rules, commands in real runc
containers and on the host, events with container identity through the same agent stages —
by following audit.log, and as a real auditd plugin (auditd starts podtrail itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from agent_harness import CaptureSink
from conftest import require_runc
from containers import run_container
from real_auditd import real_auditd

from podtrail.agent import build_agent
from podtrail.config import Config
from podtrail.model.event import validate

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "auditd" / "podtrail.rules"


def _rules() -> list[list[str]]:
    """The shipped rules; watches of paths this machine lacks are skipped (as `auditctl -i -R` does)."""
    rules = [line.split() for line in RULES.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [r for r in rules if r[0] != "-w" or os.path.exists(os.path.dirname(r[1]))]


def test_log_source_with_container_context(tmp_path: Path) -> None:
    require_runc()
    c = run_container("kubelet-cgroupfs-besteffort")
    try:
        with real_auditd(tmp_path / "ad", _rules()) as log:
            cfg = Config()
            cfg.metrics.enabled = False
            cfg.sensor.source = "auditd"
            cfg.audit.input, cfg.audit.path = "log", str(log)
            cfg.osquery.api_socket = ""
            sink = CaptureSink()
            agent = build_agent(cfg, sinks=[sink])
            agent.start()
            try:
                time.sleep(0.5)
                c.exec("sh", "-c", "/bin/busybox true audit-container-marker; sleep 1")
                subprocess.run(["/bin/busybox", "true", "audit-host-marker"])
                subprocess.run(["/bin/busybox", "cat", "/etc/shadow"], stdout=subprocess.DEVNULL)
                hit = sink.wait_for(lambda e: (e.get("argv") or [""])[0] == "/bin/busybox" and "audit-container-marker" in e.get("cmdline", ""), timeout=15)
                host = sink.wait_for(lambda e: "audit-host-marker" in e.get("cmdline", ""), timeout=15)
                shadow = sink.wait_for(lambda e: e["event_type"] == "file" and e.get("target_path") == "/etc/shadow", timeout=15)
            finally:
                agent.stop()
        assert hit, "container exec not seen through audit.log"
        ev = hit[0]
        assert ev["source"] == "auditd" and ev["argv"] == ["/bin/busybox", "true", "audit-container-marker"]
        assert ev.get("container_id") == c.id and ev.get("pod_uid") == c.pod_uid, ev
        assert ev["container_id_method"] == "proc_cgroup" and validate(ev) == []
        assert host and "container_id" not in host[0] and host[0]["parent_path"]
        assert shadow and shadow[0]["action"] == "read" and shadow[0]["sensitive"] == "shadow" and validate(shadow[0]) == []
    finally:
        c.destroy()


def test_as_a_real_auditd_plugin(tmp_path: Path) -> None:
    """auditd starts podtrail (plugins.d conf like the shipped one) and writes records to its stdin."""
    out = tmp_path / "events.jsonl"
    wrapper = tmp_path / "podtrail-audit-plugin"
    # another agent on this machine may hold the default API socket and lock
    (tmp_path / "podtrail.yaml").write_text(f'osquery:\n  api_socket: ""\nlock_file: {tmp_path}/agent.lock\nspool_dir: {tmp_path}/spool\n')
    wrapper.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/plugin.pid\ncd {ROOT}\nexec {sys.executable} -m podtrail run -c {tmp_path}/podtrail.yaml "
                       "--source auditd --audit-input plugin "
                       f"--no-metrics --no-sockets --no-files > {out} 2>{tmp_path}/plugin.err\n")
    wrapper.chmod(0o755)
    plugins = tmp_path / "plugins.d"
    plugins.mkdir()
    shipped = (ROOT / "deploy/auditd/plugins.d/podtrail.conf").read_text()
    (plugins / "podtrail.conf").write_text(shipped.replace("/usr/local/bin/podtrail-audit-plugin", str(wrapper)))
    os.chmod(plugins / "podtrail.conf", 0o640)
    with real_auditd(tmp_path / "ad", _rules(), plugin_dir=plugins):
        deadline = time.monotonic() + 30
        seen = False
        while time.monotonic() < deadline and not seen:
            subprocess.run(["/bin/busybox", "true", "audit-plugin-marker"])
            time.sleep(0.5)
            seen = out.exists() and "audit-plugin-marker" in out.read_text()
    assert seen, (tmp_path / "plugin.err").read_text() if (tmp_path / "plugin.err").exists() else "plugin never started"
    # auditd stopped, so it closed the plugin's stdin: podtrail must have exited by itself
    pid = int((tmp_path / "plugin.pid").read_text())
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and "podtrail" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
        assert time.monotonic() < deadline, "the plugin outlived auditd"
        time.sleep(0.2)
    evs = [json.loads(line) for line in out.read_text().splitlines() if "audit-plugin-marker" in line]
    assert evs and evs[0]["source"] == "auditd" and validate(evs[0]) == []


def test_source_auto_falls_back_to_auditd_and_says_why(tmp_path: Path) -> None:
    """A real load failure (a ring buffer size the kernel refuses to create) makes `auto` choose auditd."""
    from conftest import require_ebpf

    require_ebpf()
    cfg = Config()
    cfg.metrics.enabled = False
    cfg.osquery.api_socket = ""
    cfg.sensor.source = "auto"
    cfg.sensor.ringbuf_pages = 1 << 20  # 4 GiB: the kernel will not make a BPF ring buffer that large
    cfg.audit.input, cfg.audit.path = "log", str(tmp_path / "audit.log")
    agent = build_agent(cfg, sinks=[CaptureSink()])
    assert agent.source_name == "auditd" and agent.source_reason.startswith("auto: eBPF could not load")
    cfg.sensor.ringbuf_pages = 1024
    agent = build_agent(cfg, sinks=[CaptureSink()])
    assert agent.source_name == "ebpf" and agent.source_reason == "auto: eBPF programs loaded"
    for s in agent.sources:
        s.close()  # type: ignore[attr-defined]


def test_follow_survives_rotation_and_truncation(tmp_path: Path) -> None:
    import threading

    from podtrail.audit.source import follow

    log = tmp_path / "audit.log"
    log.write_text("old line\n")
    stop = threading.Event()
    got: list[str] = []
    t = threading.Thread(target=lambda: got.extend(follow(str(log), stop)), daemon=True)
    t.start()
    time.sleep(0.3)
    with open(log, "a") as f:
        f.write("a1\na2\x1dENRICHED=x\n")
    time.sleep(0.3)
    os.rename(log, tmp_path / "audit.log.1")  # rotation: a new file appears
    log.write_text("b1\n")
    time.sleep(0.5)
    log.write_text("")  # truncation
    time.sleep(0.3)
    with open(log, "a") as f:
        f.write("c1\n")
    time.sleep(0.5)
    stop.set()
    t.join(2)
    assert got == ["a1", "a2\x1dENRICHED=x", "b1", "c1"]


def test_af_unix_dispatcher_socket_input(tmp_path: Path) -> None:
    """auditd's built-in af_unix plugin writes records to a socket podtrail reads."""
    sock = tmp_path / "audispd_events"
    plugins = tmp_path / "plugins.d"
    plugins.mkdir()
    conf = (ROOT / "deploy/auditd/plugins.d/af_unix-podtrail.conf").read_text().replace("/var/run/audispd_events", str(sock))
    (plugins / "af_unix.conf").write_text(conf)
    os.chmod(plugins / "af_unix.conf", 0o640)
    with real_auditd(tmp_path / "ad", _rules(), plugin_dir=plugins):
        cfg = Config()
        cfg.metrics.enabled = False
        cfg.osquery.api_socket = ""
        cfg.sensor.source = "auditd"
        cfg.audit.input, cfg.audit.socket_path = "socket", str(sock)
        sink = CaptureSink()
        agent = build_agent(cfg, sinks=[sink])
        agent.start()
        try:
            deadline = time.monotonic() + 20
            hit: list = []
            while time.monotonic() < deadline and not hit:
                subprocess.run(["/bin/busybox", "true", "audit-socket-marker"])
                hit = sink.wait_for(lambda e: "audit-socket-marker" in e.get("cmdline", ""), timeout=0.5)
        finally:
            agent.stop()
    assert hit and hit[0]["source"] == "auditd" and validate(hit[0]) == []


def test_an_exec_without_its_execve_record_goes_out_and_is_counted() -> None:
    """auditd drops single records when its dispatcher queue overflows: the exec still goes
    out (it happened), without arguments, and the loss is counted."""
    from podtrail.audit.assemble import assemble_lines
    from podtrail.audit.source import INCOMPLETE, AuditSource

    lines = ['type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=59 success=yes exit=0 pid=5 comm="x" exe="/bin/x"',
             "type=PROCTITLE msg=audit(1.000:1): proctitle=78",
             'type=SYSCALL msg=audit(1.000:2): arch=c000003e syscall=59 success=yes exit=0 pid=6 comm="y" exe="/bin/y"',
             'type=EXECVE msg=audit(1.000:2): argc=1 a0="y"', "type=PROCTITLE msg=audit(1.000:2): proctitle=79"]
    before = INCOMPLETE._value.get()
    got: list = []
    AuditSource._emit_all(list(assemble_lines(lines)), got.append)
    assert [(e["pid"], e["argv"]) for e in got] == [(5, []), (6, ["y"])]
    assert INCOMPLETE._value.get() == before + 1
