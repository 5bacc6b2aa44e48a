"""`podtrail run` as a user runs it: with no configuration it prints alerts among the events (the
shipped rules are on by default); configured rule paths load too, a rule the agent cannot use is
reported with its reason and the agent runs on; an unreadable rule path is a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from conftest import require_ebpf, require_runc
from containers import run_container

from podtrail.model.event import validate

PODTRAIL = [sys.executable, "-m", "podtrail"]
COMMUNITY = Path(__file__).parent / "community"


def _run(args: list[str], until: str, act: object, seconds: float = 60) -> tuple[list[dict], str]:
    """Run the agent, act until a line containing ``until`` is printed, stop it with SIGINT."""
    with tempfile.TemporaryFile("w+") as errf:
        p = subprocess.Popen([*PODTRAIL, "run", "--duration", str(seconds), "--no-metrics", *args],
                             stdout=subprocess.PIPE, stderr=errf, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout or []), daemon=True)  # the only reader
        reader.start()
        deadline = time.monotonic() + seconds - 5
        while not lines and time.monotonic() < deadline and p.poll() is None:  # started: its first event
            subprocess.run(["true"])  # an exec to report (a quiet host may have none of its own)
            time.sleep(0.2)  # (loading the sensors can take long on a busy machine)
        while time.monotonic() < deadline and p.poll() is None:
            act()  # type: ignore[operator]
            time.sleep(0.5)
            if any(until in ln for ln in list(lines)):
                break
        if lines:  # started, so its signal handler is in place; else --duration ends it
            p.send_signal(2)
        p.wait(seconds + 30)
        reader.join(10)
        errf.seek(0)
        err = errf.read()
    assert p.returncode == 0, err
    return [json.loads(line) for line in lines], err


def test_run_without_config_prints_alerts_among_events() -> None:
    require_ebpf()
    require_runc()
    c = run_container("kubelet-cgroupfs-besteffort")
    try:
        events, err = _run([], "Mount executed in a container",
                           lambda: c.exec("mount", "-t", "tmpfs", "none", "/mnt", check=False))
    finally:
        c.destroy()
    assert not [validate(e) for e in events if validate(e)]
    alerts = [e for e in events if e["event_type"] == "alert" and e.get("container_id") == c.id]
    assert alerts, err
    a = alerts[0]
    assert a["detection_kind"] == "signature" and a["rule_level"] and a["severity"] >= 2
    position = {e["event_id"]: i for i, e in enumerate(events)}
    trigger = events[position[a["trigger_ids"][0]]]
    assert trigger["action"] == "exec" and "mount" in trigger["cmdline"] and position[trigger["event_id"]] < position[a["event_id"]]
    assert a["pod_uid"] == c.pod_uid and a["cmdline"] == trigger["cmdline"]


def test_configured_rule_paths_load_and_unusable_rules_are_reported(tmp_path: Path) -> None:
    require_ebpf()
    cfg = tmp_path / "podtrail.yaml"
    cfg.write_text(f"detection:\n  rule_paths: [{COMMUNITY}]\n")
    events, err = _run(["--config", str(cfg)], '"event_type"', lambda: None, seconds=40)
    assert events, err
    warnings = [ln for ln in err.splitlines() if "not used:" in ln]
    assert len(warnings) == 5, err
    assert any("OriginalFileName" in w and "PE header" in w for w in warnings)


def test_unreadable_rule_path_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "podtrail.yaml"
    cfg.write_text("detection:\n  rule_paths: [/nonexistent/rules.yml]\n")
    r = subprocess.run([*PODTRAIL, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "detection.rule_paths" in r.stderr and "/nonexistent/rules.yml" in r.stderr
