"""The process sensor writes its exec and exit samples in place in the ring buffer and leaves
the bytes that carry no fact unwritten (a path buffer's head before the path, a string's tail
after its NUL, padding): they hold whatever the ring held before. This pins that user space
never reads them: real samples from the real kernel, with those bytes replaced by garbage,
decode to the very same events, through the Python decoder and its C twin."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from typing import Any

from conftest import require, require_core

from podtrail.bpf.process import (
    CWD_OFF,
    EV_EXEC,
    EV_EXIT,
    EXE_OFF,
    FORK_CWD,
    HDR_SIZE,
    NAME_OFF,
    PT_PATH_MAX,
    TTY_OFF,
    ExecFixed,
    ProcessDecoder,
)

NAME_BUF, TTY_LEN = 512, 32


def _capture(marker: str) -> list[bytes]:
    """Raw samples of a few real execs and exits (cwd, argv, a failed exec) of this test."""
    from podtrail.bpf.process import build_process_source
    from podtrail.config import SensorConfig

    src = build_process_source(SensorConfig())
    src.native_decoder = None  # every sample through _decode, so the test sees it raw
    raws: list[bytes] = []
    src.load()
    decode = src._decode

    def keep(raw: bytes) -> Any:
        if marker.encode() in raw or (len(raw) > HDR_SIZE and int.from_bytes(raw[24:28], "little") == EV_EXIT):
            raws.append(bytes(raw))
        return decode(raw)

    src._decode = keep
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(lambda e: None, stop))
    t.start()
    try:
        subprocess.run(["/bin/busybox", "true", marker, "two words"], cwd="/tmp", check=True)
        subprocess.run(["/bin/busybox", "sh", "-c", f"cd /usr/lib && /bin/busybox true {marker}"], check=True)
        try:
            subprocess.run([f"/nonexistent/{marker}", marker])
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
        src.close()
    return raws


def _scribble(raw: bytes, rnd: random.Random) -> bytes:
    b = bytearray(raw)

    def garbage(start: int, end: int) -> None:
        b[start:end] = bytes(rnd.randrange(256) for _ in range(max(0, end - start)))

    typ = int.from_bytes(raw[24:28], "little")
    if typ == EV_EXEC:
        cwd_off, exe_off = (int.from_bytes(raw[o:o + 2], "little") for o in (ExecFixed.cwd_off.offset, ExecFixed.exe_off.offset))
        garbage(CWD_OFF, CWD_OFF + min(cwd_off, PT_PATH_MAX))
        garbage(EXE_OFF, EXE_OFF + min(exe_off, PT_PATH_MAX))
        garbage(CWD_OFF + PT_PATH_MAX, EXE_OFF)  # the cwd buffer's slack past the path
        garbage(EXE_OFF + PT_PATH_MAX, EXE_OFF + PT_PATH_MAX + 256)  # and the exe's
        nul = raw.index(b"\0", NAME_OFF, NAME_OFF + NAME_BUF)
        garbage(nul + 1, NAME_OFF + NAME_BUF)
        tnul = raw.index(b"\0", TTY_OFF, TTY_OFF + TTY_LEN)
        garbage(tnul + 1, TTY_OFF + TTY_LEN)
    else:  # fork_t: held_epoch and padding, the cwd buffer's head
        cwd_off = int.from_bytes(raw[HDR_SIZE:HDR_SIZE + 2], "little")
        garbage(HDR_SIZE + 2, FORK_CWD)
        garbage(FORK_CWD, FORK_CWD + min(cwd_off, PT_PATH_MAX))
        garbage(FORK_CWD + PT_PATH_MAX, len(raw))
    comm_nul = raw.index(b"\0", 56, 72) if b"\0" in raw[56:72] else 72
    garbage(comm_nul + 1, 72)
    return bytes(b)


def _facts(ev: Any) -> dict[str, Any]:
    d = dict(ev)
    d.pop("event_id", None)
    return d


def test_unwritten_sample_bytes_are_never_read() -> None:
    require_core()
    marker = f"slack-{os.getpid()}"
    raws = _capture(marker)
    execs = [r for r in raws if int.from_bytes(r[24:28], "little") == EV_EXEC]
    assert len(execs) >= 3 and any(int.from_bytes(r[24:28], "little") == EV_EXIT for r in raws)
    dec = ProcessDecoder(max_args=32, arg_size=256)
    require(dec.native is not None, "podtrail.bpf._process (make native)")
    rnd = random.Random(14)
    for raw in raws:
        want = _facts(dec.decode(raw))
        assert _facts(dec.native.decode(raw)) == want
        for _ in range(5):
            scribbled = _scribble(raw, rnd)
            assert _facts(dec.decode(scribbled)) == want
            assert _facts(dec.native.decode(scribbled)) == want  # the C decoder reads no slack either
    cwds = {dec.decode(r)["cwd"] for r in execs}  # type: ignore[index]
    assert {"/tmp", "/usr/lib"} <= cwds
