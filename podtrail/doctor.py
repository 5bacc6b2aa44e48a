"""Checks behind ``podtrail doctor``: can a sensor run here, and if not, what to do.

Each check is a small function returning a ``Check``; other parts of podtrail (Kubernetes,
auditd) add theirs to ``CHECKS``. The verdict names the source ``podtrail run --source auto``
would pick and why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podtrail.bpf.runtime import is_mounted
from podtrail.enrich.cgroup_index import cgroup2_mount


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    needed_by: str = ""  # "ebpf", "auditd" or "" (informational)


def check_root() -> Check:
    ok = os.geteuid() == 0
    return Check("privileges", ok, "running as root" if ok else f"running as uid {os.geteuid()}",
                 "run as root, or grant CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE (and CAP_SYS_ADMIN on kernels < 5.8)", "ebpf")


MIN_KERNEL = (5, 19)  # BTF tracepoints, ring buffer, bpf_loop (the path walk), ring-buffer dynptrs


def check_kernel() -> Check:
    rel = os.uname().release
    try:
        major, minor = (int(x) for x in rel.split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    ok = (major, minor) >= MIN_KERNEL
    need = ".".join(map(str, MIN_KERNEL))
    return Check("kernel", ok, f"Linux {rel}" + ("" if ok else f" (the CO-RE sensor needs {need}+: BTF tracepoints, ring buffer, bpf_loop)"),
                 "use the auditd source on this kernel", "ebpf")


def check_btf() -> Check:
    ok = os.path.exists("/sys/kernel/btf/vmlinux")
    return Check("btf", ok, "/sys/kernel/btf/vmlinux present" if ok else "no /sys/kernel/btf/vmlinux: the kernel was built without CONFIG_DEBUG_INFO_BTF, CO-RE objects cannot be relocated",
                 "use a kernel with BTF (every major distribution since 2020), or the auditd source", "ebpf")


def check_tracefs() -> Check:
    ok = os.path.isdir("/sys/kernel/tracing/events")
    return Check("tracefs", ok, "mounted at /sys/kernel/tracing" if ok else "not mounted",
                 "mount -t tracefs tracefs /sys/kernel/tracing", "ebpf")


def check_mounts() -> Check:
    missing = [p for p in ("/sys/kernel/debug", "/sys/fs/bpf") if not is_mounted(p)]
    return Check("debugfs/bpffs", not missing, "mounted" if not missing else f"not mounted: {', '.join(missing)}",
                 "mount -t debugfs debugfs /sys/kernel/debug; mount -t bpf bpf /sys/fs/bpf")


def check_libbpf() -> Check:
    from podtrail.bpf.libbpf import BpfError, lib

    try:
        lib()
    except BpfError as e:
        return Check("libbpf", False, str(e), "apt-get install libbpf1", "ebpf")
    return Check("libbpf", True, "libbpf.so.1 loaded")


def check_objects() -> Check:
    from podtrail.bpf.objects import OBJ_DIR, missing_message, object_path

    for name in ("probe", "process"):
        if not object_path(name).exists():
            return Check("bpf objects", False, missing_message(name), "make bpf (or install a package built with it)", "ebpf")
    return Check("bpf objects", True, f"compiled CO-RE objects in {OBJ_DIR}")


def check_bpf_load() -> Check:
    """Actually load and attach the probe object (a BTF tracepoint reading task structs): the
    only real proof that BTF, the verifier, and attach work here."""
    if not (os.geteuid() == 0 and os.path.exists("/sys/kernel/btf/vmlinux")):
        return Check("bpf load", False, "skipped (needs root and BTF)", "fix the checks above", "ebpf")
    from podtrail.bpf.libbpf import BpfError, BpfObject
    from podtrail.bpf.objects import object_path

    try:
        with BpfObject(object_path("probe")) as obj:
            obj.load()
            obj.attach()
    except BpfError as e:
        lines = str(e).strip().splitlines() or ["unknown error"]
        last = lines[0] + (f" ({lines[-1]})" if len(lines) > 1 else "")
        return Check("bpf load", False, f"cannot load a CO-RE program: {last}",
                     "check kernel lockdown, seccomp/LSM policy and capabilities", "ebpf")
    return Check("bpf load", True, "a CO-RE program loaded and attached (tp_btf/sched_process_exec)")


def check_cgroup() -> Check:
    m = cgroup2_mount()
    if m:
        return Check("cgroup v2", True, f"cgroup2 at {m}: container identity from cgroup ids")
    return Check("cgroup v2", False, "no cgroup2 mount: container identity from /proc/<pid>/cgroup (slower, races with short-lived processes)")


def check_auditd() -> Check:
    path = shutil.which("auditd") or shutil.which("auditctl")
    if not path:
        return Check("auditd", False, "auditd not installed", "apt-get install auditd (fallback source)", "auditd")
    r = subprocess.run(["auditctl", "-s"], capture_output=True, text=True) if shutil.which("auditctl") else None
    detail = "installed" + (f"; {' '.join(r.stdout.split()[:2])}" if r is not None and r.returncode == 0 else "")
    return Check("auditd", True, detail, needed_by="auditd")


def check_kubernetes() -> Check:
    from podtrail.enrich.k8s.doctor import check_kubernetes as k8s

    return k8s()


CHECKS: list[Callable[[], Check]] = [
    check_root, check_kernel, check_btf, check_tracefs, check_mounts, check_libbpf, check_objects,
    check_bpf_load, check_cgroup, check_auditd, check_kubernetes,
]


def verdict(results: list[Check]) -> tuple[str | None, str]:
    """Which source `--source auto` would run, and why; (None, what to do) when none can."""
    ebpf_bad = [c for c in results if c.needed_by == "ebpf" and not c.ok]
    audit_bad = [c for c in results if c.needed_by == "auditd" and not c.ok]
    if not ebpf_bad:
        return "ebpf", "every eBPF requirement is met and a test program loaded"
    why = "; ".join(f"{c.name}: {c.detail}" for c in ebpf_bad)
    if not audit_bad:
        return "auditd", f"eBPF cannot run ({why}); auditd is available"
    fixes = "; ".join(c.fix for c in ebpf_bad + audit_bad if c.fix)
    return None, f"no source can run: {why}. To fix: {fixes}"


# -- outputs and spool: what `podtrail run` will deliver to, checked the way it connects --------

def _connect_check(name: str, host: str, port: int, tls: dict[str, Any] | None = None) -> Check:
    import socket
    import ssl

    try:
        with socket.create_connection((host, port), timeout=3) as s:
            if tls is not None:
                ctx = ssl.create_default_context(cafile=tls.get("ca_file") or None)
                if tls.get("verify") is False:
                    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                if tls.get("client_cert"):
                    ctx.load_cert_chain(tls["client_cert"], tls.get("client_key") or None)
                with ctx.wrap_socket(s, server_hostname=host):
                    pass
    except (OSError, ValueError) as e:
        return Check(name, False, f"cannot connect to {host}:{port}: {e}",
                     "start the receiver or fix host/port/certificates; until then events wait in the spool", "outputs")
    return Check(name, True, f"connected to {host}:{port}" + (" (TLS handshake ok)" if tls is not None else ""))


def output_checks(cfg: Any) -> list[Check]:
    """The config's own check, then each output reached as it would be, then the spool."""
    from urllib.parse import urlsplit

    from podtrail.agent import check_outputs, spool_problem
    from podtrail.config import ConfigError, check

    try:
        check(cfg)
        check_outputs(cfg)
    except ConfigError as e:
        return [Check("config", False, str(e), "fix the configuration", "outputs")]
    out = [Check("config", True, f"{len(cfg.outputs)} output(s) configured")]
    spooled = False
    for i, spec in enumerate(cfg.outputs):
        kind, name = spec.get("type"), f"outputs[{i}]"
        if kind == "syslog":
            spooled = True
            proto = spec.get("protocol", "tcp")
            host, port = spec.get("host", "127.0.0.1"), int(spec.get("port", 514))
            if proto == "udp":
                out.append(Check(name, True, f"syslog udp {host}:{port}: not checkable (UDP has no answer)"))
            else:
                out.append(_connect_check(f"{name} syslog", host, port, spec if proto == "tls" else None))
        elif kind == "webhook":
            spooled = True
            u = urlsplit(spec.get("url", ""))
            port = u.port or (443 if u.scheme == "https" else 80)
            out.append(_connect_check(f"{name} webhook", u.hostname or "", port, spec if u.scheme == "https" else None))
        else:
            out.append(Check(name, True, f"{kind} ({spec.get('format', 'json')})"))
    if spooled:
        problem = spool_problem(cfg.spool_dir)
        if problem:
            out.append(Check("spool", False, problem, "set spool_dir to a writable directory", "outputs"))
        else:
            probe = cfg.spool_dir
            while not os.path.exists(probe):
                probe = os.path.dirname(probe)
            free = shutil.disk_usage(probe).free
            out.append(Check("spool", True, f"{cfg.spool_dir}: writable, {free // (1 << 20)} MiB free"))
    return out
