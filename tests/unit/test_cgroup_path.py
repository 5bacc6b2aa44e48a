"""The cgroup path parser on every runtime/driver shape, and on malformed paths."""

from __future__ import annotations

import pytest
from containers import SHAPES, shape_path

from podtrail.enrich.cgroup_path import parse_cgroup_path, parse_proc_cgroup

CID = "0123456789abcdef" * 4
UID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"

EXPECTED = {
    "kubelet-cgroupfs-besteffort": ("kubelet", UID, "besteffort"),
    "kubelet-cgroupfs-burstable": ("kubelet", UID, "burstable"),
    "kubelet-cgroupfs-guaranteed": ("kubelet", UID, "guaranteed"),
    "containerd-systemd": ("containerd", UID, "besteffort"),
    "crio-systemd": ("cri-o", UID, "burstable"),
    "crio-cgroupfs": ("cri-o", UID, "besteffort"),
    "cri-dockerd-systemd": ("cri-dockerd", UID, "guaranteed"),
    "docker-cgroupfs": ("docker", "", ""),
    "docker-systemd": ("docker", "", ""),
    "podman": ("podman", "", ""),
    "nerdctl": ("nerdctl", "", ""),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape(shape: str) -> None:
    ref = parse_cgroup_path(shape_path(shape, CID, UID))
    assert ref is not None
    assert (ref.container_id, ref.runtime, ref.pod_uid, ref.qos_class) == (CID, *EXPECTED[shape])


@pytest.mark.parametrize(
    "path,runtime,uid",
    [
        (f"/kubepods-besteffort-pod{UID.replace('-', '_')}.slice:cri-containerd:{CID}", "containerd", UID),
        (f"/kubepods/besteffort/pod{UID}/{CID}/init.scope", "kubelet", UID),  # nested below the container
        (f"/libpod_parent/libpod-{CID}", "podman", ""),
        (f"/nerdctl/{CID}", "nerdctl", ""),
        (f"/default/{CID}", "containerd", ""),
        (f"/system.slice/containerd.service/kubepods-burstable-pod{UID.replace('-', '_')}.slice:cri-containerd:{CID}", "containerd", UID),
    ],
)
def test_other_forms(path: str, runtime: str, uid: str) -> None:
    ref = parse_cgroup_path(path)
    assert ref is not None and (ref.container_id, ref.runtime, ref.pod_uid) == (CID, runtime, uid)


@pytest.mark.parametrize(
    "path",
    [
        "", "/", "/user.slice/user-0.slice/session-1.scope", "/system.slice/containerd.service",
        f"/kubepods/besteffort/pod{UID}",  # the pod cgroup itself: no container
        f"/docker/{CID[:-1]}",  # 63 hex
        f"/docker/{CID}X", f"/docker/{CID.upper()}",  # not lowercase hex
        f"/random/{CID}",  # bare hex under an unknown parent proves nothing
        f"/system.slice/crio-conmon-{CID}.scope",  # the monitor, not the container
        f"/kubepods/besteffort/podnot-a-uid/{CID[:10]}",
        "/" + "a/" * 3000,
        "\x00\n|=",
    ],
)
def test_not_a_container(path: str) -> None:
    assert parse_cgroup_path(path) is None


def test_systemd_uid_underscores_become_dashes() -> None:
    ref = parse_cgroup_path(shape_path("containerd-systemd", CID, UID))
    assert ref is not None and "_" not in ref.pod_uid


def test_proc_cgroup_prefers_unified_then_v1() -> None:
    v2 = f"0::/kubepods/besteffort/pod{UID}/{CID}\n"
    path, ref = parse_proc_cgroup(f"12:memory:/\n{v2}")
    assert ref is not None and ref.container_id == CID and path.endswith(CID)
    v1_only = f"12:memory:/docker/{CID}\n11:cpu:/docker/{CID}\n"
    path, ref = parse_proc_cgroup(v1_only)
    assert ref is not None and ref.runtime == "docker" and path == f"/docker/{CID}"
    path, ref = parse_proc_cgroup("0::/user.slice\n")
    assert ref is None and path == "/user.slice"
