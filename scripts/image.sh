#!/usr/bin/env bash
# Builds podtrail's image with podman: `make image` (and tests/deploy/test_image.py) run this.
#   IMAGE  the tag to build            (default localhost/podtrail:dev)
#   BASE   the Debian 12 base image    (default localhost/debian:bookworm, made here from
#          Debian's packages with mmdebstrap when missing: no image registry is needed)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/podtrail:dev}
BASE=${BASE:-localhost/debian:bookworm}

if ! podman image exists "$BASE"; then
  case "$BASE" in
    localhost/*)
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      # Like debian:bookworm-slim: no man pages, docs or locales, no apt caches.
      mmdebstrap --quiet --variant=minbase --mode=root \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*' \
        bookworm "$tmp/base.tar"
      podman import --quiet "$tmp/base.tar" "$BASE" >/dev/null
      ;;
    *) podman pull "$BASE" ;;
  esac
fi
# The host's CA bundle as an optional build secret: pip in the builder trusts what this host
# trusts (a TLS-intercepting proxy's CA); secrets are not stored in the image.
secret=()
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$ca" ] && secret=(--secret "id=ca-certificates,src=$ca")
podman build --quiet --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "${secret[@]}" \
  --build-arg BASE="$BASE" -f deploy/docker/Dockerfile -t "$IMAGE" . >/dev/null
echo "$IMAGE $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
