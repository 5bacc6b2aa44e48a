"""The ring buffer read from its mapping (bench/ringbuf_read.py ``MappedRing``, the measured
alternative to libbpf's callback per sample) gives exactly libbpf's samples, on the real
process object: the same records in the same order, and a committed read leaves libbpf none.
Both of libbpf's sample callbacks are held to it: the C one (podtrail.bpf._ring) and the
ctypes one it stands in for (``PODTRAIL_NATIVE=0``)."""

from __future__ import annotations

import platform

import pytest
from conftest import require_core

from bench.ringbuf_read import MAPPED_RING_MACHINES, MappedRing, fill
from podtrail.bpf.libbpf import RingBuffer
from podtrail.bpf.process import build_process_source
from podtrail.config import SensorConfig


@pytest.mark.parametrize("native", [True, False], ids=["c-callback", "ctypes-callback"])
def test_mapped_reader_and_libbpf_give_the_same_samples(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    require_core()
    monkeypatch.setenv("PODTRAIL_NATIVE", "1" if native else "0")
    if platform.machine() not in MAPPED_RING_MACHINES:
        pytest.skip("MappedRing is for x86-64 only")
    src = build_process_source(SensorConfig(ringbuf_pages=4096))
    src.load()
    assert src.obj is not None
    try:
        events = src.obj.map("events")
        mapped = MappedRing(events)
        fill(200)
        peeked = mapped.read(commit=False)
        assert len(peeked) >= 400  # an exec and an exit each
        assert mapped.read(commit=False)[:len(peeked)] == peeked  # not committed: read again, the same
        via_libbpf: list[bytes] = []
        rb = RingBuffer(events, via_libbpf.append)
        assert rb.native is native
        rb.consume()
        assert via_libbpf[:len(peeked)] == peeked  # others' samples may follow
        fill(50)
        mine = mapped.read()
        assert len(mine) >= 100
        got: list[bytes] = []
        rb2 = RingBuffer(events, got.append)
        rb2.consume()
        assert not set(mine) & set(got)  # committed: libbpf starts after them
        fill(60)
        peeked = mapped.read(commit=False)
        batched: list[bytes] = []
        sizes: list[int] = []
        rb3 = RingBuffer(events, on_batch=lambda items, errors, left: (batched.extend(items), sizes.append(len(items))), cap=7)
        assert rb3.consume() == len(batched) >= len(peeked) >= 120
        assert batched[:len(peeked)] == peeked
        assert max(sizes) == 7 and len(sizes) >= len(batched) // 7  # a full batch stops the consume, which goes on
        rb3.close()
        rb.close()
        rb2.close()
        mapped.close()
    finally:
        src.close()
