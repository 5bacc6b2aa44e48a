"""The struct-based ``ProcessDecoder`` against the ctypes reading it replaced, on samples the
real kernel wrote (process.bpf.c through its ring buffer): folded execs, a failed exec, a
relative name, long and many arguments, hostile argv bytes, a cwd deeper than PT_PATH_MAX, a
fork that never execs, exit codes and a fatal signal; then hostile variants of those samples.
Same keys in the same order, same values (tests/unit/test_process_decode_equal.py). The C
decoder and ring callback (podtrail/bpf/_process.c, _ring.c) are held to the Python decoder on
the same real samples (tests/unit/test_process_decode_native.py), and run live on the ring."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import require_core

sys.path.insert(0, str(Path(__file__).parent.parent / "unit"))
from process_decode_ref import mutate  # noqa: E402
from test_process_decode_equal import assert_same  # noqa: E402
from test_process_decode_native import assert_native_same, outcome  # noqa: E402

from podtrail.bpf.libbpf import RingBuffer  # noqa: E402
from podtrail.bpf.process import EV_EXEC, EV_EXIT, EV_FORK, ProcessDecoder, build_process_source  # noqa: E402
from podtrail.config import SensorConfig  # noqa: E402


def workload(tmp: Path) -> None:
    bb = "/bin/busybox"
    for _ in range(5):
        subprocess.run([bb, "true", "decode-real"], check=True)
    subprocess.run([bb, "true", *(["many"] * 40), "x" * 300], check=True)  # > max_args, > arg_size
    os.symlink(bb, tmp / "true")
    subprocess.run(["./true", "relative"], cwd=tmp, check=True)
    deep = tmp / "/".join(["d" * 60] * 20)  # deeper than PT_PATH_MAX (1024)
    deep.mkdir(parents=True)
    subprocess.run([bb, "true", "deep"], cwd=deep, check=True)
    subprocess.run([os.fsencode(bb), b"true", b"\xff\xfe", b"a\nb\x1b[31m", "caf\u00e9".encode()], check=True)
    subprocess.run([bb, "sh", "-c", "exit 7"])
    p = subprocess.Popen([bb, "sleep", "30"])
    p.send_signal(signal.SIGKILL)
    p.wait()
    try:
        subprocess.run([str(tmp / "missing")])
    except FileNotFoundError:
        pass
    pid = os.fork()
    if pid == 0:
        os._exit(3)  # a fork that never execs: held, then sent before its exit
    os.waitpid(pid, 0)


def test_real_samples_decode_the_same() -> None:
    require_core()
    src = build_process_source(SensorConfig(ringbuf_pages=4096))
    src.load()
    assert src.obj is not None
    got: list[bytes] = []
    try:
        with tempfile.TemporaryDirectory(prefix="podtrail-decode-") as d:
            workload(Path(d))
        rb = RingBuffer(src.obj.map("events"), got.append)
        rb.consume()
        rb.close()
    finally:
        src.close()
    types = {int.from_bytes(raw[24:28], "little") for raw in got}
    assert {EV_EXEC, EV_FORK, EV_EXIT} <= types
    results = {int.from_bytes(raw[48:52], "little", signed=True) for raw in got if raw[24] == EV_EXEC}
    assert 0 in results and -2 in results  # a successful and a failed exec
    assert assert_same(got) >= 20
    assert assert_same(got, max_args=3, arg_size=16) >= 20
    rng = random.Random(14)
    variants = [mutate(rng.choice(got), rng) for _ in range(3000)]
    assert assert_same(variants) > 1500
    # C: every real exec, fork and exit is decoded in C, to the Python decoder's event
    kinds = sum(1 for raw in got if int.from_bytes(raw[24:28], "little") in (EV_EXEC, EV_FORK, EV_EXIT))
    assert assert_native_same(got) == kinds
    assert assert_native_same(got, max_args=3, arg_size=16) == kinds
    assert assert_native_same(variants) > 1500
    # the C callback itself, fed the real samples as libbpf calls it
    from podtrail.bpf import _ring

    dec = ProcessDecoder()
    batch = _ring.Batch(dec.native)
    for raw in got:
        _ring.feed(batch, raw)
    items, errors, left = batch.take()
    assert errors == 0 and len(items) == len(got) and left == 0
    for raw, item in zip(got, items, strict=True):
        assert outcome(lambda _r, item=item: dec.decode(item) if type(item) is bytes else item, raw) == outcome(dec.decode, raw)


def test_the_live_ring_decodes_in_c() -> None:
    """The source's ring buffer with the C callback and decoder: the workload's execs and exits
    arrive as events made in C (bytes only for what C leaves to Python), in one batch per consume."""
    require_core()
    src = build_process_source(SensorConfig(ringbuf_pages=4096))
    src.load()
    assert src.obj is not None and src.native_decoder is not None
    batches: list[list[object]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="podtrail-decode-") as d:
            workload(Path(d))
        rb = RingBuffer(src.obj.map("events"), on_batch=lambda items, errors, left: batches.append(items),
                        decoder=src.native_decoder)
        assert rb.native
        rb.consume()
        rb.close()
    finally:
        src.close()
    items = [i for b in batches for i in b]
    events = [i for i in items if isinstance(i, dict)]
    assert len(events) == len(items)  # nothing left to Python: no cgroup samples here
    mine = [e for e in events if e["action"] == "exec" and "decode-real" in e.get("argv", ())]
    st = os.stat("/bin/busybox")
    assert len(mine) == 5 and all(e["path"] == "/bin/busybox" and e["exe_path"] == os.path.realpath("/bin/busybox")
                                  and (e["exe_inode"], e["exe_dev"]) == (st.st_ino, st.st_dev) for e in mine)
    hostile = [e for e in events if e["action"] == "exec" and "\\xff\\xfe" in e.get("argv", ())]
    assert hostile and hostile[0]["argv"][2:] == ["\\xff\\xfe", "a\nb\x1b[31m", "caf\u00e9"]
    assert any(e["action"] == "exit" and e.get("exit_code") == 7 for e in events)
