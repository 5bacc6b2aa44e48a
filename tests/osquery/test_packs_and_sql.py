"""Every shipped pack query, run in the embedded engine (SQLite via apsw, osquery's dialect),
against a real attack scenario in a real runc container seen by the real eBPF sensors; plus
the local API used by `podtrail query` and by `podtrail extension` (osquery autoload)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import CaptureSink
from conftest import require_ebpf, require_runc
from containers import run_container
from fake_manager import FakeOsqueryd
from k8s.fake_apiserver import FakeAPIServer, make_pod
from loopback import listen, stop

from podtrail.agent import build_agent
from podtrail.config import Config, KubernetesConfig
from podtrail.tables.packs import FLEET, fleet_yaml, load_pack
from podtrail.tables.schema import TABLES
from podtrail.tables.sql import connect, query

POOL_PORT, API_PORT = 3333, 6443


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_ebpf()
    require_runc()
    tmp = tmp_path_factory.mktemp("osq")
    api = FakeAPIServer()
    c = run_container("containerd-systemd")
    api.add_pod(make_pod("miner-pod", "shop", c.pod_uid, "node-a", container_id=c.id, container="app",
                         owner=("StatefulSet", "shop-db"), privileged=True))
    cfg = Config()
    cfg.metrics.enabled = False
    cfg.kubernetes = KubernetesConfig(kubeconfig=api.kubeconfig(str(tmp / "kc")), node_name="node-a", pod_logs_dir=str(tmp / "pods"))
    cfg.osquery.api_socket = str(tmp / "api.sock")
    capture = CaptureSink()
    agent = build_agent(cfg, sinks=[capture])
    agent.start()
    listeners = [listen(POOL_PORT), listen(API_PORT)]
    try:
        deadline = time.monotonic() + 15
        while agent.tables.pods() == [] and time.monotonic() < deadline:
            time.sleep(0.1)
        c.rootfs.joinpath("var/run/secrets/kubernetes.io/serviceaccount/token").write_text("fake-token")
        c.exec("sh", "-c", "cp /bin/busybox /tmp/busybox && chmod 755 /tmp/busybox")
        c.exec("/tmp/busybox", "sh", "-c",
               f"echo --url stratum+tcp://127.0.0.1:{POOL_PORT} >/dev/null; /tmp/busybox nc 127.0.0.1 {POOL_PORT} </dev/null", check=False)
        c.exec("sh", "-c", f"cat /var/run/secrets/kubernetes.io/serviceaccount/token /etc/shadow >/dev/null; nc 127.0.0.1 {API_PORT} </dev/null",
               check=False)
        c.exec("sh", "-c", "echo scenario-done-marker", check=False)
        capture.wait_for(lambda e: "scenario-done-marker" in e.get("cmdline", "") and e.get("comm") != "runc")
        capture.wait_for(lambda e: e.get("remote_port") == API_PORT)
        time.sleep(0.5)
        events = tmp / "events.jsonl"
        events.write_text("".join(json.dumps(e) + "\n" for e in capture.events))
        yield {"agent": agent, "container": c, "db": connect(TABLES, agent.tables.generate), "events": events,
               "api_socket": cfg.osquery.api_socket, "tmp": tmp}
    finally:
        for s in listeners:
            stop(s)
        agent.stop()
        c.destroy()
        api.close()


EXPECT_CONTAINER = ["container_shells", "container_exec_from_tmp_shm_memfd", "container_drift", "container_sensitive_reads",
                    "pod_outbound_unknown_destinations", "container_miners", "privileged_containers",
                    "container_k8s_api_or_runtime_socket"]


@pytest.mark.parametrize("name", EXPECT_CONTAINER)
def test_pack_query_finds_the_scenario(scenario: dict[str, Any], name: str) -> None:
    pack = load_pack()
    cols, rows = query(scenario["db"], pack["queries"][name]["query"])
    assert rows, f"{name} returned nothing"
    cid = cols.index("container_id")
    assert {r[cid] for r in rows} == {scenario["container"].id}, rows[:3]
    if "pod_name" in cols:
        assert {r[cols.index("pod_name")] for r in rows} == {"miner-pod"}


def test_pack_specifics(scenario: dict[str, Any]) -> None:
    pack, db = load_pack(), scenario["db"]
    cols, rows = query(db, pack["queries"]["container_sensitive_reads"]["query"])
    cats = {r[cols.index("sensitive")] for r in rows}
    assert {"shadow", "sa_token"} <= cats or len(cats) >= 2, cats
    cols, rows = query(db, pack["queries"]["container_k8s_api_or_runtime_socket"]["query"])
    assert {r[cols.index("remote_port")] for r in rows} == {API_PORT}
    cols, rows = query(db, "SELECT count(*) FROM container_process_events WHERE container_id = '' AND action = 'exec' AND path LIKE '/tmp/%'")
    assert rows == [(0,)]


def test_pack_format_and_fleet_copy_current() -> None:
    pack = load_pack()
    for name, q in pack["queries"].items():
        assert {"query", "interval", "description"} <= set(q), name
        assert q["query"].rstrip().endswith(";")
    assert FLEET.read_text() == fleet_yaml(pack), "fleet-gitops.yml is stale: regenerate from the pack"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podtrail", *args], capture_output=True, text=True, timeout=60)


def test_query_cli_offline_and_against_the_daemon(scenario: dict[str, Any]) -> None:
    sql = "SELECT pid, path, container_id, pod_name FROM container_process_events WHERE action = 'exec' AND drift = 1"
    offline = _cli("query", sql, "--events", str(scenario["events"]), "--format", "json")
    live = _cli("query", sql, "--api-socket", scenario["api_socket"], "--format", "json")
    assert offline.returncode == 0 and live.returncode == 0, offline.stderr + live.stderr
    a, b = json.loads(offline.stdout), json.loads(live.stdout)
    assert a and a == b and all(r["path"] == "/tmp/busybox" and r["pod_name"] == "miner-pod" for r in a)
    bad = _cli("query", "SELEKT 1", "--events", str(scenario["events"]))
    assert bad.returncode == 2 and "SQL" in bad.stderr and "Traceback" not in bad.stderr
    gone = _cli("query", "SELECT 1 FROM containers", "--api-socket", "/nonexistent/api.sock")
    assert gone.returncode == 2 and "podtrail run" in gone.stderr


def test_autoload_extension_proxies_to_the_daemon(scenario: dict[str, Any]) -> None:
    """`podtrail extension`, as osqueryd autoloads it, registers and answers from the daemon
    (the one sensor on the node) without loading BPF programs of its own."""
    osq = FakeOsqueryd(str(Path(scenario["tmp"]) / "osquery.em"))
    p = subprocess.Popen([sys.executable, "-m", "podtrail", "extension", "--socket", osq.path, "--interval", "0.5",
                          "--api-socket", scenario["api_socket"]], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not osq.handler.registered and time.monotonic() < deadline:
            time.sleep(0.1)
        assert osq.handler.registered, p.stderr.read() if p.poll() is not None and p.stderr else "not registered"
        uuid = next(iter(osq.handler.registered))
        resp = osq.generate(uuid, "containers", [{"name": "container_id", "list": [{"op": 2, "expr": scenario["container"].id}], "affinity": "TEXT"}])
        assert resp.status.code == 0 and [r["pod_name"] for r in resp.response] == ["miner-pod"]
        assert resp.response[0]["privileged"] == "1"
        maps = Path(f"/proc/{p.pid}/maps").read_text()
        assert "libbcc" not in maps, "the autoload path must not load BCC/BPF"
        osq.stop()
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
        osq.stop()


def test_deploy_osquery_files_are_consistent() -> None:
    root = Path(__file__).resolve().parents[2] / "deploy" / "osquery"
    flags = (root / "osquery.flags").read_text()
    assert "--extensions_autoload=/etc/osquery/extensions.load" in flags and "--extensions_require=podtrail" in flags
    conf = json.loads((root / "osquery.conf").read_text())
    assert conf["packs"]["podtrail-hunting"].endswith("podtrail-hunting.json")
    wrapper = (root / "podtrail-osquery-extension").read_text()
    assert (root / "extensions.load").read_text().strip().endswith("podtrail-osquery-extension")
    assert "podtrail extension" in wrapper


def test_shell_reads_statements_from_stdin(scenario: dict[str, Any]) -> None:
    r = subprocess.run([sys.executable, "-m", "podtrail", "shell", "--events", str(scenario["events"]), "--format", "csv"],
                       input=".tables\nSELECT count(*) AS n\n  FROM container_process_events WHERE drift = 1;\nSELEKT;\n.exit\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1  # piped input with an error: scripts notice (the statements around it still ran)
    assert "container_socket_events" in r.stdout and "pods" in r.stdout.split()
    n = int(r.stdout.split("n\n", 1)[1].split()[0])
    assert n >= 1 and r.stderr == 'Error: SQL: near "SELEKT": syntax error\n'
