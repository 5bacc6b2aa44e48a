"""Behavioural baselines end to end: real runc containers (a real dash as /bin/sh), the real
eBPF sensor and agent pipeline, pod identity from the /var/log/pods fallback (no API server),
profiles in a real state directory, ``container_profiles`` over the agent's local API.

A Deployment with two replicas learns a routine for a few seconds, then: the routine gives no
alert; one new executable and one new outbound destination (a loopback listener) give exactly
one ``behavior`` alert each; repeats give none; a restarted agent keeps the profile (no
re-learning, same verdicts); an exported profile imported into a fresh state directory gives
the same verdicts.

A new image digest needs the pod's container statuses, which only the API has: that test
runs the real ``kubernetes`` client against the protocol-faithful local API server of
tests/k8s (no real API server exists here), with the same real containers and sensor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import loopback
import pytest
from agent_harness import CaptureSink, start_agent
from conftest import require_ebpf, require_runc
from containers import Container, run_container
from dash_rootfs import install_dash
from k8s.fake_apiserver import FakeAPIServer, make_pod

from podtrail.cli import main
from podtrail.config import BaselineConfig, Config, KubernetesConfig
from podtrail.model.event import validate
from podtrail.tables.local_api import remote_generate

NS, CLUSTER = "shop", "e2e"
PODS = ("web-7d9f8c6b5-x2x4z", "web-7d9f8c6b5-q9q9q")  # two replicas of Deployment "web", by their generated names
WORKLOAD = f"{CLUSTER}/{NS}/Deployment/web"
LEARN_S = 4.0


def _replica(pod: str, pods_dir: Path) -> Container:
    c = run_container("containerd-systemd")
    (pods_dir / f"{NS}_{pod}_{c.pod_uid}" / "app").mkdir(parents=True)
    install_dash(c.rootfs)
    (c.rootfs / "opt/tools").mkdir(parents=True)
    shutil.copy2("/bin/busybox", c.rootfs / "opt/tools/id")  # a new executable, never run while learning
    shutil.copy2("/bin/busybox", c.rootfs / "tmp/true")  # new, and a shipped signature's hit (exec from /tmp)
    return c


def _config(tmp: Path, state: Path, kubeconfig: str = "") -> Config:
    cfg = Config()
    cfg.sensor.containers_only = True
    cfg.kubernetes = KubernetesConfig(enabled=bool(kubeconfig), kubeconfig=kubeconfig, cluster_name=CLUSTER,
                                      node_name="node-a", pod_logs_dir=str(tmp / "pods"))
    cfg.detection.baseline = BaselineConfig(mode="off", namespaces={NS: "learn"}, learn_seconds=LEARN_S, min_events=10,
                                            state_dir=str(state), sync_seconds=0.3, alert_window_seconds=600)
    cfg.osquery.api_socket = str(tmp / f"api-{state.name}.sock")
    return cfg


class Scenario:
    def __init__(self, tmp: Path, replicas: list[Container]) -> None:
        self.tmp, self.replicas = tmp, replicas
        self.routine_l = loopback.listen(0)
        self.new_l = loopback.listen(0)
        self.routine_port = self.routine_l.getsockname()[1]
        self.new_port = self.new_l.getsockname()[1]
        self.agent: Any = None
        self.sink: CaptureSink | None = None
        self.cfg: Config | None = None
        self.kubeconfig = ""

    def start(self, state: Path) -> None:
        self.cfg = _config(self.tmp, state, self.kubeconfig)
        self.agent, self.sink = start_agent(self.cfg)

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def close(self) -> None:
        self.stop()
        loopback.stop(self.routine_l)
        loopback.stop(self.new_l)

    def mine(self, e: dict[str, Any]) -> bool:
        return e.get("workload_name") == "web" or e.get("namespace") == NS

    def routine(self, c: Container) -> None:
        c.exec("/bin/sh", "-c", f"/bin/cat /etc/hostname >/dev/null; /bin/date >/tmp/last; echo hi | /bin/nc 127.0.0.1 {self.routine_port}")

    def connected(self, c: Container, port: int, n: int = 1) -> None:
        """Wait until the agent passed on ``n`` connects of ``c`` to ``port`` (the step's last event)."""
        assert self.sink is not None
        got = self.sink.wait_for(lambda e: e.get("container_id") == c.id and e["event_type"] == "socket"
                                 and e["action"] == "connect" and e.get("remote_port") == port, count=n)
        assert len(got) >= n, f"sensor did not report {n} connects to {port}"

    def alerts(self, kind: str = "behavior") -> list[dict[str, Any]]:
        assert self.sink is not None
        return [e for e in self.sink.events if e["event_type"] == "alert" and e.get("detection_kind") == kind]

    def settle(self, pred: Callable[[], bool] | None = None, timeout: float = 10.0) -> None:
        """Let the pipeline deliver what is in flight (held alerts go at the next tick)."""
        deadline = time.monotonic() + timeout
        while pred is not None and not pred() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)

    def profile_row(self) -> dict[str, str]:
        assert self.cfg is not None
        rows = [r for r in remote_generate(self.cfg.osquery.api_socket)("container_profiles", []) if r["workload"] == WORKLOAD]
        assert len(rows) == 1, rows
        return rows[0]

    def verdicts(self) -> None:
        """Routine: nothing. New executable, new destination: one alert each. Repeats: nothing."""
        a, b = self.replicas
        before = len(self.alerts())
        for c in (a, b):
            n = sum(1 for e in self.sink.events if e.get("container_id") == c.id and e.get("remote_port") == self.routine_port  # type: ignore[union-attr]
                    and e["action"] == "connect")
            self.routine(c)
            self.connected(c, self.routine_port, n + 1)
        self.settle()
        assert self.alerts()[before:] == [], "the routine must not alert"
        a.exec("/bin/sh", "-c", "/opt/tools/id; true")  # forked by dash: a new executable and a new pair
        self.settle(lambda: len(self.alerts()) > before)
        new_exe = self.alerts()[before:]
        assert len(new_exe) == 1, new_exe
        f = new_exe[0]["findings"]["behavior"]
        assert {(x["list"], x["item"]) for x in f} == {("executables", "/opt/tools/id"), ("process_pairs", "/bin/sh -> /opt/tools/id")}
        assert f[0]["workload"] == WORKLOAD and new_exe[0]["pod_name"] == PODS[0] and validate(new_exe[0]) == []
        b.exec("/bin/sh", "-c", f"echo hi | /bin/nc 127.0.0.1 {self.new_port}")
        self.settle(lambda: len(self.alerts()) > before + 1)
        new_dst = self.alerts()[before + 1:]
        assert len(new_dst) == 1, new_dst
        assert [(x["list"], x["item"]) for x in new_dst[0]["findings"]["behavior"]] == [("destinations", f"127.0.0.1:{self.new_port}")]
        assert new_dst[0]["pod_name"] == PODS[1]
        a.exec("/bin/sh", "-c", "/opt/tools/id; true")  # repeats, on either replica: the same workload, nothing new
        b.exec("/bin/sh", "-c", "/opt/tools/id; true")
        b.exec("/opt/tools/id")  # started by the runtime: no pair, the same executable
        a.exec("/bin/sh", "-c", f"echo hi | /bin/nc 127.0.0.1 {self.new_port}")
        self.connected(a, self.new_port)
        self.settle()
        extra = [(x["pod_name"], x["findings"]["behavior"]) for x in self.alerts()[before + 2:]]
        assert len(self.alerts()) == before + 2, extra


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    require_ebpf()
    require_runc()
    (tmp_path / "pods").mkdir()
    replicas: list[Container] = []
    s = None
    try:
        replicas.extend(_replica(p, tmp_path / "pods") for p in PODS)
        s = Scenario(tmp_path, replicas)
        yield s
    finally:
        if s is not None:
            s.close()
        for c in replicas:
            c.destroy()


