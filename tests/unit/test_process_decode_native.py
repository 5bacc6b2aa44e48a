"""The C process decoder (podtrail/bpf/_process.c) and the C ring-buffer callback
(podtrail/bpf/_ring.c) against the Python decoder they stand in for (``ProcessDecoder.decode``,
the reference): the same events (keys in the same order, values and types), the same samples
refused, on synthetic samples, thousands of hostile variants (tests/unit/process_decode_ref.py's
``mutate``) and hypothesis-made samples with odd bytes in comm, name, cwd, tty and argv, odd
offsets, counts and sizes, and truncation anywhere. Real kernel samples:
tests/spine/test_process_decode_real.py. Both paths run: the C modules must be built."""

from __future__ import annotations

import posixpath
import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from process_decode_ref import FLAG_BITS, mutate
from test_process_decode_equal import seeds

from bench.process_samples import exec_sample, fork_exit_sample
from podtrail.bpf.libbpf import STOPPED
from podtrail.bpf.process import (
    ARGS_OFF,
    CWD_OFF,
    EV_CGROUP_MKDIR,
    EV_EXEC,
    EV_EXIT,
    EV_FORK,
    EXE_OFF,
    F_EXIT_KNOWN,
    HDR_SIZE,
    NATIVE_LAYOUT,
    PT_PATH_MAX,
    ExecFixed,
    ProcessDecoder,
)
from podtrail.model.context import EventDict


def decoders(**limits: int) -> ProcessDecoder:
    dec = ProcessDecoder(**limits)
    assert dec.native is not None, "podtrail.bpf._process is not built (make native) or PODTRAIL_NATIVE=0"
    return dec


def outcome(decode: Any, raw: bytes) -> Any:
    try:
        ev = decode(raw)
    except Exception as e:  # the reader counts it as decode_error: both must refuse the same samples
        return ("refused", type(e))
    if ev is None:
        return None
    assert type(ev) is EventDict
    return [(k, type(v), v) for k, v in ev.items() if k != "event_id"]


def assert_native_same(samples: list[bytes], **limits: int) -> int:
    """C (through ``decode_any``, as the ring callback does) == Python on every sample; the
    number of samples C decoded itself."""
    dec = decoders(**limits)
    own = 0
    for raw in samples:
        assert outcome(dec.decode_any, raw) == outcome(dec.decode, raw), raw
        own += dec.native.decode(raw) is not raw
    return own


def test_the_c_layout_is_the_python_one() -> None:
    from podtrail.bpf import _process

    assert _process.layout() == NATIVE_LAYOUT


def test_seeds_decode_the_same_in_c() -> None:
    assert assert_native_same(seeds()) == 9  # every one decoded in C
    assert assert_native_same(seeds(), max_args=3, arg_size=16) == 9


def test_hostile_variants_decode_the_same_in_c() -> None:
    rng = random.Random(1414)
    base = seeds() + [fork_exit_sample(EV_EXIT, 7, 1, 9, 5, "/srv/a", flags=F_EXIT_KNOWN, result=-9),
                      fork_exit_sample(EV_FORK, 7, 1, 9, 5, "/" + "\xe9" * 300)]
    variants = [mutate(rng.choice(base), rng) for _ in range(6000)]
    assert assert_native_same(variants) > 3000
    assert assert_native_same(variants[:2000], max_args=0, arg_size=1) > 1000
    assert assert_native_same(variants[:2000], max_args=128, arg_size=4096) > 1000


def test_event_ids_come_from_the_shared_counter() -> None:
    from podtrail.model.event import new_event_id

    dec = decoders()
    raw = seeds()[0]
    a, b, c = dec.decode(raw), dec.native.decode(raw), new_event_id()
    prefix, na = a["event_id"].rsplit("-", 1)
    pb, nb = b["event_id"].rsplit("-", 1)
    assert pb == prefix and int(nb, 16) == int(na, 16) + 1 and c == f"{prefix}-{int(nb, 16) + 1:x}"


