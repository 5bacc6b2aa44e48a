"""Where the compiled CO-RE objects live, and the digest that tells a stale one.

``make bpf`` compiles ``podtrail/bpf/*.bpf.c`` into ``podtrail/bpf/obj/*.bpf.o`` and records
``sources_digest()`` of the sources next to them; a test recomputes it, so an object built from
an older ``.bpf.c`` or header cannot ship unnoticed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BPF_DIR = Path(__file__).parent
OBJ_DIR = BPF_DIR / "obj"
DIGEST_FILE = OBJ_DIR / "SOURCES.sha256"


def source_files() -> list[Path]:
    return sorted([*BPF_DIR.glob("*.bpf.c"), *(BPF_DIR / "include").glob("*.h")])


def sources_digest() -> str:
    """sha256 over the names and contents of every BPF source and header, in name order."""
    h = hashlib.sha256()
    for p in source_files():
        h.update(p.relative_to(BPF_DIR).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def object_path(name: str) -> Path:
    """The compiled object for ``name`` (``process`` → ``obj/process.bpf.o``)."""
    return OBJ_DIR / f"{name}.bpf.o"


def missing_message(name: str) -> str:
    return f"{object_path(name)} is missing: build the BPF objects with `make bpf` (needs clang, bpftool)"
