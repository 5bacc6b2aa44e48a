"""The DaemonSet image, built here and run the way the DaemonSet runs it.

`scripts/image.sh` (what `make image` runs) builds deploy/docker/Dockerfile with podman from a
Debian base made from Debian's packages (no registry is reachable here). The podtrail
container of deploy/kubernetes/base is translated into `podman run` options, field by field:
hostPID, the pod's supplementalGroups, the capability set (or privileged), read-only root,
every volume mount (host paths, the ConfigMap's files, emptyDirs). Host paths the agent
writes (spool, API socket folder) and host paths this machine lacks (/var/log/pods) become
folders of the test. Then: a real runc container with a kubelet-shaped cgroup path execs,
and the exec arrives on the agent's stdout with its container id and pod UID; a non-root
process in the API socket's group (the osquery sidecar's user) queries the daemon; and
`podtrail doctor` inside the image passes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require, require_root, require_runc
from containers import run_container

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
IMAGE = os.environ.get("PODTRAIL_TEST_IMAGE", "localhost/podtrail:test")
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]  # this VM's hard limits


def _podman(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


def _base_docs() -> dict[str, dict[str, Any]]:
    docs = [d for p in sorted(BASE.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if d]
    return {d["kind"]: d for d in docs}


def daemonset_run_options(work: Path) -> tuple[list[str], list[str]]:
    """(`podman run` options, container args) for the base DaemonSet's podtrail container."""
    docs = _base_docs()
    spec = docs["DaemonSet"]["spec"]["template"]["spec"]
    (c,) = [c for c in spec["containers"] if c["name"] == "podtrail"]
    opts = [*ULIMITS, "--network", "none"]  # the pod network is not modelled; probes are made from inside
    if spec.get("hostPID"):
        opts += ["--pid", "host"]
    for gid in spec.get("securityContext", {}).get("supplementalGroups", []):
        opts += ["--group-add", str(gid)]
    sc = c.get("securityContext", {})
    if sc.get("privileged"):
        opts.append("--privileged")
    else:
        caps = sc.get("capabilities", {})
        if "ALL" in caps.get("drop", []):
            opts += ["--cap-drop", "all"]
        opts += [a for cap in caps.get("add", []) for a in ("--cap-add", f"CAP_{cap}")]
    if sc.get("readOnlyRootFilesystem"):
        opts.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        opts += ["--security-opt", "no-new-privileges"]
    # Kubernetes runs a container without a seccompProfile Unconfined (podman would apply its default)
    if sc.get("seccompProfile", spec.get("securityContext", {}).get("seccompProfile", {})).get("type") != "RuntimeDefault":
        opts += ["--security-opt", "seccomp=unconfined"]
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        opts += ["-e", f"{e['name']}={socket.gethostname() if ref == 'spec.nodeName' else e.get('value', '')}"]
    vols = {v["name"]: v for v in spec["volumes"]}
    for m in c["volumeMounts"]:
        v = vols[m["name"]]
        src = work / m["name"]
        if "hostPath" in v:
            host = v["hostPath"]["path"]
            if v["hostPath"].get("type") == "DirectoryOrCreate" or not os.path.exists(host):
                src.mkdir(mode=0o755, exist_ok=True)  # the agent's own state, or absent on this machine
            else:
                src = Path(host)
        elif "configMap" in v:
            src.mkdir(exist_ok=True)
            for name, text in docs["ConfigMap"]["data"].items():
                (src / name).write_text(text)
        elif "emptyDir" in v:
            src.mkdir(exist_ok=True)
        else:
            raise AssertionError(f"volume kind not modelled: {v}")
        opts += ["-v", f"{src}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
    return opts, list(c["args"])


@pytest.fixture(scope="module")
def image() -> str:
    require_root()
    require(all(shutil.which(t) for t in ("podman", "mmdebstrap")), "podman and mmdebstrap (scripts/setup-system.sh installs them)")
    r = subprocess.run(["bash", str(ROOT / "scripts/image.sh")], env={**os.environ, "IMAGE": IMAGE},
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    print(r.stdout.strip())  # "<image> <size> bytes"
    return IMAGE


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("image")
    d.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def daemon(image: str, work: Path) -> Iterator[str]:
    """The image running as the DaemonSet's podtrail container, ready."""
    opts, args = daemonset_run_options(work)
    name = f"podtrail-test-{secrets.token_hex(4)}"
    _podman("run", "-d", "--name", name, *opts, image, *args, check=True)
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline:
            r = _podman("exec", name, "/opt/podtrail/bin/python", "-c",
                        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9465/readyz', timeout=2).status)")
            if r.returncode == 0 and r.stdout.strip() == "200":
                ready = True
                break
            if _podman("container", "inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
                break
            time.sleep(1)
        if not ready:
            logs = _podman("logs", "--tail", "30", name)
            pytest.fail(f"the agent in the image did not get ready:\n{(logs.stdout + logs.stderr)[-3000:]}", pytrace=False)
        yield name
    finally:
        _podman("rm", "-f", "-t", "5", name)


def test_runc_container_exec_arrives_with_container_id_and_pod_uid(daemon: str, work: Path) -> None:
    require_runc()
    c = run_container("kubelet-cgroupfs-besteffort")
    marker = f"image-marker-{secrets.token_hex(4)}"
    try:
        hit: dict[str, Any] | None = None
        deadline = time.monotonic() + 30
        while hit is None and time.monotonic() < deadline:
            c.exec("/bin/busybox", "true", marker)
            time.sleep(1)
            out = _podman("logs", "--since", "2m", daemon, timeout=60).stdout
            for line in out.splitlines():
                if marker in line and line.startswith("{"):
                    ev = json.loads(line)
                    # (runc's own exec carries the marker in its argv too)
                    if ev.get("action") == "exec" and ev.get("cmdline") == f"/bin/busybox true {marker}":
                        hit = ev
                        break
        assert hit, "no exec event from the container reached the agent's stdout"
        assert hit["container_id"] == c.id and hit["pod_uid"] == c.pod_uid, hit
        assert hit["source"] == "ebpf"
        # the sidecar's view: a non-root user in the API socket's group queries the daemon
        sock = work / "run" / "api.sock"
        st = os.stat(sock)
        cfg = yaml.safe_load(_base_docs()["ConfigMap"]["data"]["podtrail.yaml"])
        assert st.st_gid == int(cfg["osquery"]["api_socket_group"]) and st.st_mode & 0o777 == 0o660
        q = _podman("run", "--rm", *ULIMITS, "--network", "none", "--user", "10001:10001", "--cap-drop", "all",
                    "--read-only", "--security-opt", "no-new-privileges", "-v", f"{work / 'run'}:/run/podtrail:ro",
                    IMAGE, "query", f"SELECT container_id, pod_uid FROM containers WHERE container_id = '{c.id}'",
                    "--api-socket", "/run/podtrail/api.sock", "--format", "json")
        assert q.returncode == 0, q.stderr
        assert json.loads(q.stdout) == [{"container_id": c.id, "pod_uid": c.pod_uid}]
        outsider = _podman("run", "--rm", *ULIMITS, "--network", "none", "--user", "65534:65534", "--cap-drop", "all",
                           "-v", f"{work / 'run'}:/run/podtrail:ro", IMAGE, "query", "SELECT 1 FROM containers")
        assert outsider.returncode != 0 and "Permission denied" in outsider.stderr
    finally:
        c.destroy()


def test_doctor_passes_inside_the_image(image: str, work: Path) -> None:
    opts, _ = daemonset_run_options(work)
    r = _podman("run", "--rm", *opts, image, "doctor", timeout=180)
    assert r.returncode == 0 and "source: ebpf" in r.stdout, r.stdout + r.stderr


def test_the_image_carries_no_compiler_and_no_kernel_headers(image: str) -> None:
    """CO-RE objects are compiled in the builder stage: the final image has no compiler, no
    LLVM/BCC, no kernel headers; it has the objects, libbpf and thrift's C accelerator."""
    r = _podman("run", "--rm", *ULIMITS, "--network", "none", "--entrypoint", "/bin/sh", image, "-c",
                "for t in cc gcc clang clang-14 ld llc bpftool; do command -v $t; done; "
                "find /usr/src /lib/modules /usr/include/linux -mindepth 1 -maxdepth 1 2>/dev/null; "
                "ls /usr/lib/x86_64-linux-gnu | grep -iE '^lib(llvm|clang|bcc)'; "
                "dpkg-query -W -f '${Package}\\n' | grep -E '^(linux-headers|clang|llvm|python3-bpfcc|libbpfcc)'; "
                "/opt/podtrail/bin/python -c 'import bcc' 2>/dev/null && echo bcc importable; "
                "/opt/podtrail/bin/python -c 'import thrift.protocol.fastbinary' || echo no fastbinary; "
                "ls /usr/lib/x86_64-linux-gnu/libbpf.so.1 /opt/podtrail/lib/python3*/site-packages/podtrail/bpf/obj/*.bpf.o >/dev/null "
                "|| echo objects or libbpf missing")
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr
