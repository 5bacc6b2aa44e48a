"""Every native accelerator in the tree is built from its current source and imports: a C
source edited without `make setup`, or one that failed to build, fails here instead of the
agent silently running the pure-Python fallback."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from podtrail import native


@pytest.mark.parametrize("src", native.sources(), ids=lambda p: p.name)
def test_module_is_built_from_its_current_source(src) -> None:  # type: ignore[no-untyped-def]
    name = native.module_name(src)
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, f"{name} not built: run `make setup`"
    assert spec.origin.endswith(".so"), f"{name} resolves to {spec.origin}, not an extension"
    from pathlib import Path
    assert Path(spec.origin).stat().st_mtime >= src.stat().st_mtime, f"{name} older than {src.name}: run `make setup`"
    importlib.import_module(name)


def test_turned_off_modules_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODTRAIL_NATIVE", "0")
    assert native.load("podtrail._any_accelerator") is None
    assert "PODTRAIL_NATIVE=0" in native.missing()["podtrail._any_accelerator"]


def test_a_missing_module_is_reported() -> None:
    assert native.load("podtrail._no_such_accelerator") is None
    assert "not built" in native.missing()["podtrail._no_such_accelerator"]
