#!/usr/bin/env bash
# Compiles every podtrail/bpf/*.bpf.c into podtrail/bpf/obj/*.bpf.o (CO-RE: once, at build time,
# against a vmlinux.h generated from BTF; the objects load on any BTF kernel). Writes
# podtrail/bpf/obj/SOURCES.sha256, the hash of the sources they were built from, which
# tests/spine/test_bpf_build.py recomputes to catch a stale object.
set -euo pipefail
cd "$(dirname "$0")/.."
BTF=${BTF:-/sys/kernel/btf/vmlinux}
OUT=podtrail/bpf/obj
GEN=build/bpf
CLANG=${CLANG:-clang}
mkdir -p "$OUT" "$GEN"
if [ ! -s "$GEN/vmlinux.h" ] || [ "$BTF" -nt "$GEN/vmlinux.h" ]; then
  bpftool btf dump file "$BTF" format c > "$GEN/vmlinux.h.tmp"
  mv "$GEN/vmlinux.h.tmp" "$GEN/vmlinux.h"
fi
for src in podtrail/bpf/*.bpf.c; do
  obj="$OUT/$(basename "${src%.c}").o"
  "$CLANG" -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -Wno-unused-function \
    -I "$GEN" -I podtrail/bpf/include -c "$src" -o "$obj.tmp"
  mv "$obj.tmp" "$obj"
done
python3 - <<'PY' > "$OUT/SOURCES.sha256.tmp"
import sys
sys.path.insert(0, ".")
from podtrail.bpf.objects import sources_digest
print(sources_digest())
PY
mv "$OUT/SOURCES.sha256.tmp" "$OUT/SOURCES.sha256"
