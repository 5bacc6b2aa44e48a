"""Native accelerators: optional C twins of hot pure-Python functions.

Each ``podtrail/**/_*.c`` builds into an extension module (setup.py). The Python function it
speeds up stays as the reference (tests hold the two equal) and as the fallback where the module
was not built; the agent says at start which ones are missing. ``PODTRAIL_NATIVE=0`` turns them
all off (benchmarks compare the two paths in one run)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).parent
_missing: dict[str, str] = {}


def enabled() -> bool:
    return os.environ.get("PODTRAIL_NATIVE", "1") != "0"


def load(name: str) -> ModuleType | None:
    """The extension module ``name``, or None (remembered for ``missing``) when it is not built
    or turned off."""
    if not enabled():
        _missing[name] = "turned off (PODTRAIL_NATIVE=0)"
        return None
    try:
        return importlib.import_module(name)
    except ImportError as e:
        _missing[name] = f"not built ({e}); run `make setup`"
        return None


def missing() -> dict[str, str]:
    """Modules asked for that run as pure Python, and why."""
    return dict(_missing)


def sources() -> list[Path]:
    """The C sources of every accelerator in this tree (none in an installed wheel)."""
    return sorted(p for p in PACKAGE.rglob("_*.c") if not p.name.endswith(".bpf.c"))


def module_name(src: Path) -> str:
    return ".".join(src.relative_to(PACKAGE.parent).with_suffix("").parts)
