"""Baseline pieces on their own: normalisation, workload unit, learn/monitor, versions,
persistence, config and the stage's alerts (behaviour and hybrid). Events are built in the
model's shape; the e2e test drives the same code with the real sensor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.cli import main
from podtrail.config import BaselineConfig, Config, ConfigError, from_dict
from podtrail.detect.alert import new_alert
from podtrail.detect.baseline.codec import FORMAT, ProfileFormatError, from_doc, to_doc
from podtrail.detect.baseline.engine import Baselines
from podtrail.detect.baseline.model import WorkloadKey
from podtrail.detect.baseline.normalize import items_of, matches, normalize_path
from podtrail.detect.baseline.stage import BaselineStage
from podtrail.detect.baseline.store import ProfileStore
from podtrail.detect.baseline.unit import workload_of
from podtrail.model.event import new_event, validate
from podtrail.model.fields import Kind

WEB = {"cluster_name": "prod", "namespace": "shop", "workload_kind": "Deployment", "workload_name": "web",
       "pod_name": "web-7d9f8c6b5-x2x4z", "container_id": "c" * 64, "container_name": "app",
       "image_digest": "sha256:" + "a" * 64}


def exe(path: str, parent: str = "/bin/sh", **kw: Any) -> dict[str, Any]:
    return new_event(Kind.PROCESS, "exec", path=path, parent_path=parent, pid=10, source="ebpf", **{**WEB, **kw})


def conn(addr: str, port: int, **kw: Any) -> dict[str, Any]:
    return new_event(Kind.SOCKET, "connect", remote_address=addr, remote_port=port, direction="outbound",
                     family=2, transport="tcp", pid=10, source="ebpf", **{**WEB, **kw})


def cfg(**kw: Any) -> BaselineConfig:
    base: dict[str, Any] = {"mode": "learn", "learn_seconds": 10.0, "min_events": 3, "alert_window_seconds": 60.0}
    base.update(kw)
    return BaselineConfig(**base)


@pytest.mark.parametrize(("path", "want"), [
    ("/proc/4242/status", "/proc/*/status"),
    ("/tmp/tmp.aB3xZ9qW/out", "/tmp/tmp.*/out"),
    ("/tmp/tmpk2j_9dxz", "/tmp/tmp*"),
    ("/var/cache/app/5f2e9a1c7d/blob", "/var/cache/app/*/blob"),
    ("/run/x/0b1c2d3e-1111-2222-3333-444455556666/token", "/run/x/*/token"),
    ("/var/log/app.1700000000.log", "/var/log/app.*.log"),
    ("/usr/bin/python3.11", "/usr/bin/python3.11"),
    ("/usr/bin/sha256sum", "/usr/bin/sha256sum"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
    ("/usr/local/bin/node", "/usr/local/bin/node"),
])
def test_random_path_parts_collapse_and_names_stay(path: str, want: str) -> None:
    assert normalize_path(path) == want


def test_wildcards_match_within_one_path_part() -> None:
    assert matches("/usr/bin/*", "/usr/bin/nc")
    assert not matches("/usr/bin/*", "/usr/bin/x/nc")
    assert matches("/tmp/tmp.*/run", "/tmp/tmp.*/run") and not matches("/tmp/a", "/tmp/b")


def test_items_per_list() -> None:
    def items(ev: dict[str, Any]) -> list[tuple[str, str]]:
        return list(items_of(ev))

    assert items(exe("/usr/bin/curl")) == [("executables", "/usr/bin/curl"), ("process_pairs", "/bin/sh -> /usr/bin/curl")]
    for runtime in ("/usr/sbin/runc", "/usr/bin/containerd-shim-runc-v2", "memfd:runc_cloned:/proc/self/exe", "/usr/bin/crun"):
        assert items(exe("/bin/sh", parent=runtime)) == [("executables", "/bin/sh")]
    assert items(conn("10.0.0.9", 443)) == [("destinations", "10.0.0.9:443")]
    assert items(conn("fd00::1", 53)) == [("destinations", "[fd00::1]:53")]
    assert items(conn("10.96.0.10", 53, remote_service="kube-dns", remote_namespace="kube-system")) == [
        ("destinations", "service:kube-system/kube-dns:53")]
    assert items(conn("10.1.0.7", 5432, remote_pod="db-0", remote_workload="StatefulSet/db", remote_namespace="shop")) == [
        ("destinations", "workload:shop/StatefulSet/db:5432")]
    listen = new_event(Kind.SOCKET, "listen", local_port=8080, transport="tcp", direction="listening", **WEB)
    assert items(listen) == [("listening_ports", "tcp/8080")]
    tcp_bind = new_event(Kind.SOCKET, "bind", local_port=40000, transport="tcp", **WEB)
    assert items(tcp_bind) == []
    wr = new_event(Kind.FILE, "create", target_path="/tmp/tmp.aB3xZ9qW/cache.db", **WEB)
    assert items(wr) == [("write_prefixes", "/tmp/tmp.*/")]
    assert items(new_event(Kind.FILE, "read", target_path="/etc/shadow", **WEB)) == []
    assert items(new_event(Kind.PROCESS, "exit", path="/bin/sh", **WEB)) == []


def test_workload_unit() -> None:
    assert workload_of(exe("/bin/true")) == WorkloadKey("prod", "shop", "Deployment", "web")
    host = exe("/bin/true", container_id="", namespace="")
    assert workload_of(host) is None
    bare = exe("/bin/true", workload_kind="", workload_name="", pod_name="debug")
    assert workload_of(bare) == WorkloadKey("prod", "shop", "Pod", "debug")
    # /var/log/pods only: the Deployment from the pod's generated name; other pods are their own unit
    podlogs = {"workload_kind": "", "workload_name": "", "metadata_source": "pod_logs"}
    assert workload_of(exe("/bin/true", **podlogs)) == WorkloadKey("prod", "shop", "Deployment", "web")
    assert workload_of(exe("/bin/true", **{**podlogs, "pod_name": "db-0"})) == WorkloadKey("prod", "shop", "Pod", "db-0")
    assert workload_of(exe("/bin/true", **{**podlogs, "pod_name": "web-abcde-x2x4z"})) == WorkloadKey("prod", "shop", "Pod", "web-abcde-x2x4z")


def learned(b: Baselines, now: float = 0.0) -> None:
    for ev in (exe("/usr/bin/python3"), exe("/bin/sleep"), conn("10.0.0.9", 443), exe("/bin/sleep")):
        assert b.check(ev, now) == []


def test_learn_then_monitor_after_period_and_min_events() -> None:
    b = Baselines(cfg())
    learned(b)
    p = b.profiles[WorkloadKey("prod", "shop", "Deployment", "web")]
    assert p.mode == "learn" and p.current.counts()["executables"] == 2
    assert b.check(exe("/usr/bin/nc"), 5.0) == [] and p.mode == "learn"  # period not over: learned
    assert b.check(exe("/bin/sleep"), 11.0) == [] and p.mode == "monitor"
    assert b.check(exe("/bin/sleep"), 12.0) == [] and b.check(conn("10.0.0.9", 443), 12.0) == []
    new = b.check(exe("/usr/bin/wget"), 13.0)
    assert [(f.list, f.item) for f in new] == [("executables", "/usr/bin/wget"), ("process_pairs", "/bin/sh -> /usr/bin/wget")]
    assert new[0].version == 1 and new[0].learned_since == 0.0 and new[0].monitor_since == 11.0
    assert b.check(exe("/usr/bin/wget"), 14.0) == []  # a repeat within the window
    assert [f.item for f in b.check(exe("/usr/bin/wget"), 80.0)] == ["/usr/bin/wget", "/bin/sh -> /usr/bin/wget"]
    assert [f.item for f in b.check(conn("192.0.2.1", 4444), 15.0)] == ["192.0.2.1:4444"]


def test_min_events_holds_learning_past_the_period() -> None:
    b = Baselines(cfg(min_events=100))
    learned(b)
    b.graduate(1000.0)
    assert b.profiles[WorkloadKey("prod", "shop", "Deployment", "web")].mode == "learn"
    b2 = Baselines(cfg())
    learned(b2)
    b2.graduate(1000.0)  # no event needed: the tick moves a learned profile on
    assert b2.profiles[WorkloadKey("prod", "shop", "Deployment", "web")].mode == "monitor"


def test_replicas_share_one_profile_and_new_digest_starts_a_version() -> None:
    b = Baselines(cfg())
    learned(b)
    b.check(exe("/bin/sleep", pod_name="web-7d9f8c6b5-q9q9q", container_id="d" * 64), 1.0)
    assert len(b.profiles) == 1
    b.graduate(20.0)
    key = WorkloadKey("prod", "shop", "Deployment", "web")
    new_image = {"image_digest": "sha256:" + "b" * 64}
    assert b.check(exe("/usr/bin/wget", **new_image), 30.0) == []  # learning again
    p = b.profiles[key]
    assert (p.mode, p.current.version, len(p.previous)) == ("learn", 2, 1)
    assert p.previous[0].items["executables"] == {"/usr/bin/python3", "/bin/sleep"}
    assert p.current.items["executables"] == {"/usr/bin/wget"}
    # an old replica during the rollout: checked against its own (monitored) version, no flapping
    assert [f.item for f in b.check(exe("/usr/bin/nc", pod_name="web-7d9f8c6b5-q9q9q"), 31.0)][0] == "/usr/bin/nc"
    assert b.check(exe("/bin/sleep", pod_name="web-7d9f8c6b5-q9q9q"), 31.0) == []
    assert p.current.version == 2 and "/usr/bin/nc" not in p.current.items["executables"]


def test_size_bound_counts_overflow_and_reports_it_once(tmp_path: Path) -> None:
    st, _ = _stage(tmp_path, max_items=2)
    out: list[dict[str, Any]] = []
    for i in range(5):
        st.process(exe(f"/opt/bin/tool{chr(97 + i)}"), out.append)
    st.tick(0.0, out.append)
    v = st.engine.profiles[WorkloadKey("prod", "shop", "Deployment", "web")].current
    assert len(v.items["executables"]) == 2 and v.overflow["executables"] == 3
    assert v.overflow["process_pairs"] == 3
    notes = [e["message"] for e in out if e["event_type"] == "agent"]
    assert len(notes) == 2 and all("is full (2 items)" in m for m in notes), notes
    assert st.rows()[0]["overflow"] == 6 and st.state()["profiles"] == {"learn": 1}


def test_running_agent_picks_up_profile_mode_and_import(tmp_path: Path) -> None:
    st, now = _stage(tmp_path)
    out: list[dict[str, Any]] = []
    st.process(exe("/bin/sleep"), out.append)
    st.sync()
    st.flush()
    assert main(["profile", "mode", "--state-dir", str(tmp_path), "shop/Deployment/web", "monitor"]) == 0
    st.sync()
    p = st.engine.profiles[WorkloadKey("prod", "shop", "Deployment", "web")]
    assert (p.mode, p.pinned) == ("monitor", True)
    st.process(exe("/usr/bin/nc"), out.append)
    st.tick(0.0, out.append)
    assert [e["findings"]["behavior"][0]["item"] for e in out if e["event_type"] == "alert"] == ["/usr/bin/nc"]


def test_namespace_off_and_monitor_overrides() -> None:
    b = Baselines(cfg(namespaces={"shop": "off"}))
    assert b.check(exe("/usr/bin/nc"), 0.0) == [] and not b.profiles
    m = Baselines(cfg(namespaces={"shop": "monitor"}))
    assert [f.item for f in m.check(exe("/usr/bin/nc"), 0.0)][0] == "/usr/bin/nc"


def test_config_validation_one_line_errors() -> None:
    c = from_dict(Config, {"detection": {"baseline": {"mode": "monitor", "namespaces": {"kube-system": "off"}, "learn_seconds": 60}}})
    assert c.detection.baseline.mode_for("kube-system") == "off" and c.detection.baseline.mode_for("x") == "monitor"
    for bad, msg in [({"mode": "protect"}, "detection.baseline.mode"), ({"namespaces": {"a": "x"}}, "detection.baseline.namespaces.a"),
                     ({"learn_seconds": -1}, "learn_seconds"), ({"min_events": "x"}, "min_events"), ({"max_items": 0}, "max_items"),
                     ({"bogus": 1}, "unknown key")]:
        with pytest.raises(ConfigError, match=msg):
            from_dict(Config, {"detection": {"baseline": bad}})


def test_codec_round_trip_and_errors() -> None:
    b = Baselines(cfg())
    learned(b)
    p = b.profiles[WorkloadKey("prod", "shop", "Deployment", "web")]
    doc = to_doc(p)
    assert doc["format"] == FORMAT and doc["current"]["executables"] == ["/bin/sleep", "/usr/bin/python3"]
    back = from_doc(yaml.safe_load(yaml.safe_dump(doc)))
    assert to_doc(back) == doc
    for broken, msg in [({**doc, "format": FORMAT + 1}, "newer"), ({**doc, "mode": "x"}, "mode"),
                        ({**doc, "current": {**doc["current"], "executables": [1]}}, "current.executables"),
                        ({**doc, "workload": {"namespace": "a"}}, "workload.kind"), ([1], "not a profile")]:
        with pytest.raises(ProfileFormatError, match=msg):
            from_doc(broken)


def test_older_formats_are_upgraded_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The upgrade path a later format will use: format N documents pass through UPGRADES[N]."""
    from podtrail.detect.baseline import codec

    b = Baselines(cfg())
    learned(b)
    doc = to_doc(b.profiles[WorkloadKey("prod", "shop", "Deployment", "web")])
    cur = {k: v for k, v in doc["current"].items() if k != "executables"}
    old = {**doc, "format": 0, "current": {**cur, "binaries": doc["current"]["executables"]}}
    with pytest.raises(ProfileFormatError, match="format 0 cannot be upgraded"):
        from_doc(old)
    monkeypatch.setitem(codec.UPGRADES, 0, lambda d: {**d, "format": 1, "current": {
        **{k: v for k, v in d["current"].items() if k != "binaries"}, "executables": d["current"]["binaries"]}})
    assert from_doc(old).current.items["executables"] == {"/bin/sleep", "/usr/bin/python3"}