def test_the_clock_offset_is_read_per_sample() -> None:
    dec = decoders()
    raw = seeds()[-2]
    dec.clock.offset = -10**18 - 7  # negative wall time: floor division as in Python
    assert outcome(dec.decode_any, raw) == outcome(dec.decode, raw)
    dec.clock.offset = 2**70  # past 64 bits
    assert outcome(dec.decode_any, raw) == outcome(dec.decode, raw)


def test_what_c_leaves_to_python() -> None:
    """cgroup samples (on_cgroup), unknown kinds, short samples and an exe_dev os.makedev
    refuses stay bytes: the Python decoder then does what it always did."""
    dec = decoders()
    short = seeds()[0][:HDR_SIZE - 1]
    cgroup = bytearray(seeds()[-1])
    struct.pack_into("<I", cgroup, 24, EV_CGROUP_MKDIR)
    odd_kind = bytearray(seeds()[-1])
    struct.pack_into("<I", odd_kind, 24, 77)
    huge_dev = bytearray(seeds()[0])
    struct.pack_into("<Q", huge_dev, ExecFixed.exe_dev.offset, (2**31) << 20)
    for raw in (short, bytes(cgroup), bytes(odd_kind), bytes(huge_dev)):
        assert dec.native.decode(raw) is raw
        assert outcome(dec.decode_any, raw) == outcome(dec.decode, raw)
    assert outcome(dec.decode, short)[0] == "refused" and outcome(dec.decode, bytes(huge_dev))[0] == "refused"
    with pytest.raises(TypeError):
        dec.native.decode(bytearray(seeds()[0]))  # type: ignore[arg-type]


PATH_BYTES = st.binary(max_size=40) | st.lists(st.sampled_from([b"/", b".", b"..", b"a", b"\xff", b"\xc3\xa9"]),
                                               max_size=30).map(b"".join)


@given(PATH_BYTES)
def test_normpath_is_posixpath_normpath(p: bytes) -> None:
    from podtrail.bpf import _process

    if b"\0" in p:
        return
    want = posixpath.normpath(p.decode("utf-8", "backslashreplace"))
    assert _process.normpath(p).decode("utf-8", "backslashreplace") == want


TEXT = st.binary(max_size=24) | st.sampled_from([b"", b"\xff\xfe", b"a\0b", b"\xc3", b"caf\xc3\xa9", b"\x1b[31m",
                                                 b"../..", b"./t", b"//x", b"pts\xd9\xa3", b"pts12", b"pts"])


