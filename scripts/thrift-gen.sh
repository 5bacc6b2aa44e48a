#!/usr/bin/env bash
# Generates podtrail's osquery Thrift bindings from podtrail/tables/osquery_extension.thrift
# with Debian's thrift-compiler (0.17): `make thrift` writes them into the tree;
# tests/osquery/test_thrift_idl.py writes them elsewhere and compares (staleness check).
#   usage: scripts/thrift-gen.sh [DEST]   (default podtrail/tables/osquery_thrift)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-podtrail/tables/osquery_thrift}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
thrift --gen py -out "$tmp" podtrail/tables/osquery_extension.thrift
rm -rf "$dest"
mkdir -p "$dest"
cp "$tmp"/podtrail/tables/osquery_thrift/*.py "$dest"/
