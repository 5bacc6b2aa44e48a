"""The libbpf ctypes layer against the real kernel, with the real probe object (probe.bpf.c):
read-only config set before load, map resize, map element access, per-CPU sums, map reuse
between two objects, ring buffer streaming, and a verifier rejection carried in the error."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
from conftest import require_core

from podtrail.bpf.libbpf import BpfError, BpfObject, RingBuffer, SharedMaps
from podtrail.bpf.objects import object_path
from podtrail.bpf.runtime import RingBufferSource, ensure_mounts


@pytest.fixture
def probe():
    require_core()
    ensure_mounts()
    obj = BpfObject(object_path("probe"))
    yield obj
    obj.close()


def test_rodata_config_ring_buffer_and_maps(probe: BpfObject) -> None:
    probe.set_rodata(struct.pack("II", os.getpid(), 0xC0FFEE))
    probe.map("events").set_max_entries(1 << 16)
    probe.load()
    probe.attach()
    assert probe.map("events").max_entries == 1 << 16
    got: list[bytes] = []
    rb = RingBuffer(probe.map("events"), got.append)
    try:
        pids = [subprocess.Popen(["/bin/true"], cwd="/tmp").pid for _ in range(5)]
        for _ in range(20):
            rb.poll(50)
            if len({struct.unpack("IIQ", g)[0] for g in got} & set(pids)) == 5:
                break
    finally:
        rb.close()
    samples = [struct.unpack("IIQ", g) for g in got]
    by_pid = {s[0]: s for s in samples}
    for pid in pids:
        assert by_pid[pid][1] == 0xC0FFEE  # the config reached the kernel
        assert by_pid[pid][2] == os.stat("/tmp").st_ino  # CO-RE read of task->fs->pwd
    assert probe.map("lost").sum_percpu_u64(b"\0" * 4) == 0
    h = probe.map("scratch_hash")
    h.update(struct.pack("I", 1), struct.pack("Q", 7))
    assert h.lookup(struct.pack("I", 1)) == struct.pack("Q", 7)
    assert h.lookup(struct.pack("I", 2)) is None
    assert list(h.keys()) == [struct.pack("I", 1)]
    assert h.delete(struct.pack("I", 1)) and not h.delete(struct.pack("I", 1))
    with pytest.raises(BpfError, match="key is 4 bytes"):
        h.lookup(b"\0")


def test_wrong_rodata_size_is_refused(probe: BpfObject) -> None:
    with pytest.raises(BpfError, match="initial value is 8 bytes, got 4"):
        probe.set_rodata(b"\0" * 4)


def test_shared_map_is_one_map() -> None:
    require_core()
    shared = SharedMaps(("scratch_hash",))
    a, b = BpfObject(object_path("probe")), BpfObject(object_path("probe"))
    try:
        for o in (a, b):
            shared.before_load(o)
            o.load()
            shared.after_load(o)
        a.map("scratch_hash").update(struct.pack("I", 5), struct.pack("Q", 9))
        assert b.map("scratch_hash").lookup(struct.pack("I", 5)) == struct.pack("Q", 9)
    finally:
        a.close()
        b.close()
        shared.close()


def test_shared_maps_close_with_their_last_user() -> None:
    """Each loaded source holds SharedMaps; the fds it dup'ed close when the last one closes."""
    require_core()
    shared = SharedMaps(("scratch_hash",))
    srcs = [RingBufferSource(f"p{i}", "probe", lambda b: None, shared=shared,
                             prepare=lambda o: o.set_rodata(struct.pack("II", os.getpid(), 1))) for i in range(2)]
    for s in srcs:
        s.load()
    fd = shared.fds["scratch_hash"]
    assert shared.users == 2 and os.fstat(fd)
    srcs[0].close()
    assert shared.fds and os.fstat(fd)
    srcs[1].close()
    srcs[1].close()  # idempotent: released once
    assert shared.users == 0 and not shared.fds


def test_verifier_rejection_is_in_the_error(probe: BpfObject) -> None:
    probe.set_autoload("probe_rejected", True)
    with pytest.raises(BpfError) as e:
        probe.load()
    msg = str(e.value)
    assert "cannot load probe" in msg
    assert "invalid" in msg or "R" in msg.splitlines()[-1]  # the verifier's last words
    assert len(msg.splitlines()) > 2


def test_missing_object_says_make_bpf(tmp_path) -> None:
    require_core()
    src = RingBufferSource("x", "nope", lambda b: None, path=tmp_path / "nope.bpf.o")
    with pytest.raises(BpfError, match="make bpf"):
        src.load()


def test_source_streams_and_counts_lost() -> None:
    """RingBufferSource: load with a prepare hook, run until stop, lost() from the kernel."""
    import threading

    require_core()
    out: list[tuple[int, ...]] = []
    src = RingBufferSource("probe", "probe", lambda b: struct.unpack("IIQ", b),
                           prepare=lambda o: o.set_rodata(struct.pack("II", os.getpid(), 1)),
                           ringbuf_bytes=1 << 14, poll_ms=20)
    src.load()
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(out.append, stop))
    t.start()
    try:
        p = subprocess.Popen(["/bin/true"])
        p.wait()
        for _ in range(100):
            if any(s[0] == p.pid for s in out):
                break
            stop.wait(0.02)
    finally:
        stop.set()
        t.join(5)
        src.close()
    assert any(s[0] == p.pid for s in out)
    assert src.lost() == 0


def test_verifier_log_survives_another_libbpf_user(probe: BpfObject) -> None:
    """BCC uses the same libbpf.so.1 and installs its own print function: ours is restored
    for each load, so the verifier's words still reach the error."""
    from podtrail.bpf.libbpf import _PRINT_FN, lib

    other = _PRINT_FN(lambda level, fmt, va: 0)
    lib().c.libbpf_set_print(other)
    probe.set_autoload("probe_rejected", True)
    with pytest.raises(BpfError, match="invalid"):
        probe.load()
