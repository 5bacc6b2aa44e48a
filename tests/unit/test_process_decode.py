"""Decoding process.bpf.c samples (pure): layout, paths written back to front, fd kinds, and
an exec sample without argv (it ends before the struct's tail padding)."""

from __future__ import annotations

from bench.process_samples import exec_sample
from podtrail.bpf.process import (
    F_NO_ENTER,
    F_RUNTIME_SETUP,
    ProcessDecoder,
    absolute,
    kernel_dev,
    tty_name,
)
from podtrail.model.event import validate


def sample(name: str, cwd: str, exe: str, args: list[str], flags: int = 0) -> bytes:
    return exec_sample(name, cwd, exe, args, flags)


def test_exec_sample_decodes_to_the_captured_facts() -> None:
    ev = ProcessDecoder().decode(sample("./tool", "/opt/app", "/bin/busybox", ["./tool", "x"]))
    assert ev is not None
    assert ev["path"] == "/opt/app/tool" and ev["exe_path"] == "/bin/busybox" and ev["cwd"] == "/opt/app"
    assert (ev["stdin"], ev["stdout"], ev["stderr"]) == ("tty", "pipe", "socket")
    assert ev["tty"] == "pts/7" and ev["argv"] == ["./tool", "x"] and ev["exe_dev"] == kernel_dev((8 << 20) | 1)
    assert validate(ev) == []


def test_exec_sample_without_argv() -> None:
    ev = ProcessDecoder().decode(sample("/bin/sh", "/", "/bin/dash", [], F_NO_ENTER | F_RUNTIME_SETUP))
    assert ev is not None and ev["path"] == "/bin/sh" and ev["cwd"] == "/" and "argv" not in ev
    assert ev["runtime_setup"] is True


def test_helpers() -> None:
    assert absolute("./t", "/a/b") == "/a/b/t" and absolute("../t", "/a/b") == "/a/t"
    assert absolute("/bin/mkfifo", "/tmp") == "/bin/mkfifo" and absolute("t", "") == "t"
    assert tty_name("pts12") == "pts/12" and tty_name("tty1") == "tty1" and tty_name("console") == "console"
