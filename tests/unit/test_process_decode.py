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


def test_argv_limits_apply_to_the_whole_argv_read() -> None:
    from podtrail.bpf.process import split_args

    raw = b"a\0" + b"b" * 10 + b"\0c\0d\0"
    assert split_args(raw, 4, 8, 256) == (["a", "b" * 10, "c", "d"], False)
    assert split_args(raw, 4, 3, 256) == (["a", "b" * 10, "c"], True)
    assert split_args(raw, 4, 8, 5) == (["a", "bbbb", "c", "d"], True)
    assert split_args(raw[:6], 4, 8, 256) == (["a", "bbbb"], False)  # cut by the kernel's byte cap: its flag says so
    ev = ProcessDecoder(max_args=2).decode(sample("/bin/x", "/", "/bin/x", ["/bin/x", "1", "2"]))
    assert ev is not None and ev["argv"] == ["/bin/x", "1"] and ev["args_truncated"] is True


def test_helpers() -> None:
    assert absolute("./t", "/a/b") == "/a/b/t" and absolute("../t", "/a/b") == "/a/t"
    assert absolute("/bin/mkfifo", "/tmp") == "/bin/mkfifo" and absolute("t", "") == "t"
    assert tty_name("pts12") == "pts/12" and tty_name("tty1") == "tty1" and tty_name("console") == "console"
