"""The osquery extension over real Thrift (podtrail's accelerated bindings) against a
protocol-faithful extension manager built from the `osquery` package's definitions
(tests/osquery/fake_manager.py: osqueryd is not installable here), with rows from real eBPF
events of real runc containers; and re-registration when that manager restarts."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from agent_harness import CaptureSink
from conftest import require_ebpf, require_runc
from containers import run_container
from fake_manager import FakeOsqueryd
from osquery.extensions import Extension as PyExtension

from podtrail.agent import build_agent
from podtrail.config import Config
from podtrail.tables.buffer import EventBuffers
from podtrail.tables.osquery_ext import OsqueryExtension
from podtrail.tables.schema import HIDDEN, INDEX, TABLES
from podtrail.tables.service import TableService
from podtrail.tables.thrift_server import client_protocol


def _eq(name: str, value: str, affinity: str = "TEXT") -> dict[str, Any]:
    return {"name": name, "list": [{"op": 2, "expr": value}], "affinity": affinity}


def test_registration_columns_and_generate_with_real_container_events(tmp_path: Path) -> None:
    require_ebpf()
    require_runc()
    buffers = EventBuffers(events_max=1000)
    cfg = Config()
    cfg.metrics.enabled = False
    cfg.sensor.sockets = cfg.sensor.files = False
    capture = CaptureSink()
    agent = build_agent(cfg, sinks=[capture, buffers])
    agent.start()
    osq = FakeOsqueryd(str(tmp_path / "osquery.em"))
    svc = TableService(buffers)
    ext = OsqueryExtension(osq.path, TABLES, svc.select, interval_s=0.2)
    c = run_container("containerd-systemd")
    try:
        ext.start()
        (info, registry) = osq.handler.registered[ext.uuid]
        assert info.name == "podtrail" and set(registry["table"]) == set(TABLES)
        cols = {r["name"]: r for r in registry["table"]["container_process_events"]}
        assert int(cols["eid"]["op"]) & HIDDEN and int(cols["pid"]["op"]) & INDEX
        assert cols["time"]["type"] == "BIGINT" and cols["container_id"]["type"] == "TEXT"
        assert cols["parent"]["type"] == "INTEGER" and "pod_uid" in cols

        c.exec("/bin/busybox", "true", "osq-marker")
        hit = capture.wait_for(lambda e: e["action"] == "exec" and "osq-marker" in e.get("cmdline", "") and e.get("comm") != "runc")
        assert hit
        pid = str(hit[0]["pid"])
        resp = osq.generate(ext.uuid, "container_process_events", [_eq("pid", pid, "INTEGER")])
        assert resp.status.code == 0
        rows = resp.response
        assert rows and all(r["pid"] == pid for r in rows)
        exec_row = next(r for r in rows if r["action"] == "exec")
        assert exec_row["container_id"] == c.id and exec_row["pod_uid"] == c.pod_uid
        assert exec_row["cmdline"] == "/bin/busybox true osq-marker" and exec_row["json_cmdline"].startswith("[")
        # IN (...) arrives as several EQUALS on one column: any of them
        both = osq.generate(ext.uuid, "container_process_events", [
            {"name": "container_id", "list": [{"op": 2, "expr": c.id}, {"op": 2, "expr": "0" * 64}], "affinity": "TEXT"}])
        assert both.response and all(r["container_id"] == c.id for r in both.response)
        # time ranges are honoured
        future = osq.generate(ext.uuid, "container_process_events", [
            {"name": "time", "list": [{"op": 4, "expr": str(int(time.time()) + 3600)}], "affinity": "BIGINT"}])
        assert future.response == []
        assert osq.call(ext.uuid, "no_such_table", {"action": "generate"}).status.code != 0
    finally:
        ext.stop()
        osq.stop()
        agent.stop()
        c.destroy()


def test_ping_answered_during_slow_generate_and_exit_when_osqueryd_goes(tmp_path: Path) -> None:
    osq = FakeOsqueryd(str(tmp_path / "osquery.em"))
    release = threading.Event()

    def slow(table: str, constraints: Any) -> tuple[int, list[dict[str, str]]]:
        release.wait(30)
        return 0, []

    ext = OsqueryExtension(osq.path, TABLES, slow, interval_s=0.2)
    ext.start()
    try:
        t = threading.Thread(target=lambda: osq.generate(ext.uuid, "containers"), daemon=True)
        t.start()
        time.sleep(0.2)
        assert t.is_alive(), "the slow generate should still be running"
        assert osq.ping_extension(ext.uuid).code == 0
        assert t.is_alive(), "the ping was answered while generate was still running"
        release.set()
        t.join(10)
        osq.stop()  # osqueryd goes away: the extension notices and stops
        assert ext.stopped.wait(10)
    finally:
        release.set()
        ext.stop()


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _answers(osq: FakeOsqueryd, table: str = "containers") -> bool:
    """Does an extension registered with this manager answer a generate?"""
    for uuid in list(osq.handler.registered):
        try:
            if osq.generate(uuid, table).status.code == 0:
                return True
        except Exception:  # noqa: BLE001 - not serving (yet)
            pass
    return False


def _rows(table: str, constraints: Any) -> tuple[int, list[dict[str, str]]]:
    rows = [{"container_id": "c" * 64}]
    return len(rows), rows


def test_keeps_serving_across_osqueryd_restarts(tmp_path: Path) -> None:
    """osqueryd stops, is away for a while, comes back as a new process (new uuids), and also
    restarts within one watch interval (it answers, but has never heard of us): each time the
    tables answer again within 10 s, from the same extension object, on a new uuid."""
    path = str(tmp_path / "osquery.em")
    ext = OsqueryExtension(path, TABLES, _rows, interval_s=0.5, reregister=True)
    ext.start_when_ready()  # osqueryd is not there yet
    osq = FakeOsqueryd(path, first_uuid=1000)
    try:
        assert _wait(lambda: _answers(osq), 10)
        first = ext.uuid
        assert first == 1000
        osq.stop()
        assert _wait(lambda: not ext.registered.is_set(), 10), "the gone manager is noticed"
        time.sleep(1.0)  # away for two watch intervals
        osq = FakeOsqueryd(path, first_uuid=2000)
        assert _wait(lambda: _answers(osq), 10), "tables answer again after osqueryd came back"
        assert ext.uuid == 2000 and not Path(f"{path}.{first}").exists()
        osq.stop()
        osq = FakeOsqueryd(path, first_uuid=3000)  # back at once
        assert _wait(lambda: _answers(osq), 10), "tables answer again after a quick restart"
        assert ext.uuid == 3000 and ext.registrations == 3 and not ext.stopped.is_set()
    finally:
        ext.stop()
        osq.stop()


def test_a_missed_check_does_not_lock_the_extension_out(tmp_path: Path) -> None:
    """osqueryd refuses a second extension named "podtrail" while the first is registered.
    When one check of the manager fails while it is still up, the extension deregisters its
    old uuid before registering again, so it is not refused; a second podtrail is."""
    path = str(tmp_path / "osquery.em")
    osq = FakeOsqueryd(path, first_uuid=1000)
    ext = OsqueryExtension(path, TABLES, _rows, interval_s=0.3, reregister=True)
    other = OsqueryExtension(path, TABLES, _rows)
    try:
        ext.start()
        with pytest.raises(RuntimeError, match="Duplicate"):
            other.register()
        osq.handler.fail_next_extensions = True
        assert _wait(lambda: ext.uuid is not None and ext.uuid != 1000 and _answers(osq), 10), ext.uuid
        assert list(osq.handler.registered) == [ext.uuid] and ext.registrations == 2
        ext.stop()
        assert osq.handler.registered == {}, "a stopping extension deregisters"
    finally:
        ext.stop()
        osq.stop()


def test_shutdown_from_osqueryd_keeps_a_reregistering_extension_alive(tmp_path: Path) -> None:
    path = str(tmp_path / "osquery.em")
    osq = FakeOsqueryd(path, first_uuid=1000)
    ext = OsqueryExtension(path, TABLES, _rows, interval_s=0.3, reregister=True)
    try:
        ext.start()
        uuid = ext.uuid
        assert uuid is not None
        trans, proto = client_protocol(f"{path}.{uuid}", accelerated=False)
        try:
            PyExtension.Client(proto).shutdown()  # what osqueryd sends its extensions on exit
        finally:
            trans.close()
        osq.stop()
        osq = FakeOsqueryd(path, first_uuid=4000)
        assert _wait(lambda: _answers(osq), 10) and ext.uuid == 4000 and not ext.stopped.is_set()
    finally:
        ext.stop()
        osq.stop()


def test_the_daemon_reregisters_when_osqueryd_restarts(tmp_path: Path) -> None:
    """`podtrail run --osquery-socket` (the agent as built by build_agent, real eBPF): the
    tables answer, osqueryd goes away and comes back, they answer again within 10 s."""
    require_ebpf()
    path = str(tmp_path / "osquery.em")
    cfg = Config()
    cfg.metrics.enabled = False
    cfg.sensor.sockets = cfg.sensor.files = False
    cfg.osquery.socket = path
    cfg.osquery.api_socket = ""
    agent = build_agent(cfg, sinks=[CaptureSink()])
    osq = FakeOsqueryd(path, first_uuid=1000)
    agent.start()
    try:
        assert _wait(lambda: _answers(osq, "container_process_events"), 20)
        osq.stop()
        time.sleep(4)  # longer than the agent's watch interval: it notices the manager is gone
        osq = FakeOsqueryd(path, first_uuid=7000)
        t0 = time.monotonic()
        assert _wait(lambda: _answers(osq, "container_process_events"), 10)
        assert list(osq.handler.registered) == [7000], f"answered after {time.monotonic() - t0:.1f}s"
    finally:
        osq.stop()
        agent.stop()
