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
    needed = {"/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/bpf", "/sys/fs/cgroup",
              cfg.kubernetes.pod_logs_dir, "/var/log/containers"}
    assert needed <= mounts, needed - mounts
    # CO-RE: objects compiled at build time, relocated against the node's BTF; no kernel headers
    assert not mounts & {"/lib/modules", "/usr/src"}, "the agent needs no kernel headers"
    assert any(cfg.spool_dir.startswith(m) for m in mounts) and any(cfg.osquery.api_socket.startswith(m) for m in mounts)
    assert any(cfg.detection.baseline.state_dir.startswith(m) for m in mounts)  # profiles outlive the pod
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
    # the unit's SupplementaryGroups= is the group podtrail.sysusers creates (a dry run)
    sysusers = ROOT / "deploy/systemd/podtrail.sysusers"
    r = subprocess.run(["systemd-sysusers", "--dry-run", str(sysusers)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    groups = [ln.split()[1] for ln in sysusers.read_text().splitlines() if ln.startswith("g ")]
    assert "SupplementaryGroups=podtrail" in unit and groups == [Config().osquery.api_socket_group]


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


# --- overlays/osquery-sidecar: osqueryd and `podtrail extension` beside the daemon ------------------

SIDECAR = K8S / "overlays" / "osquery-sidecar"
# Strategic-merge keys (patchMergeKey in the Kubernetes API schema) of the lists these manifests patch.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "ports": "containerPort", "imagePullSecrets": "name"}


def _strategic_merge(base: Any, patch: Any, key: str = "") -> Any:
    """Kubernetes' strategic merge for what the overlays use: maps merge, lists with a merge key
    merge item by item (new items appended), other lists and scalars are replaced."""
    import copy

    if isinstance(base, dict) and isinstance(patch, dict):
        assert not any(k.startswith("$") for k in patch), "patch directives are not modelled here"
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _strategic_merge(out[k], v, k) if k in out else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        mk = MERGE_KEYS[key]
        merged = [copy.deepcopy(b) for b in base]
        for item in patch:
            at = next((i for i, b in enumerate(merged) if b.get(mk) == item.get(mk)), None)
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = _strategic_merge(merged[at], item, key)
        return merged
    return copy.deepcopy(patch)


def _kustomize(root: Path) -> list[dict[str, Any]]:
    """Render a kustomization (resources, strategic-merge patches, configMapGenerator files; the
    generated name's content hash left out). Anything else in it fails loudly."""
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert set(kust) <= {"apiVersion", "kind", "resources", "patches", "configMapGenerator"}, set(kust)
    docs: list[dict[str, Any]] = []
    for r in kust.get("resources", []):
        p = (root / r).resolve()
        docs += _kustomize(p) if p.is_dir() else [d for d in yaml.safe_load_all(p.read_text()) if d]
    for entry in kust.get("patches", []):
        assert set(entry) == {"path"}, entry
        patch = yaml.safe_load((root / entry["path"]).read_text())
        ident = (patch["kind"], patch["metadata"]["name"], patch["metadata"].get("namespace"))
        hits = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) == ident]
        assert len(hits) == 1, ident
        docs[hits[0]] = _strategic_merge(docs[hits[0]], patch)
    for gen in kust.get("configMapGenerator", []):
        assert set(gen) <= {"name", "namespace", "files"}, gen
        meta = {"name": gen["name"], **({"namespace": gen["namespace"]} if "namespace" in gen else {})}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                     "data": {Path(f).name: (root / f).read_text() for f in gen["files"]}})
    return docs


def _canon(x: Any, key: str = "") -> Any:
    if isinstance(x, dict):
        return {k: _canon(v, k) for k, v in x.items()}
    if isinstance(x, list):
        items = [_canon(v, key) for v in x]
        return sorted(items, key=lambda d: str(d.get(MERGE_KEYS[key]))) if key in MERGE_KEYS else items
    return x


def _sidecar() -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, str], list[dict[str, Any]]]:
    """The overlay's pod spec, its containers by name, osqueryd's flags, and all rendered docs."""
    docs = _kustomize(SIDECAR)
    spec = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    osq_cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "podtrail-osquery")
    flags = {}
    for line in osq_cm["data"]["osquery.flags"].splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition("=")
            flags[name] = value
    return spec, containers, flags, docs


def _mount(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume mount under which ``path`` lies in ``container`` (the deepest one)."""
    hits = [m for m in container.get("volumeMounts", []) if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    return max(hits, key=lambda m: len(m["mountPath"]), default=None)


def test_osquery_sidecar_renders_as_kustomize_does() -> None:
    """The test's own rendering (used below) is what `kubectl kustomize` builds, hash aside."""
    import json
    import re

    kubectl = shutil.which("kubectl") or shutil.which("kustomize")
    require(kubectl is not None, "kubectl or kustomize (kustomize built in)")
    assert kubectl is not None
    cmd = [kubectl, "kustomize", str(SIDECAR)] if kubectl.endswith("kubectl") else [kubectl, "build", str(SIDECAR)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = json.dumps([d for d in yaml.safe_load_all(r.stdout) if d])
    assert re.search(r'"podtrail-osquery-[a-z0-9]{10}"', text), "the generated ConfigMap carries a content hash"
    theirs = json.loads(re.sub(r'"podtrail-osquery-[a-z0-9]{10}"', '"podtrail-osquery"', text))

    def key(d: dict[str, Any]) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    assert sorted(_canon(theirs), key=key) == sorted(_canon(_kustomize(SIDECAR)), key=key)


def test_osquery_sidecar_loads_into_kubernetes_models_without_unknown_fields() -> None:
    api = client.ApiClient()
    _, containers, _, docs = _sidecar()
    assert set(containers) == {"podtrail", "osquery", "podtrail-extension"}
    for d in docs:
        obj = api._ApiClient__deserialize(d, MODELS[d["kind"]])  # type: ignore[attr-defined]
        assert _unknown(d, api.sanitize_for_serialization(obj)) == [], (d["kind"], d["metadata"]["name"])
    # resources other than the DaemonSet and the generated ConfigMap are the base's, untouched
    base = {(d["kind"], d["metadata"]["name"]): d for d in _docs()}
    for d in docs:
        if d["kind"] != "DaemonSet" and (d["kind"], d["metadata"]["name"]) in base:
            assert d == base[(d["kind"], d["metadata"]["name"])]


def test_osquery_sidecar_adds_no_privilege() -> None:
    """The daemon stays the only sensor, unchanged; the added containers hold no capability."""
    spec, containers, flags, _ = _sidecar()
    base_spec = next(d for d in _docs() if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert containers["podtrail"] == base_spec["containers"][0]
    assert {k: v for k, v in spec.items() if k not in ("containers", "volumes")} == \
        {k: v for k, v in base_spec.items() if k not in ("containers", "volumes")}
    cfg = from_dict(Config, yaml.safe_load(next(d for d in _docs() if d["kind"] == "ConfigMap")["data"]["podtrail.yaml"]))
    for name in ("osquery", "podtrail-extension"):
        c = containers[name]
        sc = c["securityContext"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False, name
        # non-root, one uid for both (each connects to the other's socket), and the extension
        # in the daemon's API socket group
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == containers["osquery"]["securityContext"]["runAsUser"] != 0
        assert cfg.osquery.api_socket_mode & 0o060 == 0o060
        assert cfg.osquery.api_socket_group in (sc["runAsGroup"], *spec["securityContext"]["supplementalGroups"]), name
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"] is True, name
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        # no host path: only the daemon's socket directory (read-only) and the pod's own volumes
        vols = {v["name"]: v for v in spec["volumes"]}
        for m in c["volumeMounts"]:
            assert "hostPath" not in vols[m["name"]] or (m["mountPath"] == "/run/podtrail" and m.get("readOnly")), (name, m)
    assert containers["osquery"]["livenessProbe"]
    assert flags["--disable_events"] == "true", "osquery must not run event publishers of its own"


def test_osquery_sidecar_extension_socket_is_shared_and_config_consistent() -> None:
    import json

    spec, containers, flags, docs = _sidecar()
    vols = {v["name"]: v for v in spec["volumes"]}
    osq, ext = containers["osquery"], containers["podtrail-extension"]
    # osqueryd reads its flagfile, config and pack from the generated ConfigMap
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "podtrail-osquery")
    flagfile = next(a.split("=", 1)[1] for a in osq["args"] if a.startswith("--flagfile="))
    conf_path = flags["--config_path"]
    for path in (flagfile, conf_path):
        m = _mount(osq, path)
        assert m and vols[m["name"]]["configMap"]["name"] == "podtrail-osquery", path
        assert path == f"{m['mountPath']}/{Path(path).name}" and Path(path).name in cm["data"], path
    conf = json.loads(cm["data"]["osquery.conf"])
    for pack in conf["packs"].values():
        assert _mount(osq, pack) == _mount(osq, conf_path) and Path(pack).name in cm["data"], pack
    # nothing is autoloaded (podtrail is not in the osquery image), nothing required at startup
    assert "extensions.load" not in cm["data"] and "--extensions_require" not in flags
    assert "--extensions_autoload" not in flags or flags["--extensions_autoload"] not in {f"/etc/osquery/{k}" for k in cm["data"]}
    # the extension manager socket is on one writable emptyDir that both containers mount
    sock = flags["--extensions_socket"]
    m_osq, m_ext = _mount(osq, sock), _mount(ext, sock)
    assert m_osq and m_ext and m_osq["name"] == m_ext["name"], "osquery.em must be on a volume both containers mount"
    assert m_osq["mountPath"] == m_ext["mountPath"] and "emptyDir" in vols[m_osq["name"]]
    assert not m_osq.get("readOnly") and not m_ext.get("readOnly"), "both create sockets there"
    # osquery's database and pidfile are writable, but not on the volume shared with the extension
    for path in (flags["--database_path"], flags["--pidfile"]):
        m = _mount(osq, path)
        assert m and not m.get("readOnly") and "emptyDir" in vols[m["name"]] and m["name"] != m_osq["name"], path
    assert containers["osquery"]["livenessProbe"]["exec"]["command"][-1] == sock


def test_osquery_sidecar_extension_args_register_with_that_socket() -> None:
    """The podtrail-extension container's args, parsed by podtrail's real CLI: `podtrail extension`
    at osqueryd's socket, answering from the daemon's configured API socket on a shared volume;
    and the daemon itself does not register too (osquery refuses a second "podtrail")."""
    from podtrail.cli import build_parser
    from podtrail.commands import extension, run

    spec, containers, flags, docs = _sidecar()
    ext, daemon = containers["podtrail-extension"], containers["podtrail"]
    assert "command" not in ext and ext["image"] == daemon["image"], "podtrail's own image and entrypoint"
    args = build_parser().parse_args(ext["args"])
    assert args.func is extension.run
    assert args.socket == flags["--extensions_socket"]
    assert args.timeout >= 10, "wait for osqueryd's socket while osqueryd starts"
    cfg = from_dict(Config, yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "podtrail")["data"]["podtrail.yaml"]))
    assert args.api_socket == cfg.osquery.api_socket
    m_daemon, m_ext = _mount(daemon, args.api_socket), _mount(ext, args.api_socket)
    assert m_daemon and m_ext and m_daemon["name"] == m_ext["name"] and m_daemon["mountPath"] == m_ext["mountPath"]
    daemon_args = build_parser().parse_args(daemon["args"])
    assert daemon_args.func is run.run and daemon_args.osquery_socket is None and cfg.osquery.socket == ""


def test_osquery_sidecar_extension_container_keeps_serving_across_osqueryd_restarts(tmp_path: Path) -> None:
    """The container's exact args (its two socket directories mapped into tmp) against an
    osqueryd stand-in: it registers the tables and proxies a query to a stand-in daemon; when
    osqueryd goes away and a new one starts, the same process registers with it (new uuid)
    and answers again within 10 s."""
    import importlib.util
    import sys
    import time

    from podtrail.tables.local_api import LocalAPIServer

    spec_ = importlib.util.spec_from_file_location("fake_manager", ROOT / "tests/osquery/fake_manager.py")
    assert spec_ and spec_.loader
    fake = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(fake)

    _, containers, _, _ = _sidecar()
    ext = containers["podtrail-extension"]
    remap = {m["mountPath"]: str(tmp_path / m["name"]) for m in ext["volumeMounts"]}

    def mapped(a: str) -> str:
        return next((str(Path(d) / Path(a).relative_to(mp)) for mp, d in remap.items() if a.startswith(mp + "/")), a)

    argv = [mapped(a) for a in ext["args"]]
    em = argv[argv.index("--socket") + 1]
    api = LocalAPIServer(argv[argv.index("--api-socket") + 1], lambda table, constraints: [{"table": table}])
    api.start()
    for d in remap.values():
        Path(d).mkdir(exist_ok=True)
    p = None
    osq = fake.FakeOsqueryd(em, first_uuid=1000)
    try:
        p = subprocess.Popen([sys.executable, "-m", "podtrail", *argv], stderr=subprocess.PIPE, text=True)
        for attempt, first_uuid in enumerate((1000, 2000)):
            if attempt:
                osq.stop()
                time.sleep(4)  # longer than --interval: the extension notices osqueryd is gone
                osq = fake.FakeOsqueryd(em, first_uuid=first_uuid)
            deadline = time.monotonic() + (20 if attempt == 0 else 10)
            answered = None
            while time.monotonic() < deadline and p.poll() is None and answered is None:
                for uuid in list(osq.handler.registered):
                    try:
                        resp = osq.generate(uuid, "pods")
                        answered = (uuid, resp)
                    except Exception:  # noqa: BLE001 - registered, not listening yet
                        time.sleep(0.1)
                time.sleep(0.1)
            assert answered, (attempt, p.stderr.read() if p.poll() is not None and p.stderr else "no answer")
            uuid, resp = answered
            info, registry = osq.handler.registered[uuid]
            assert uuid == first_uuid and info.name == "podtrail" and "containers" in registry["table"]
            assert resp.status.code == 0 and resp.response == [{"table": "pods"}]
        assert p.poll() is None, "the same process served both osqueryd instances"
    finally:
        if p is not None and p.poll() is None:
            p.terminate()
            p.wait(10)
        osq.stop()
        api.stop()


def test_osquery_sidecar_pack_is_the_current_hunting_pack() -> None:
    import json

    _, _, flags, docs = _sidecar()
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "podtrail-osquery")
    pack = json.loads((ROOT / "siem_content/osquery/podtrail-hunting.json").read_text())
    assert json.loads(cm["data"]["podtrail-hunting.json"]) == pack, \
        "stale copy: cp siem_content/osquery/podtrail-hunting.json deploy/kubernetes/overlays/osquery-sidecar/"
    # the pack waits for the extension (discovery); osqueryd re-checks that often enough
    assert any("osquery_extensions" in q and "'podtrail'" in q for q in pack.get("discovery", []))
    assert int(flags["--pack_refresh_interval"]) <= 300
