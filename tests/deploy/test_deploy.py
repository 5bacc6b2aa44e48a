"""Deployment files as users install them: manifests the real `kubernetes` client models accept
without unknown fields, RBAC that covers exactly the API calls the code makes, a DaemonSet that
mounts every host path the agent reads, configs that load, and a systemd unit that verifies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import require
from kubernetes import client

from podtrail.config import Config, from_dict
from podtrail.enrich.k8s.api import API_CALLS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
MODELS = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount", "ClusterRole": "V1ClusterRole",
          "ClusterRoleBinding": "V1ClusterRoleBinding", "ConfigMap": "V1ConfigMap", "DaemonSet": "V1DaemonSet"}


def _docs() -> list[dict[str, Any]]:
    out = []
    for p in sorted((K8S / "base").glob("*.yaml")):
        if p.name != "kustomization.yaml":
            out += [d for d in yaml.safe_load_all(p.read_text()) if d]
    return out


def _unknown(original: Any, round_trip: Any, path: str = "") -> list[str]:
    if isinstance(original, dict):
        bad = []
        for k, v in original.items():
            if not isinstance(round_trip, dict) or k not in round_trip:
                bad.append(f"{path}.{k}")
            else:
                bad += _unknown(v, round_trip[k], f"{path}.{k}")
        return bad
    if isinstance(original, list) and isinstance(round_trip, list):
        return [b for o, r in zip(original, round_trip, strict=False) for b in _unknown(o, r, path + "[]")]
    return []


def test_manifests_load_into_kubernetes_models_without_unknown_fields() -> None:
    api = client.ApiClient()
    docs = _docs()
    assert {d["kind"] for d in docs} == set(MODELS)
    for d in docs:
        obj = api._ApiClient__deserialize(d, MODELS[d["kind"]])  # type: ignore[attr-defined]
        assert _unknown(d, api.sanitize_for_serialization(obj)) == [], d["kind"]
    kust = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert all((K8S / "base" / r).exists() for r in kust["resources"])
    overlay = yaml.safe_load((K8S / "overlays/privileged/kustomization.yaml").read_text())
    assert overlay["resources"] == ["../../base"] and (K8S / "overlays/privileged/privileged.yaml").exists()


def test_rbac_covers_exactly_the_calls_the_code_makes() -> None:
    role = next(d for d in _docs() if d["kind"] == "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    needed = set(API_CALLS) | {("authorization.k8s.io", "selfsubjectaccessreviews", "create")}  # doctor's RBAC check
    assert granted == needed


def test_daemonset_mounts_every_path_the_agent_reads() -> None:
    ds = next(d for d in _docs() if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    cfg_text = next(d for d in _docs() if d["kind"] == "ConfigMap")["data"]["podtrail.yaml"]
    cfg = from_dict(Config, yaml.safe_load(cfg_text))
    needed = {"/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/bpf", "/sys/fs/cgroup", "/lib/modules", "/usr/src",
              cfg.kubernetes.pod_logs_dir, "/var/log/containers"}
    assert needed <= mounts, needed - mounts
    assert any(cfg.spool_dir.startswith(m) for m in mounts) and any(cfg.osquery.api_socket.startswith(m) for m in mounts)
    assert spec["hostPID"] is True and spec["tolerations"] == [{"operator": "Exists"}]
    env = spec["containers"][0]["env"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in env
    caps = spec["containers"][0]["securityContext"]["capabilities"]
    assert "BPF" in caps["add"] and caps["drop"] == ["ALL"] and not spec["containers"][0]["securityContext"]["privileged"]


def test_systemd_unit_verifies_and_config_loads(tmp_path: Path) -> None:
    from podtrail.config import load

    load(ROOT / "deploy/systemd/podtrail.yaml")
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze (apt systemd)")
    unit = (ROOT / "deploy/systemd/podtrail.service").read_text()
    # verify resolves ExecStart binaries: point them at files that exist here
    unit = unit.replace("/usr/local/lib/podtrail/setup-mounts", str(ROOT / "deploy/systemd/setup-mounts"))
    unit = unit.replace("/usr/local/bin/podtrail", shutil.which("true") or "/bin/true")
    (tmp_path / "podtrail.service").write_text(unit)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "podtrail.service")], capture_output=True, text=True)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if "podtrail.service" in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_health_endpoint_reports_the_running_agent(tmp_path: Path) -> None:
    """A real `podtrail run`: /readyz and /healthz describe it, and agent-health events flow."""
    import json
    import socket
    import sys
    import time
    import urllib.request

    from conftest import require_ebpf

    require_ebpf()

    def free() -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    mport, hport = free(), free()
    cfg = tmp_path / "podtrail.yaml"
    cfg.write_text(f"metrics: {{port: {mport}, health_port: {hport}, health_interval_seconds: 1}}\n"
                   f"osquery: {{api_socket: ''}}\nsensor: {{sockets: false, files: false}}\n")
    p = subprocess.Popen([sys.executable, "-m", "podtrail", "run", "--config", str(cfg), "--duration", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body: dict[str, Any] = {}
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            subprocess.run(["/bin/busybox", "true"])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{hport}/readyz", timeout=2) as r:
                    body = json.loads(r.read())
                    if body["events"] > 0:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        assert body.get("ok") is True and body["source"] == "ebpf" and body["alive"] is True, body
        assert body["events"] > 0 and body["process_table_size"] > 0 and body["kernel_lost"] == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{hport}/healthz", timeout=2) as r:
            assert r.status == 200
        time.sleep(1.5)
    finally:
        p.send_signal(2)
        out, err = p.communicate(timeout=30)
    health = [json.loads(line) for line in out.splitlines() if '"event_type":"agent"' in line]
    assert health and health[0]["action"] == "health" and "source=ebpf" in health[0]["message"], err