def test_two_replicas_learn_then_alert_once_per_new_item_across_restart_and_import(scenario: Scenario, tmp_path: Path) -> None:
    s = scenario
    state = tmp_path / "state"
    s.start(state)
    row = _learn(s, s.replicas)
    assert (row["mode"], row["version"], row["workload_kind"], row["workload_name"]) == ("monitor", "1", "Deployment", "web")
    assert int(row["executables"]) >= 3 and int(row["destinations"]) == 1 and int(row["events"]) >= 10
    assert s.alerts() == [], "no alert while learning"
    q = subprocess.run([sys.executable, "-m", "podtrail", "query", "--api-socket", s.cfg.osquery.api_socket, "--format", "json",  # type: ignore[union-attr]
                        "SELECT workload, mode, version FROM container_profiles WHERE mode = 'monitor'"],
                       capture_output=True, text=True, timeout=60)
    assert json.loads(q.stdout) == [{"workload": WORKLOAD, "mode": "monitor", "version": 1}], q.stderr
    s.verdicts()

    # restart: the profile comes back from the state dir, still monitoring, nothing re-learned
    s.stop()
    s.start(state)
    row2 = s.profile_row()
    assert (row2["mode"], row2["version"], row2["learned_since"], row2["executables"]) == (
        "monitor", "1", row["learned_since"], row["executables"])
    s.verdicts()

    # export -> import into a fresh state dir: the same verdicts
    s.stop()
    exported = tmp_path / "web.yaml"
    assert main(["profile", "export", "--state-dir", str(state), WORKLOAD, "-o", str(exported)]) == 0
    fresh = tmp_path / "fresh"
    assert main(["profile", "import", "--state-dir", str(fresh), str(exported)]) == 0
    s.start(fresh)
    assert s.profile_row()["mode"] == "monitor"
    s.verdicts()


