"""The ring-buffer boundary: µs per sample to take the process sensor's samples out of the
kernel's ring buffer, libbpf's ``ring_buffer__consume`` (a ctypes callback per sample plus
``ct.string_at``, what the agent used) vs ``MappedRing`` (the mapping walked from Python),
on the same real samples; and the decoder's cost per sample for scale.

    .venv/bin/python -m bench ringbuf_read [--execs 3000] [--rounds 3] [--gil]

The real process object is loaded (not read) while ``--execs`` posix_spawns of
``/bin/busybox true`` fill its ring buffer (exec and exit samples, forks folded); then the
mapping is read without moving the consumer position (``--rounds`` times), libbpf consumes
the same records, and the two lists must be equal (libbpf's may go on with samples that arrived
in between: the machine's other processes). With ``--gil``: libbpf's consume with the GIL
held for the batch (``PyDLL``, what the agent does) vs released around it (``CDLL``: every
callback takes the GIL back), while another Python thread wants the GIL.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import select
import struct
import threading
import time

from podtrail.bpf.libbpf import BpfMap, RingBuffer
from podtrail.bpf.process import build_process_source
from podtrail.config import SensorConfig

# include/uapi/linux/bpf.h: a ring buffer record's 8-byte header is its length (u32, with
# these two bits) and a page offset; records are 8-byte aligned.
RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RINGBUF_HDR_SZ = 1 << 31, 1 << 30, 8
# Native formats ("@"): CPython packs and unpacks them with one memcpy, a single load or store
# of the whole word (the "<" formats go byte by byte, and a position read so could be torn).
_U32, _U64 = struct.Struct("I"), struct.Struct("Q")
# Reading the mapping with plain loads is only as ordered as the CPU makes it: x86-64 (TSO)
# keeps loads in order, so the data of a record whose header shows it committed is there.
MAPPED_RING_MACHINES = frozenset({"x86_64", "AMD64"})


class MappedRing:
    """A BPF ring buffer read straight from its memory mapping, without libbpf's callback per
    sample: the consumer page mapped read-write, the producer page and the data area (mapped
    twice by the kernel, so a record that wraps is contiguous) read-only, as libbpf maps them.
    ``read`` walks the records from the consumer position to the producer position (a BUSY
    record ends the walk: it is being written; DISCARDed ones are skipped), returns their bytes
    and advances the consumer position once per batch. ``wait`` is epoll on the map's fd.
    x86-64 only (see MAPPED_RING_MACHINES). Measured here, not used by the agent: it saves
    about 0.5 µs of 3 per sample (docs/BENCHMARKS.md), not worth a second reader."""

    def __init__(self, m: BpfMap) -> None:
        fd, size, page = m.fd, m.max_entries, mmap.PAGESIZE
        self._cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._mv = memoryview(self._prod)
        self._mask = size - 1
        self._page = page
        self._ep = select.epoll()
        self._ep.register(fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Until the kernel wakes the reader (data) or ``timeout_ms`` pass."""
        try:
            self._ep.poll(timeout_ms / 1000)
        except InterruptedError:
            pass

    def read(self, commit: bool = True) -> list[bytes]:
        """Every committed record not yet consumed, in order; with ``commit=False`` the
        consumer position stays (an equivalence test reads the same records with libbpf)."""
        out: list[bytes] = []
        append, mv, mask, page = out.append, self._mv, self._mask, self._page
        u32, u64 = _U32.unpack_from, _U64.unpack_from
        cons = start = u64(self._cons, 0)[0]
        while True:
            prod = u64(self._prod, 0)[0]
            if cons >= prod:
                break
            while cons < prod:
                off = page + (cons & mask)
                ln = u32(mv, off)[0]
                if ln & RINGBUF_BUSY_BIT:
                    prod = -1  # being written: stop here, as libbpf does
                    break
                n = ln & ~RINGBUF_DISCARD_BIT
                if not ln & RINGBUF_DISCARD_BIT:
                    append(mv[off + RINGBUF_HDR_SZ:off + RINGBUF_HDR_SZ + n].tobytes())
                cons += (n + RINGBUF_HDR_SZ + 7) & ~7
            if prod < 0:
                break
        if commit and cons != start:
            _U64.pack_into(self._cons, 0, cons)
        return out

    def close(self) -> None:
        if self._ep.closed:
            return
        self._ep.close()
        self._mv.release()
        self._prod.close()
        self._cons.close()


