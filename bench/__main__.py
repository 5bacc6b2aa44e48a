"""``python -m bench NAME [ARGS...]`` (``make bench ARGS="NAME ..."``): run one benchmark, which
prints its figures and its ratio to the reference named in its issue; with no NAME, list them.
Benchmarks are run one at a time on purpose: two at once measure each other."""

from __future__ import annotations

import pkgutil
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
NOT_BENCHMARKS = {"process_samples"}


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name not in NOT_BENCHMARKS)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench NAME [ARGS...]   (NAME --help for its options)\nbenchmarks: " + ", ".join(names()))
        return 0 if argv else 2
    name = argv[0]
    if name not in names():
        print(f"bench: no benchmark {name!r} (one of: {', '.join(names())})", file=sys.stderr)
        return 2
    sys.argv = [f"bench.{name}", *argv[1:]]
    runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