def _learn(s: Scenario, replicas: list[Container]) -> dict[str, str]:
    t0 = time.monotonic()
    rounds = 0
    while time.monotonic() - t0 < LEARN_S + 1 or rounds < 3:
        for c in replicas:
            s.routine(c)
        rounds += 1
    for c in replicas:
        s.connected(c, s.routine_port, rounds)
    s.settle(lambda: s.profile_row()["mode"] == "monitor")
    return s.profile_row()


def _api_pod(api: FakeAPIServer, c: Container, name: str, rs: str, digest: str) -> None:
    pod = make_pod(name, NS, c.pod_uid, "node-a", container_id=c.id, owner=("ReplicaSet", rs))
    pod["status"]["containerStatuses"][0]["imageID"] = f"registry.example/web@sha256:{digest * 64}"
    api.add_pod(pod)


def test_new_image_digest_starts_a_new_profile_version(scenario: Scenario, tmp_path: Path) -> None:
    s = scenario
    api = FakeAPIServer()
    try:
        a, b = s.replicas
        api.add_owner("ReplicaSet", NS, "web-7d9f8c6b5", ("Deployment", "web"))
        api.add_owner("ReplicaSet", NS, "web-5f4d8b9c6", ("Deployment", "web"))
        _api_pod(api, a, PODS[0], "web-7d9f8c6b5", "a")
        s.kubeconfig = api.kubeconfig(str(tmp_path / "kubeconfig"))
        s.start(tmp_path / "state")
        row = _learn(s, [a])
        assert (row["version"], row["image_digest"]) == ("1", "app=sha256:" + "a" * 64)
        # a rollout: replica b runs the new image; its workload learns again, from scratch
        _api_pod(api, b, "web-5f4d8b9c6-k8k8k", "web-5f4d8b9c6", "b")
        s.routine(b)
        s.connected(b, s.routine_port)
        s.settle(lambda: s.profile_row()["version"] == "2")
        row2 = s.profile_row()
        assert (row2["version"], row2["mode"], row2["previous_versions"]) == ("2", "learn", "1")
        assert row2["image_digest"] == "app=sha256:" + "b" * 64
        b.exec("/opt/tools/id")  # new in the new version, learned, no alert
        b.exec("/bin/sh", "-c", f"echo hi | /bin/nc 127.0.0.1 {s.new_port}")
        s.connected(b, s.new_port)
        s.settle()
        assert s.alerts() == []
        # the old replica, still on the old image, is still judged by the version it runs
        a.exec("/opt/tools/id")
        s.settle(lambda: len(s.alerts()) > 0)
        assert [(x["findings"]["behavior"][0]["item"], x["findings"]["behavior"][0]["profile_version"]) for x in s.alerts()] == [
            ("/opt/tools/id", 1)]
        assert s.profile_row()["version"] == "2"
    finally:
        s.stop()
        api.close()


def test_signature_hit_outside_the_profile_is_one_hybrid_alert(scenario: Scenario, tmp_path: Path) -> None:
    """The shipped rule "exec from /tmp" (level high) fires on a process that is also new for
    its workload: one alert, the signature's, carrying the behaviour finding, raised to critical."""
    s = scenario
    s.start(tmp_path / "state")
    _learn(s, s.replicas)
    a = s.replicas[0]
    a.exec("/tmp/true")
    assert s.sink is not None
    execs = s.sink.wait_for(lambda e: e.get("container_id") == a.id and e["event_type"] == "process"
                            and e["action"] == "exec" and e.get("path") == "/tmp/true")
    assert execs, "sensor did not report the exec"
    trigger = execs[0]["event_id"]
    s.settle(lambda: any(trigger in (x.get("trigger_ids") or []) for x in s.alerts("signature")))
    about = [e for e in s.sink.events if e["event_type"] == "alert" and trigger in (e.get("trigger_ids") or [])]
    assert len(about) == 1, [(x["rule_id"], x["detection_kind"]) for x in about]
    h = about[0]
    assert (h["detection_kind"], h["rule_level"], h["severity"]) == ("signature", "critical", 10)
    assert [(f["list"], f["item"]) for f in h["findings"]["behavior"]][0] == ("executables", "/tmp/true")
    assert h["findings"]["rule"] == "podtrail_exec_from_tmp_or_shm" and h["findings"]["matched"]  # the signature's own
    assert h["rule_title"] and validate(h) == []
