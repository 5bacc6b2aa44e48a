"""The struct-based ``ProcessDecoder`` gives exactly the events of the ctypes reading it replaced
(process_decode_ref.py): same keys in the same order, same values and types, an ``EventDict``
with a fresh ``event_id`` from the shared counter, and the same samples refused; on synthetic
samples and thousands of hostile variants (invalid UTF-8, NULs, bad offsets, truncation). The
real kernel's samples are checked the same way in tests/spine/test_process_decode_real.py."""

from __future__ import annotations

import random
import struct
from typing import Any

from process_decode_ref import RefDecoder, mutate

from bench.process_samples import exec_sample, header_sample
from podtrail.bpf.process import ARGS_OFF, EV_EXIT, EV_FORK, F_EXIT_KNOWN, ExecFixed, ProcessDecoder
from podtrail.model.context import EventDict


def outcome(dec: Any, raw: bytes) -> Any:
    try:
        ev = dec.decode(raw)
    except Exception:  # the reader counts it as decode_error: both must refuse the same samples
        return "refused"
    if ev is None:
        return None
    assert type(ev) is EventDict
    return [(k, type(v), v) for k, v in ev.items() if k != "event_id"]


def assert_same(samples: list[bytes], **limits: int) -> int:
    new, ref = ProcessDecoder(**limits), RefDecoder(**limits)
    ref.clock.offset = new.clock.offset
    ids = set()
    for raw in samples:
        got, want = outcome(new, raw), outcome(ref, raw)
        assert got == want, raw
        if got not in (None, "refused"):
            ids.add(new.decode(raw)["event_id"])
    assert len(ids) == sum(1 for raw in samples if outcome(new, raw) not in (None, "refused"))
    return len(ids)


def cut_blob(raw: bytes, size: int) -> bytes:
    """The sample with its argv bytes cut to ``size`` (args_size says so)."""
    b = bytearray(raw[:ARGS_OFF + size])
    struct.pack_into("<I", b, ExecFixed.args_size.offset, size)
    return bytes(b)


def seeds() -> list[bytes]:
    return [
        exec_sample("./tool", "/opt/app", "/bin/busybox", ["./tool", "x", "caf\u00e9"]),
        exec_sample("/bin/sh", "/", "/bin/dash", []),
        exec_sample("t", "/" + "d/" * 300, "/usr/bin/t", ["t"] * 50),
        exec_sample("/x", "/", "/x", ["b" * 255]),  # an argument of arg_size - 1 bytes: kept whole
        exec_sample("/x", "/", "/x", ["b" * 256]),  # one byte more: cut
        cut_blob(exec_sample("/x", "/", "/x", ["b" * 300]), 256),  # arg_size bytes, no NUL: cut
        exec_sample("/x", "/", "/x", ["\x01"]),
        header_sample(EV_FORK, 5, 1, 77, 123456789),
        header_sample(EV_EXIT, 5, 1, 77, 123456789) + b"\0" * 1288,
    ]


def test_same_events_as_the_ctypes_reading() -> None:
    assert assert_same(seeds()) == 9


def test_same_events_for_hostile_variants() -> None:
    rng = random.Random(14)
    base = seeds()
    variants = [mutate(rng.choice(base), rng) for _ in range(4000)]
    assert assert_same(variants) > 2000
    assert assert_same(variants[:1000], max_args=3, arg_size=16) > 400
    exit_known = bytearray(base[-1])
    exit_known[52] = F_EXIT_KNOWN
    assert assert_same([bytes(exit_known)]) == 1
