#!/usr/bin/env bash
# Installs and mounts everything podtrail needs on a fresh Debian 12 node (run as root).
# Idempotent: every step checks before it acts.
set -euo pipefail

APT_PACKAGES=(
  python3-bpfcc python3-audit python3-venv python3-dev
  linux-headers-amd64 runc busybox-static auditd audispd-plugins
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

# BCC compiles at load time and wants headers at /lib/modules/$(uname -r)/build. Debian ships
# headers of another build; podtrail's programs read no kernel struct, so any headers do.
kdir="/lib/modules/$(uname -r)"
if [ ! -e "$kdir/build/include" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$hdr" ] && [ -n "$common" ]; then
    mkdir -p "$kdir"
    ln -sfn "$hdr" "$kdir/build"
    ln -sfn "$common" "$kdir/source"
  fi
fi

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
