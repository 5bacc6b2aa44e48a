"""Alerts are events: built from their trigger, valid against the declaration, and rendered by
every formatter with the rule's title and a severity that follows the rule level."""

from __future__ import annotations

import pytest

from podtrail.detect.alert import LEVEL_SEVERITY, new_alert
from podtrail.formatters.cef import format_cef
from podtrail.formatters.ecs_json import to_ecs
from podtrail.formatters.leef import format_leef
from podtrail.model.event import finalize, new_event, validate
from podtrail.model.fields import Kind
from podtrail.tables.schema import TABLES

CID = "c" * 64


def _trigger() -> dict:
    return finalize(new_event(Kind.PROCESS, "exec", pid=42, ppid=7, comm="sh", path="/bin/sh", cmdline="sh -i",
                              argv=["sh", "-i"], stdin="socket", container_id=CID, pod_name="web-1",
                              namespace="shop", ancestors=[{"pid": 1, "path": "/usr/sbin/nginx", "cmdline": "nginx"}],
                              source="ebpf", result=0))


def _alert(level: str = "critical", **kw: object) -> dict:
    trig = _trigger()
    args = dict(rule_id="2b4ad916-3023-5cc8-874b-886205347080", title="Shell | reading a socket", level=level,
                kind="signature", tactics=["execution"], techniques=["T1059.004"], trigger_ids=[trig["event_id"]])
    args.update(kw)
    return finalize(new_alert(trig, **args))  # type: ignore[arg-type]


def test_alert_copies_the_trigger_context_and_validates() -> None:
    trig = _trigger()
    al = finalize(new_alert(trig, rule_id="r1", title="T", level="high", kind="correlation", tactics=[],
                            techniques=[], trigger_ids=["a", trig["event_id"]], findings={"count": 2}))
    assert validate(al) == []
    assert al["event_type"] == "alert" and al["action"] == "correlation" and al["detection_kind"] == "correlation"
    for k in ("pid", "ppid", "comm", "path", "cmdline", "argv", "stdin", "container_id", "pod_name", "namespace", "ancestors"):
        assert al[k] == trig[k], k
    assert al["time_ns"] == trig["time_ns"] and al["event_id"] != trig["event_id"]
    assert al["trigger_ids"] == ["a", trig["event_id"]] and al["findings"] == {"count": 2}
    assert "result" not in al and "outcome" not in al  # the trigger's syscall result is not the alert's


def test_alert_from_a_socket_event_takes_no_socket_fields() -> None:
    trig = finalize(new_event(Kind.SOCKET, "connect", pid=5, comm="nc", remote_address="10.0.0.1", remote_port=4444,
                              direction="outbound", container_id=CID))
    al = new_alert(trig, rule_id="r", title="t", level="low", kind="signature", tactics=[], techniques=[],
                   trigger_ids=[trig["event_id"]])
    assert validate(finalize(al)) == [] and "remote_port" not in al and al["comm"] == "nc"


@pytest.mark.parametrize("level", sorted(LEVEL_SEVERITY))
def test_severity_follows_level_in_every_format(level: str) -> None:
    al = _alert(level)
    sev = LEVEL_SEVERITY[level]
    cef = format_cef(al)
    assert cef.split("|")[4] == "alert:signature"
    assert cef.startswith("CEF:0|podtrail|podtrail|") and f"|{sev}|" in cef
    assert "|Shell \\| reading a socket|" in cef  # the rule title is the name, escaped
    assert f"\tsev={sev}\t" in format_leef(al)
    ecs = to_ecs(al)
    assert ecs["event"]["severity"] == sev and ecs["event"]["kind"] == "alert"
    assert ecs["event"]["category"] == "intrusion_detection" and ecs["rule"]["name"] == "Shell | reading a socket"
    assert ecs["threat"]["technique"]["id"] == ["T1059.004"]


def test_bad_level_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        _alert("severe")
    with pytest.raises(ValueError, match="kind"):
        _alert(kind="anomaly")


def test_container_alerts_table() -> None:
    t = TABLES["container_alerts"]
    names = {c.name for c in t.columns}
    assert {"rule_id", "rule_title", "rule_level", "detection_kind", "trigger_ids", "findings", "container_id",
            "pod_name", "cmdline", "ancestors"} <= names
    assert "remote_port" not in names and "target_path" not in names


def test_container_alerts_table_serves_buffered_alerts() -> None:
    """Alerts reach the osquery table through the same buffers and row rendering as other events."""
    from podtrail.tables.buffer import EventBuffers
    from podtrail.tables.service import TableService

    buffers = EventBuffers()
    trig = _trigger()
    al = _alert()
    buffers.submit(trig)
    buffers.submit(al)
    rows = TableService(buffers).generate("container_alerts")
    assert len(rows) == 1
    row = rows[0]
    assert row["rule_title"] == "Shell | reading a socket" and row["rule_level"] == "critical"
    assert row["detection_kind"] == "signature" and row["container_id"] == CID and row["stdin_type"] == "socket"
    assert row["techniques"] == '["T1059.004"]' and row["trigger_ids"] == f'["{al["trigger_ids"][0]}"]'
    assert TableService(buffers).generate("container_process_events")[0]["eid"] == trig["event_id"]
