#!/usr/bin/env bash
# Installs and mounts everything podtrail needs on a fresh Debian 12 node (run as root).
# Idempotent: every step checks before it acts.
set -euo pipefail

# CO-RE build (make bpf): clang, bpftool (vmlinux.h from BTF), libbpf-dev (bpf_helpers.h);
# run time: libbpf1 only.
APT_PACKAGES=(
  clang llvm bpftool libbpf-dev libbpf1
  python3-audit python3-venv python3-dev
  runc busybox-static dash auditd audispd-plugins
  rsyslog rsyslog-gnutls iproute2 systemd procps
  thrift-compiler podman buildah mmdebstrap
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The group that may query the local API socket (osquery.api_socket_group, default podtrail),
# as deploy/systemd/podtrail.sysusers makes it on a systemd install.
getent group podtrail >/dev/null || groupadd --system podtrail

mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
# In CI the tests start their own auditd (only one process may own the audit socket), so a
# system auditd that the package install started is stopped there; elsewhere it is left alone.
if [ "${CI:-}" = "true" ]; then
  if command -v systemctl >/dev/null && systemctl is-active -q auditd 2>/dev/null; then
    systemctl stop auditd || true
  fi
  if pgrep -x auditd >/dev/null; then pkill -x auditd || true; fi
fi
exit 0
