"""Native accelerators. Every ``podtrail/**/_*.c`` (BPF sources end in ``.bpf.c`` and are not
these) is a CPython extension module named after its path: ``podtrail/bpf/_ring.c`` is
``podtrail.bpf._ring``. Each has a pure-Python twin that stays the tested reference and the
fallback (``podtrail.native``); ``make setup`` builds them in place, ``pip install`` into the wheel.
Everything else about the package is in pyproject.toml."""

from pathlib import Path

from setuptools import Extension, setup


def _extensions() -> list[Extension]:
    here = Path(__file__).parent
    found = []
    for src in sorted((here / "podtrail").rglob("_*.c")):
        if src.name.endswith(".bpf.c"):
            continue
        rel = src.relative_to(here)
        found.append(Extension(".".join(rel.with_suffix("").parts), [str(rel)],
                               extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                                   "-Wno-missing-field-initializers"]))
    return found


setup(ext_modules=_extensions())
