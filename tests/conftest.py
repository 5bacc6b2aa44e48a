"""Shared test fixtures. A missing real capability (eBPF, auditd, runc, rsyslog) skips a test
on a developer machine but FAILS it under CI=true: a silent skip would hide a broken install."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip locally, fail in CI, when ``condition`` (a real capability) is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required capability missing under CI=true: {what}", pytrace=False)
    pytest.skip(f"capability missing: {what}")


def require_root() -> None:
    require(os.geteuid() == 0, "root")


def require_runc() -> None:
    require_root()
    require(shutil.which("runc") is not None and os.path.exists("/bin/busybox"), "runc and busybox-static")


def require_ebpf() -> None:
    """The whole eBPF agent: the CO-RE process sensor, plus BCC for the socket and file sensors
    while they are still BCC programs (the BCC part goes when they move to CO-RE)."""
    require_core()
    try:
        import bcc  # noqa: F401
    except ImportError:
        require(False, "bcc python module (python3-bpfcc, venv with --system-site-packages)")
    require(os.path.isdir("/sys/kernel/tracing/events"), "tracefs mounted at /sys/kernel/tracing")
    require(os.path.exists(f"/lib/modules/{os.uname().release}/build"), "kernel headers link")


def require_core() -> None:
    """CO-RE sensors: root, the kernel's BTF, libbpf, and the objects `make bpf` builds."""
    require_root()
    require(os.path.exists("/sys/kernel/btf/vmlinux"), "kernel BTF at /sys/kernel/btf/vmlinux")
    from podtrail.bpf.libbpf import BpfError, lib
    from podtrail.bpf.objects import OBJ_DIR

    try:
        lib()
    except BpfError as e:
        require(False, str(e))
    require(any(OBJ_DIR.glob("*.bpf.o")), "compiled BPF objects (make bpf)")


@pytest.fixture
def containers() -> Iterator[list]:
    """Containers a test starts; all destroyed afterwards."""
    from containers import Container

    started: list[Container] = []
    yield started
    for c in started:
        c.destroy()