def test_store_atomic_writes_corrupt_set_aside_and_outside_edits(tmp_path: Path) -> None:
    b = Baselines(cfg())
    learned(b)
    store = ProfileStore(tmp_path / "profiles")
    p = b.profiles[WorkloadKey("prod", "shop", "Deployment", "web")]
    path = store.save(p)
    assert [x.name for x in path.parent.iterdir()] == [path.name]  # no temporary left behind
    (path.parent / "broken.json").write_text("{not json")
    (path.parent / "future.json").write_text(json.dumps({**to_doc(p), "format": 99, "workload": {**p.key.as_dict(), "name": "f"}}))
    fresh = ProfileStore(tmp_path / "profiles")
    rep = fresh.load_all()
    assert [x.key for x in rep.loaded] == [p.key]
    assert len(rep.problems) == 2 and any("broken.json unreadable" in m and "set aside" in m for m in rep.problems)
    assert any(x.name.startswith("broken.json.") and x.name.endswith(".corrupt") for x in path.parent.iterdir())
    assert (path.parent / "future.json").exists()  # a later format is kept for a later podtrail
    assert fresh.changed().loaded == []
    p.mode = "monitor"
    ProfileStore(tmp_path / "profiles").save(p)  # someone else (`podtrail profile mode`) edits it
    assert [x.mode for x in fresh.changed().loaded] == ["monitor"]


