#!/usr/bin/env bash
# Builds the native accelerators (every podtrail/**/_*.c, see setup.py) in place, next to their
# sources, for the venv's Python. Incremental: setuptools rebuilds a module only when its source
# is newer. Warnings are errors here (CI), not in a user's `pip install`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYTHONWARNINGS=ignore CFLAGS="${CFLAGS:-} -Werror" "$PY" setup.py -q build_ext --inplace