@st.composite
def exec_samples(draw: Any) -> bytes:
    args = draw(st.lists(TEXT | st.binary(min_size=200, max_size=300), max_size=8))
    raw = bytearray(exec_sample("t", "/", "/x", []))
    raw[24:28] = struct.pack("<I", draw(st.sampled_from((EV_EXEC, EV_EXEC, EV_FORK, EV_EXIT))))
    flags = 0
    for bit in draw(st.lists(st.sampled_from((*FLAG_BITS, 1 << 31)), max_size=4)):
        flags |= bit
    struct.pack_into("<IiI", raw, 44, 0, draw(st.sampled_from((0, -2, 1, -(2**31), 2**31 - 1))), flags)
    raw[56:72] = draw(TEXT).ljust(16, b"\0")[:16]
    e = ExecFixed
    raw[e.name.offset:e.name.offset + 512] = draw(TEXT | st.binary(min_size=500, max_size=512)).ljust(512, b"\0")[:512]
    raw[e.tty.offset:e.tty.offset + 32] = draw(TEXT).ljust(32, b"\0")[:32]
    for field, base in ((e.cwd_off, CWD_OFF), (e.exe_off, EXE_OFF)):
        text = draw(TEXT | st.binary(min_size=1000, max_size=1100))[:PT_PATH_MAX]
        raw[base + PT_PATH_MAX - len(text):base + PT_PATH_MAX] = text
        off = draw(st.sampled_from((PT_PATH_MAX - len(text), 0, PT_PATH_MAX - 1, PT_PATH_MAX, 65535)))
        struct.pack_into("<H", raw, field.offset, off)
    raw[e.fd_kind.offset:e.fd_kind.offset + 4] = draw(st.binary(min_size=4, max_size=4))
    struct.pack_into("<Q", raw, e.exe_dev.offset, draw(st.sampled_from((0, (8 << 20) | 1, 2**64 - 1, (2**31 - 1) << 20))))
    blob = b"".join(a + b"\0" for a in args)
    if draw(st.booleans()):
        blob = blob[:draw(st.integers(0, len(blob)))]
    struct.pack_into("<II", raw, e.argc.offset, draw(st.sampled_from((len(args), 0, 1, len(args) + 2, 2**32 - 1))),
                     draw(st.sampled_from((len(blob), 0, len(blob) // 2, len(blob) + 9, 2**32 - 1))))
    out = bytes(raw[:ARGS_OFF]) + blob
    cut = draw(st.none() | st.integers(0, len(out)))
    return out if cut is None else out[:cut]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(exec_samples(), st.sampled_from(((32, 256), (3, 16), (0, 1), (128, 4096))))
def test_hypothesis_samples_decode_the_same(raw: bytes, limits: tuple[int, int]) -> None:
    dec = decoders(max_args=limits[0], arg_size=limits[1])
    assert outcome(dec.decode_any, raw) == outcome(dec.decode, raw)


# -- the ring callback's batch (podtrail.bpf._ring), fed as libbpf would call it ----------------


def test_the_callback_collects_events_and_leaves_the_rest_as_bytes() -> None:
    from podtrail.bpf import _ring

    dec = decoders()
    cgroup = bytearray(seeds()[-1])
    struct.pack_into("<I", cgroup, 24, EV_CGROUP_MKDIR)
    samples = [*seeds(), bytes(cgroup), b"\x01" * 10]
    batch = _ring.Batch(dec.native, 100)
    assert all(_ring.feed(batch, raw) == 0 for raw in samples)
    items, errors, left = batch.take()
    assert errors == 0 and left == 2 and batch.take() == ([], 0, 0)
    assert [type(i) for i in items] == [EventDict] * 9 + [bytes, bytes]
    assert items[9:] == samples[9:]
    for raw, ev in zip(samples, items[:9], strict=False):
        assert outcome(lambda _r, ev=ev: ev, raw) == outcome(dec.decode, raw)
    plain = _ring.Batch(None, 2)  # no decoder: bytes only; the cap stops the consume
    assert [_ring.feed(plain, raw) for raw in samples[:3]] == [0, STOPPED, STOPPED]
    assert plain.take() == (samples[:3], 0, 3)


def test_a_batch_without_a_c_decoder_is_refused() -> None:
    from podtrail.bpf import _ring

    with pytest.raises(AttributeError):
        _ring.Batch(object())
    with pytest.raises(ValueError):
        _ring.Batch(None, 0)


def test_the_reader_hands_a_batch_over_in_order_and_counts_what_it_drops() -> None:
    """RingReader._take: C-made events pass as they are, bytes go to the Python decoder (a
    cgroup sample feeds on_cgroup and is no event), a refused sample and a sample the C side
    could not store are counted as decode errors, and the events leave in one call, in order."""
    from podtrail import metrics
    from podtrail.bpf.runtime import RingReader

    learned: list[tuple[int, str | None]] = []
    dec = ProcessDecoder(lambda cid, path: learned.append((cid, path)))
    assert dec.native is not None
    reader = RingReader("test-ring-reader", dec.decode, 50, dec.native)
    handed: list[list[Any]] = []
    reader._emit_batch = handed.append
    dropped = metrics.DROPPED.labels("test-ring-reader", "decode_error")
    before = dropped._value.get()
    cgroup = bytearray(fork_exit_sample(EV_EXIT, 1, 1, 4242, 5, "/kubepods/x"))
    struct.pack_into("<I", cgroup, 24, EV_CGROUP_MKDIR)
    cgroup[HDR_SIZE:HDR_SIZE + 12] = b"/kubepods/p\0"
    a, b = seeds()[0], seeds()[-1]
    items = [dec.native.decode(a), bytes(cgroup), b"\x01" * 5, dec.native.decode(b), seeds()[1]]
    reader._take(items, 2, 3)
    assert reader.samples == 7 and dropped._value.get() - before == 3
    assert learned == [(4242, "/kubepods/p")]
    assert len(handed) == 1 and [e["action"] for e in handed[0]] == ["exec", "exit", "exec"]
    assert handed[0][0] is items[0] and handed[0][2]["path"] == "/bin/sh"
    reader._take([items[0], items[3]], 0, 0)  # all made in C: handed over as they are
    assert handed[-1] == [items[0], items[3]]
    reader._deliver(a)  # a sample from elsewhere (a held fork): through C as well
    assert handed[-1][0]["argv"] == ["./tool", "x", "caf\u00e9"]


NO_MEMORY = r"""
import sys, _testcapi
from test_process_decode_equal import seeds
from test_process_decode_native import decoders, outcome
from bench.process_samples import fork_exit_sample
from podtrail.bpf import _ring
from podtrail.bpf.process import EV_EXIT, F_EXIT_KNOWN

samples = [*seeds(), fork_exit_sample(EV_EXIT, 7, 1, 9, 5, "/srv/a", flags=F_EXIT_KNOWN, result=-9)]
failed = 0
for raw in samples:
    for start in range(60):
        dec = decoders()  # fresh caches: the allocating paths run
        batch = _ring.Batch(dec.native, 100)
        _testcapi.set_nomemory(start, start + 1)
        try:
            dec.native.decode(raw)
        except MemoryError:
            failed += 1
        finally:
            _testcapi.remove_mem_hooks()
        _testcapi.set_nomemory(start, start + 1)
        try:
            _ring.feed(batch, raw)
        except MemoryError:
            pass
        finally:
            _testcapi.remove_mem_hooks()
        items, errors, _ = batch.take()
        assert len(items) + errors <= 1
        if items:
            item = dec.decode(items[0]) if type(items[0]) is bytes else items[0]
            assert outcome(lambda _r, i=item: i, raw) == outcome(dec.decode, raw)
        assert outcome(dec.native.decode, raw) == outcome(dec.decode, raw)
print(failed)
"""


def test_no_memory_at_any_allocation_is_an_error_or_a_fallback_never_a_crash() -> None:
    """Every allocation of a decode and of the callback failed in turn (_testcapi's hooks, in
    a process of its own: they fail every thread's allocations): decode raises MemoryError,
    the callback keeps the sample as bytes or counts it, and the decoder stays correct after
    (its caches and templates intact). Run under PYTHONMALLOC=debug -X dev too."""
    pytest.importorskip("_testcapi")
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    root = here.parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(root)]), "PYTHONMALLOC": "debug"}
    r = subprocess.run([sys.executable, "-X", "dev", "-c", NO_MEMORY], cwd=root, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split()[-1]) > 100


def test_objects_used_before_init_raise_instead_of_crashing() -> None:
    from podtrail.bpf import _process, _ring

    raw = seeds()[0]
    bare = _process.Decoder.__new__(_process.Decoder)
    with pytest.raises(RuntimeError):
        bare.decode(raw)
    batch = _ring.Batch(bare)  # the callback keeps the sample as bytes for Python
    assert _ring.feed(batch, raw) == 0 and batch.take() == ([raw], 0, 1)
    empty = _ring.Batch.__new__(_ring.Batch)
    assert _ring.feed(empty, raw) == 0
    with pytest.raises(RuntimeError):
        empty.take()