def fill(n: int) -> None:
    argv = ["/bin/busybox", "true", "ringbuf-bench"]
    for _ in range(n):
        os.waitpid(os.posix_spawn(argv[0], argv, os.environ), 0)


def gil_modes(events: BpfMap, execs: int, rounds: int) -> dict[str, float]:
    """CPU µs per sample of ``RingBuffer.consume`` with the GIL held for the batch (PyDLL, the
    agent) and released around it (CDLL: each callback takes the GIL back), while another
    Python thread wants the GIL, as the pipeline's thread does in the agent."""
    from podtrail.bpf.libbpf import lib

    stop = threading.Event()

    def contend() -> None:
        while not stop.is_set():
            sum(range(100))

    t = threading.Thread(target=contend, daemon=True)
    t.start()
    best = {"held_pydll": float("inf"), "released_cdll": float("inf")}
    try:
        for _ in range(rounds):
            for mode in best:
                got: list[bytes] = []
                rb = RingBuffer(events, got.append)
                if mode == "released_cdll":
                    rb._consume = lib().c.ring_buffer__consume
                fill(execs)
                t0 = time.thread_time_ns()
                rb.consume()
                best[mode] = min(best[mode], (time.thread_time_ns() - t0) / max(len(got), 1) / 1e3)
                rb.close()
    finally:
        stop.set()
        t.join()
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--execs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gil", action="store_true", help="compare consuming with the GIL held and released")
    a = ap.parse_args()
    if a.gil:
        src = build_process_source(SensorConfig(ringbuf_pages=16384))
        src.load()
        assert src.obj is not None
        try:
            r = gil_modes(src.obj.map("events"), a.execs, a.rounds)
        finally:
            src.close()
        print(json.dumps({"cpu_us_per_sample": r, "ratio_released_over_held": r["released_cdll"] / r["held_pydll"],
                          "load": os.getloadavg()[0]}, indent=2))
        return 0
    if platform.machine() not in MAPPED_RING_MACHINES:
        raise SystemExit(f"ringbuf_read: MappedRing relies on x86-64 load ordering, not {platform.machine()}")
    src = build_process_source(SensorConfig(ringbuf_pages=16384))
    src.load()
    assert src.obj is not None
    try:
        events = src.obj.map("events")
        fill(a.execs)
        mapped = MappedRing(events)
        best_mapped = float("inf")
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            got = mapped.read(commit=False)
            best_mapped = min(best_mapped, time.perf_counter() - t0)
        via_libbpf: list[bytes] = []
        rb = RingBuffer(events, via_libbpf.append)
        t0 = time.perf_counter()
        rb.consume()
        t_libbpf = time.perf_counter() - t0
        rb.close()
        # the machine's other processes may add samples between the two reads: a prefix
        assert via_libbpf[:len(got)] == got, "MappedRing and libbpf disagree"
        assert mapped.read() == [], "libbpf consumed everything: nothing left for the mapping"
        t_libbpf *= len(got) / len(via_libbpf)
        mapped.close()
        decoder = src.decoder  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for raw in got:
            decoder.decode(raw)
        t_decode = time.perf_counter() - t0
        n = len(got)
        print(json.dumps({
            "samples": n, "lost": src.lost(),
            "libbpf_consume_us_per_sample": t_libbpf / n * 1e6,
            "mapped_read_us_per_sample": best_mapped / n * 1e6,
            "ratio_libbpf_over_mapped": t_libbpf / best_mapped,
            "decode_us_per_sample": t_decode / n * 1e6,
        }, indent=2))
    finally:
        src.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
