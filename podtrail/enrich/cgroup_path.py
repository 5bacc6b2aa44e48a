"""Container identity from a cgroup path: runtime, 64-hex container id, pod UID, QoS class.

Pure and table-driven: each runtime/cgroup-driver shape is one regex over one path segment.
The path may come from the cgroup2 hierarchy (eBPF cgroup id -> path) or from
``/proc/<pid>/cgroup`` (any hierarchy); both are handled the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_HEX64 = r"(?P<id>[0-9a-f]{64})"

# (segment regex, runtime). Checked against each path segment, deepest first, so that a
# process in a nested cgroup below its container (e.g. systemd inside the container) still
# resolves to the container segment.
_CONTAINER_SEGMENTS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(rx), rt)
    for rx, rt in (
        (rf"^cri-containerd-{_HEX64}\.scope$", "containerd"),
        (rf"^.*:cri-containerd:{_HEX64}$", "containerd"),
        (rf"^crio-{_HEX64}(?:\.scope)?$", "cri-o"),
        (rf"^.*:crio:{_HEX64}$", "cri-o"),
        (rf"^docker-{_HEX64}\.scope$", "docker"),
        (rf"^.*:docker:{_HEX64}$", "docker"),
        (rf"^libpod-{_HEX64}(?:\.scope)?$", "podman"),
        (rf"^nerdctl-{_HEX64}\.scope$", "nerdctl"),
        (rf"^{_HEX64}$", ""),  # bare id: cgroupfs driver; runtime from the parent segment
    )
)
# Monitor processes (conmon) live beside the container, not in it.
_NOT_CONTAINER: Final = re.compile(r"^(?:crio|libpod)-conmon-")

_UID = r"(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
_POD_SEGMENTS: Final = (
    re.compile(rf"^pod{_UID}$"),  # cgroupfs: kubepods/<qos>/pod<uid>
    re.compile(rf"^kubepods(?:-(?P<qos>besteffort|burstable))?-pod{_UID}\.slice$"),  # systemd
)
_QOS_CGROUPFS: Final = frozenset({"besteffort", "burstable"})

# Parent segment -> runtime, for bare-id (cgroupfs driver) paths outside Kubernetes.
_BARE_PARENTS: Final = {"docker": "docker", "nerdctl": "nerdctl", "libpod_parent": "podman", "default": "containerd", "k8s.io": "containerd", "moby": "docker"}


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """What the cgroup path alone says about a container."""

    container_id: str
    runtime: str
    pod_uid: str = ""
    qos_class: str = ""


def parse_cgroup_path(path: str) -> ContainerRef | None:
    """Container identity for a cgroup path, or None for host (non-container) paths.

    For example ``/kubepods/besteffort/pod<uid>/<64 hex>`` gives runtime ``kubelet`` (the
    cgroupfs driver does not name the runtime), that pod UID and QoS ``besteffort``.
    """
    if not path or len(path) > 4096:
        return None
    segments = [s for s in path.split("/") if s]
    for i in range(len(segments) - 1, -1, -1):
        seg = segments[i]
        if _NOT_CONTAINER.match(seg):
            return None
        for rx, runtime in _CONTAINER_SEGMENTS:
            m = rx.match(seg)
            if m is None:
                continue
            cid = m.group("id")
            parents = segments[:i]
            if ":" in seg:  # systemd-driver "slice:prefix:id" form names the pod slice inline
                parents = [*parents, seg.split(":", 1)[0]]
            pod_uid, qos = _pod_of(parents)
            if not runtime:
                if pod_uid:
                    runtime = "kubelet"  # cgroupfs driver: the runtime is not in the path
                elif parents and parents[-1] in _BARE_PARENTS:
                    runtime = _BARE_PARENTS[parents[-1]]
                else:
                    return None  # a bare hex dir with no known parent is not proof of a container
            elif runtime == "docker" and pod_uid:
                runtime = "cri-dockerd"
            return ContainerRef(cid, runtime, pod_uid, qos)
    return None


def _pod_of(parents: list[str]) -> tuple[str, str]:
    """Pod UID and QoS class from the segments above the container segment."""
    for j in range(len(parents) - 1, -1, -1):
        seg = parents[j]
        for rx in _POD_SEGMENTS:
            m = rx.match(seg)
            if m is None:
                continue
            uid = m.group("uid").replace("_", "-")
            qos = (m.groupdict().get("qos") or "") if "qos" in rx.groupindex else ""
            if not qos and j > 0 and parents[j - 1] in _QOS_CGROUPFS:
                qos = parents[j - 1]
            if not qos:
                # No QoS level between kubepods and the pod: a Guaranteed pod.
                above = parents[j - 1] if j > 0 else ""
                qos = "guaranteed" if above in ("kubepods", "kubepods.slice") else ""
            return uid, qos
    return "", ""


def parse_proc_cgroup(text: str) -> tuple[str, ContainerRef | None]:
    """From ``/proc/<pid>/cgroup`` text: the cgroup v2 path (or best v1 path) and its container.

    Prefers the unified (``0::``) line; on pure cgroup v1 hosts uses the first hierarchy line
    whose path names a container.
    """
    unified = ""
    best: tuple[str, ContainerRef | None] = ("", None)
    for line in text.split("\n"):
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, cpath = parts
        if hid == "0" and controllers == "":
            unified = cpath
            ref = parse_cgroup_path(cpath)
            if ref is not None:
                return cpath, ref
        elif best[1] is None:
            ref = parse_cgroup_path(cpath)
            if ref is not None:
                best = (cpath, ref)
    if best[1] is not None:
        return best
    return unified, None
