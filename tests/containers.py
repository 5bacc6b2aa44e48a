"""Real runc containers for tests, with kubelet- and runtime-shaped cgroup paths.

Each container gets its own busybox rootfs copy (so tests may write and drop binaries), its
``linux.cgroupsPath`` set to exactly the path a kubelet or runtime would use, and by default
the host network (so it can reach loopback listeners the test runs).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = "/bin/busybox"
RUNC = shutil.which("runc") or "/usr/sbin/runc"
CGROUP2_MOUNTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def cgroup2_root() -> str:
    """Where cgroup v2 is mounted here (hybrid: /sys/fs/cgroup/unified)."""
    for m in CGROUP2_MOUNTS:
        if os.path.exists(os.path.join(m, "cgroup.controllers")) or os.path.exists(os.path.join(m, "cgroup.procs")):
            with open("/proc/self/mountinfo") as f:
                if any(line.split()[4] == m and " - cgroup2 " in line for line in f):
                    return m
    raise RuntimeError("no cgroup2 mount")


def new_container_id() -> str:
    return secrets.token_hex(32)


def new_pod_uid() -> str:
    return str(uuid.uuid4())


# Cgroup path shapes, as each runtime/driver lays them out. {uid} has dashes; {uid_} underscores.
SHAPES: dict[str, str] = {
    "kubelet-cgroupfs-besteffort": "/kubepods/besteffort/pod{uid}/{id}",
    "kubelet-cgroupfs-burstable": "/kubepods/burstable/pod{uid}/{id}",
    "kubelet-cgroupfs-guaranteed": "/kubepods/pod{uid}/{id}",
    "containerd-systemd": "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{id}.scope",
    "crio-systemd": "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{id}.scope",
    "crio-cgroupfs": "/kubepods/besteffort/pod{uid}/crio-{id}",
    "cri-dockerd-systemd": "/kubepods.slice/kubepods-pod{uid_}.slice/docker-{id}.scope",
    "docker-cgroupfs": "/docker/{id}",
    "docker-systemd": "/system.slice/docker-{id}.scope",
    "podman": "/machine.slice/libpod-{id}.scope",
    "nerdctl": "/system.slice/nerdctl-{id}.scope",
}


def shape_path(shape: str, cid: str, pod_uid: str) -> str:
    return SHAPES[shape].format(id=cid, uid=pod_uid, uid_=pod_uid.replace("-", "_"))


DASH = "/bin/dash"


def libraries(binary: str) -> list[str]:
    """The shared objects ``ldd`` lists for ``binary`` (the loader included), resolved."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        for part in line.split():
            if part.startswith("/"):
                libs.append(part)
    return libs


def install_binary(rootfs: Path, binary: str, dest: str) -> None:
    """Copy a dynamically linked binary and its libraries into the rootfs, at their own paths."""
    target = rootfs / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    for lib in libraries(binary):
        t = rootfs / lib.lstrip("/")
        t.parent.mkdir(parents=True, exist_ok=True)
        if not t.exists():
            shutil.copy2(os.path.realpath(lib), t)


def make_rootfs(dest: Path) -> Path:
    """A busybox rootfs with a real dash as /bin/sh: the static busybox plus one link per applet
    (called by path: Debian's busybox runs its applets without any execve), and dash with its
    libraries, so every command the shell runs is an execve, as in Debian/Alpine images."""
    rootfs = dest / "rootfs"
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var/run/secrets/kubernetes.io/serviceaccount"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = rootfs / "bin" / a
        if not link.exists():
            link.symlink_to("busybox")
    (rootfs / "bin/sh").unlink()
    install_binary(rootfs, DASH, "/bin/dash")
    (rootfs / "bin/sh").symlink_to("dash")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\nctronly:x:4242:4242:container only:/:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (rootfs / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (rootfs / "tmp").chmod(0o1777)
    return rootfs


@dataclass
class Container:
    id: str
    pod_uid: str
    cgroup_path: str
    bundle: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    @property
    def pid(self) -> int:
        out = subprocess.run([RUNC, "state", self.id], capture_output=True, text=True, check=True).stdout
        return int(json.loads(out)["pid"])

    def exec(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (a new process in its cgroup) and wait for it."""
        return subprocess.run(
            [RUNC, "exec", self.id, *argv],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=check, timeout=timeout,
        )

    def cgroup2_inode(self) -> int:
        return os.stat(cgroup2_root() + self.cgroup_path).st_ino

    def destroy(self) -> None:
        subprocess.run([RUNC, "kill", self.id, "KILL"], capture_output=True)
        subprocess.run([RUNC, "delete", "--force", self.id], capture_output=True)
        shutil.rmtree(self.bundle, ignore_errors=True)
        self._remove_pod_cgroup()

    def _remove_pod_cgroup(self) -> None:
        """runc removes only the container's own cgroup; a kubelet removes the pod's when the pod
        goes. Without this every test run left its pods' empty cgroups behind (ten per pod on this
        hybrid layout: 40,000 after a day of runs), and every later cgroup scan on the machine
        walked them. A pod cgroup still holding another container stays (rmdir refuses)."""
        pod = os.path.dirname(self.cgroup_path).lstrip("/")
        if self.pod_uid not in pod and self.pod_uid.replace("-", "_") not in pod:
            return
        for root in ["/sys/fs/cgroup", *glob.glob("/sys/fs/cgroup/*/")]:
            try:
                os.rmdir(os.path.join(root, pod))
            except OSError:
                pass


def run_container(
    shape: str = "kubelet-cgroupfs-besteffort",
    args: tuple[str, ...] = ("sleep", "3600"),
    *,
    cid: str | None = None,
    pod_uid: str | None = None,
    host_network: bool = True,
    netns: str | None = None,
    workdir: Path | None = None,
) -> Container:
    """Start a detached runc container whose cgroup path has ``shape``.

    ``netns`` joins a network namespace made by the test (``/var/run/netns/NAME``);
    otherwise the host network is shared when ``host_network``.
    """
    cid = cid or new_container_id()
    pod_uid = pod_uid or new_pod_uid()
    bundle = Path(tempfile.mkdtemp(prefix="podtrail-ctr-", dir=workdir))
    make_rootfs(bundle)
    subprocess.run([RUNC, "spec"], cwd=bundle, check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = list(args)
    spec["root"]["readonly"] = False
    spec["linux"]["cgroupsPath"] = shape_path(shape, cid, pod_uid)
    namespaces = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    if netns:
        namespaces.append({"type": "network", "path": f"/var/run/netns/{netns}"})
    elif not host_network:
        namespaces.append({"type": "network"})
    spec["linux"]["namespaces"] = namespaces
    (bundle / "config.json").write_text(json.dumps(spec))
    log = bundle / "container.log"
    with open(log, "wb") as lf:
        subprocess.run([RUNC, "run", "-d", "--bundle", str(bundle), cid], stdin=subprocess.DEVNULL,
                       stdout=lf, stderr=lf, check=True, timeout=60)
    return Container(cid, pod_uid, spec["linux"]["cgroupsPath"], bundle, log)