def _stage(tmp_path: Path, **kw: Any) -> tuple[BaselineStage, list[float]]:
    now = [0.0]
    st = BaselineStage(cfg(state_dir=str(tmp_path), **kw), ProfileStore(tmp_path), clock=lambda: now[0])
    return st, now


def test_stage_behavior_alert_once_and_profile_survives_restart(tmp_path: Path) -> None:
    st, now = _stage(tmp_path)
    out: list[dict[str, Any]] = []
    for ev in (exe("/usr/bin/python3"), exe("/bin/sleep"), conn("10.0.0.9", 443), exe("/bin/sleep")):
        st.process(ev, out.append)
    now[0] = 20.0
    st.tick(float("inf"), out.append)  # the pipeline's last tick: graduate and save everything
    assert not [e for e in out if e["event_type"] == "alert"]
    st2, now2 = _stage(tmp_path)  # restart: same state dir
    now2[0] = 30.0
    out = []
    trig = exe("/usr/bin/wget")
    for ev in (exe("/bin/sleep"), trig, exe("/usr/bin/wget"), conn("10.0.0.9", 443)):
        st2.process(ev, out.append)
    st2.tick(1.0, out.append)
    alerts = [e for e in out if e["event_type"] == "alert"]
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert (a["detection_kind"], a["rule_level"], a["trigger_ids"]) == ("behavior", "medium", [trig["event_id"]])
    f = a["findings"]["behavior"]
    assert [(x["list"], x["item"]) for x in f] == [("executables", "/usr/bin/wget"), ("process_pairs", "/bin/sh -> /usr/bin/wget")]
    assert f[0]["workload"] == "prod/shop/Deployment/web" and f[0]["profile_version"] == 1 and f[0]["learned_since"] == 0
    assert a["workload_name"] == "web" and a["pod_name"] == WEB["pod_name"]
    assert validate(a) == []


def test_corrupt_state_is_an_agent_event_not_a_failure(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_bytes(b"\xff\x00")
    st, _ = _stage(tmp_path)
    out: list[dict[str, Any]] = []
    st.tick(0.0, out.append)
    assert [e["event_type"] for e in out] == ["agent"] and "set aside" in out[0]["message"]
    assert validate(out[0]) == []


def test_signature_alert_on_new_behaviour_is_one_hybrid_alert(tmp_path: Path) -> None:
    st, now = _stage(tmp_path, namespaces={"shop": "monitor"})
    out: list[dict[str, Any]] = []
    trig = exe("/usr/bin/nc")
    sig = new_alert(trig, rule_id="podtrail_netcat", title="Netcat", level="high", kind="signature",
                    tactics=["execution"], techniques=["T1059"], trigger_ids=[trig["event_id"]], findings={"matched": "nc"})
    st.process(trig, out.append)  # the detection stage passes the trigger on, then its alert
    st.process(sig, out.append)
    st.process(exe("/usr/bin/other"), out.append)
    st.tick(1.0, out.append)
    alerts = [e for e in out if e["event_type"] == "alert"]
    hybrid = [a for a in alerts if a["trigger_ids"] == [trig["event_id"]]]
    assert len(hybrid) == 1 and hybrid[0] is sig
    assert sig["rule_level"] == "critical" and sig["severity"] == 10 and sig["detection_kind"] == "signature"
    assert sig["findings"]["matched"] == "nc" and sig["findings"]["behavior"][0]["item"] == "/usr/bin/nc"
    assert validate(sig) == []
    assert len(alerts) == 2  # the other new executable: its own behaviour alert


def test_later_correlation_alert_is_enriched_too(tmp_path: Path) -> None:
    st, _ = _stage(tmp_path, namespaces={"shop": "monitor"})
    out: list[dict[str, Any]] = []
    trig, other = exe("/usr/bin/nc"), exe("/usr/bin/nc")
    st.process(trig, out.append)
    st.process(other, out.append)  # the behaviour alert about trig goes out here
    corr = new_alert(other, rule_id="podtrail_corr", title="Corr", level="medium", kind="correlation",
                     tactics=[], techniques=[], trigger_ids=[trig["event_id"], other["event_id"]])
    st.process(corr, out.append)
    assert corr["rule_level"] == "high" and [f["item"] for f in corr["findings"]["behavior"]][:1] == ["/usr/bin/nc"]
    assert len([e for e in out if e.get("detection_kind") == "behavior"]) == 1


def test_alert_budget_per_workload_and_window(tmp_path: Path) -> None:
    st, now = _stage(tmp_path, namespaces={"shop": "monitor"}, max_alerts_per_window=3)
    out: list[dict[str, Any]] = []
    for port in range(1000, 1010):  # a port scan
        st.process(conn("10.0.0.9", port), out.append)
    st.tick(0.0, out.append)
    assert len([e for e in out if e["event_type"] == "alert"]) == 3
    notes = [e["message"] for e in out if e["event_type"] == "agent"]
    assert len(notes) == 1 and "more than 3 new items" in notes[0]
    assert st.state()["rate_limited"] == 7
    now[0] = 61.0  # next window
    st.process(conn("10.0.0.9", 2000), out.append)
    st.tick(0.0, out.append)
    assert len([e for e in out if e["event_type"] == "alert"]) == 4
