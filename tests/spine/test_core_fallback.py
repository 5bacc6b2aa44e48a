"""Where the CO-RE sensor cannot load, `--source auto` runs auditd and says why (here: the
compiled object is missing, as on an install that skipped `make bpf`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_core

from podtrail.config import Config


def test_auto_falls_back_to_auditd_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_core()
    import podtrail.bpf.objects as objects
    from podtrail.agent import build_agent

    monkeypatch.setattr(objects, "OBJ_DIR", tmp_path)  # no objects there
    cfg = Config()
    cfg.sensor.source = "auto"
    cfg.sensor.sockets = cfg.sensor.files = False
    cfg.metrics.enabled = False
    agent = build_agent(cfg, sinks=[])
    assert agent.source_name == "auditd"
    assert "process.bpf.o is missing" in agent.source_reason and "make bpf" in agent.source_reason
    assert agent.table is not None and agent.table.proc_fallback  # auditd: /proc is its only source


def test_doctor_says_why_when_the_object_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import podtrail.bpf.objects as objects
    from podtrail.doctor import check_objects

    monkeypatch.setattr(objects, "OBJ_DIR", tmp_path)
    c = check_objects()
    assert not c.ok and "make bpf" in c.detail and c.needed_by == "ebpf"
