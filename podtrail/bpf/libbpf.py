"""A thin, typed ctypes layer over libbpf (``libbpf.so.1``, 1.1+): what podtrail's loaders need.

CO-RE objects are compiled once at build time (``make bpf``); at run time only libbpf and the
kernel's BTF are needed: no compiler, no headers, no BCC. This module is the only place that
touches the C API. Errors become ``BpfError`` with libbpf's own words, and a failed load carries
the verifier log, so "why did it not load" is answered in the message, not in a debug session.

libbpf 1.x semantics are assumed: functions return NULL or a negative error and set ``errno``.
"""

from __future__ import annotations

import ctypes as ct
import errno as errno_mod
import logging
import os
import select
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from podtrail import native

log = logging.getLogger(__name__)

LIBBPF = "libbpf.so.1"
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
# enum bpf_map_type values podtrail checks
MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_PERCPU_HASH = 5, 6, 10
PERCPU_TYPES = frozenset({MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_PERCPU_HASH})
_VA_LIST_SIZE = 32  # x86-64: 24 bytes; aarch64: 32 (copying more is harmless, it is on the stack)
LOG_TAIL_LINES = 40  # of a verifier log, in the error message (the whole log goes to debug)

_PRINT_FN = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_char_p, ct.c_void_p)
SAMPLE_FN = ct.CFUNCTYPE(ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_size_t)


class BpfError(RuntimeError):
    """A libbpf call failed; the message says which, on what, and libbpf's reason."""


class _Lib:
    """libbpf.so.1 with argument/return types declared (loaded once, on first use)."""

    _instance: _Lib | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        try:
            self.c = ct.CDLL(LIBBPF, use_errno=True)
        except OSError as e:
            raise BpfError(f"cannot load {LIBBPF} ({e}): install libbpf1 (Debian/Ubuntu) or libbpf (RPM)") from None
        self.libc = ct.CDLL(None, use_errno=True)
        c, P, INT, U32, SZ = self.c, ct.c_void_p, ct.c_int, ct.c_uint32, ct.c_size_t
        sig: dict[str, tuple[object, list[object]]] = {
            "bpf_object__open_file": (P, [ct.c_char_p, P]),
            "bpf_object__load": (INT, [P]),
            "bpf_object__close": (None, [P]),
            "bpf_object__find_map_by_name": (P, [P, ct.c_char_p]),
            "bpf_object__next_program": (P, [P, P]),
            "bpf_object__next_map": (P, [P, P]),
            "bpf_program__name": (ct.c_char_p, [P]),
            "bpf_program__fd": (INT, [P]),
            "bpf_program__set_autoload": (INT, [P, ct.c_bool]),
            "bpf_program__autoload": (ct.c_bool, [P]),
            "bpf_program__attach": (P, [P]),
            "bpf_link__destroy": (INT, [P]),
            "bpf_map__name": (ct.c_char_p, [P]),
            "bpf_map__fd": (INT, [P]),
            "bpf_map__type": (INT, [P]),
            "bpf_map__key_size": (U32, [P]),
            "bpf_map__value_size": (U32, [P]),
            "bpf_map__max_entries": (U32, [P]),
            "bpf_map__set_max_entries": (INT, [P, U32]),
            "bpf_map__reuse_fd": (INT, [P, INT]),
            "bpf_map__initial_value": (P, [P, ct.POINTER(SZ)]),
            "bpf_map__set_initial_value": (INT, [P, P, SZ]),
            "bpf_map_update_elem": (INT, [INT, P, P, ct.c_uint64]),
            "bpf_map_lookup_elem": (INT, [INT, P, P]),
            "bpf_map_delete_elem": (INT, [INT, P]),
            "bpf_map_lookup_and_delete_elem": (INT, [INT, P, P]),
            "bpf_map_get_next_key": (INT, [INT, P, P]),
            "libbpf_num_possible_cpus": (INT, []),
            "libbpf_set_print": (P, [_PRINT_FN]),
            "libbpf_strerror": (INT, [INT, ct.c_char_p, SZ]),
            "ring_buffer__new": (P, [INT, SAMPLE_FN, P, P]),
            "ring_buffer__add": (INT, [P, INT, SAMPLE_FN, P]),
            "ring_buffer__poll": (INT, [P, INT]),
            "ring_buffer__consume": (INT, [P]),
            "ring_buffer__free": (None, [P]),
            "ring_buffer__epoll_fd": (INT, [P]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(c, name)
            fn.restype = res
            fn.argtypes = args
        # The same library through PyDLL: calls that keep the GIL. ring_buffer__consume runs a
        # Python callback per sample; through CDLL each callback takes the GIL back from the
        # other threads (and may wait for it), through PyDLL the batch runs with it held.
        self.py = ct.PyDLL(LIBBPF)
        self.py.ring_buffer__consume.restype = INT
        self.py.ring_buffer__consume.argtypes = [P]
        self.libc.vsnprintf.restype = INT
        self.libc.vsnprintf.argtypes = [ct.c_char_p, SZ, ct.c_char_p, P]
        self.ncpus = int(c.libbpf_num_possible_cpus())
        # libbpf's messages (warnings, verifier logs) go to a collector; kept alive here.
        self._messages: list[str] | None = None
        self._print_cb = _PRINT_FN(self._on_print)
        c.libbpf_set_print(self._print_cb)

    @classmethod
    def get(cls) -> _Lib:
        with cls._guard:
            if cls._instance is None:
                cls._instance = _Lib()
            return cls._instance

    def _on_print(self, level: int, fmt: bytes | None, va: int | None) -> int:
        # x86-64/aarch64 va_list: a small struct passed by pointer; a byte copy is va_copy, so
        # the length is measured first and the whole message (a verifier log can be MBs) kept.
        copy = ct.create_string_buffer(ct.string_at(va, _VA_LIST_SIZE), _VA_LIST_SIZE) if va else None
        n = self.libc.vsnprintf(None, 0, fmt, copy) if copy is not None else 0
        buf = ct.create_string_buffer(max(n, 0) + 1)
        self.libc.vsnprintf(buf, len(buf), fmt, va)
        text = buf.value.decode("utf-8", "backslashreplace")
        if self._messages is not None:
            self._messages.append(text)
        if level <= 1:  # LIBBPF_WARN, LIBBPF_INFO
            log.debug("libbpf: %s", text.rstrip())
        return 0

    def collect(self) -> _Collector:
        return _Collector(self)

    def strerror(self, err: int) -> str:
        buf = ct.create_string_buffer(256)
        self.c.libbpf_strerror(abs(err), buf, len(buf))
        return buf.value.decode() or os.strerror(abs(err))


class _Collector:
    """Context manager: libbpf's messages printed inside it (one thread at a time)."""

    _lock = threading.Lock()

    def __init__(self, lib: _Lib) -> None:
        self.lib = lib
        self.messages: list[str] = []

    def __enter__(self) -> _Collector:
        self._lock.acquire()
        self.lib._messages = self.messages
        # set again each time: another user of the same libbpf.so.1 in this process (BCC
        # links Debian's libbpf too) may have installed its own print function since
        self.lib.c.libbpf_set_print(self.lib._print_cb)
        return self

    def __exit__(self, *exc: object) -> None:
        self.lib._messages = None
        self._lock.release()

    def text(self) -> str:
        return "".join(self.messages)


def lib() -> _Lib:
    return _Lib.get()


def _err(what: str, rc: int | None = None) -> BpfError:
    e = -rc if rc is not None and rc < 0 else ct.get_errno()
    return BpfError(f"{what}: {lib().strerror(e) if e else 'unknown error'}")


def verifier_excerpt(messages: str, lines: int = LOG_TAIL_LINES) -> str:
    """The useful part of libbpf's output on a failed load: the last lines of the verifier log
    (where the rejected instruction and the reason are), else the last warnings."""
    text = messages.strip()
    if "-- BEGIN PROG LOAD LOG --" in text:
        text = text.split("-- BEGIN PROG LOAD LOG --")[-1].split("-- END PROG LOAD LOG --")[0].strip()
    tail = text.splitlines()[-lines:]
    return "\n".join(tail)


# ---- maps ------------------------------------------------------------------------------------


class BpfMap:
    """One map of an object: configure before load (size, reuse, initial value), use after."""

    def __init__(self, obj: BpfObject, handle: int) -> None:
        self._obj = obj
        self._h = handle
        self.name: str = (lib().c.bpf_map__name(handle) or b"").decode()

    @property
    def type(self) -> int:
        return int(lib().c.bpf_map__type(self._h))

    @property
    def key_size(self) -> int:
        return int(lib().c.bpf_map__key_size(self._h))

    @property
    def value_size(self) -> int:
        return int(lib().c.bpf_map__value_size(self._h))

    @property
    def max_entries(self) -> int:
        return int(lib().c.bpf_map__max_entries(self._h))

    @property
    def fd(self) -> int:
        fd = int(lib().c.bpf_map__fd(self._h))
        if fd < 0:
            raise BpfError(f"map {self.name}: no fd (object not loaded)")
        return fd

    def set_max_entries(self, n: int) -> None:
        """Before load. For a ring buffer: its size in bytes (a power-of-two multiple of the page)."""
        rc = lib().c.bpf_map__set_max_entries(self._h, n)
        if rc:
            raise _err(f"map {self.name}: set_max_entries({n})", rc)

    def reuse_fd(self, fd: int) -> None:
        """Before load: use an existing map (same type, key, value, size) instead of creating one."""
        rc = lib().c.bpf_map__reuse_fd(self._h, fd)
        if rc:
            raise _err(f"map {self.name}: reuse_fd", rc)

    def initial_value(self) -> bytes:
        size = ct.c_size_t(0)
        p = lib().c.bpf_map__initial_value(self._h, ct.byref(size))
        if not p:
            raise BpfError(f"map {self.name}: no initial value (not a global data section)")
        return ct.string_at(p, size.value)

    def set_initial_value(self, data: bytes) -> None:
        """Before load: the content of a global data section (.rodata: ``const volatile`` config)."""
        size = ct.c_size_t(0)
        if not lib().c.bpf_map__initial_value(self._h, ct.byref(size)):
            raise BpfError(f"map {self.name}: no initial value (not a global data section)")
        if len(data) != size.value:
            raise BpfError(f"map {self.name}: initial value is {size.value} bytes, got {len(data)} "
                           "(the Python and C declarations disagree: rebuild with make bpf)")
        buf = ct.create_string_buffer(data, len(data))
        rc = lib().c.bpf_map__set_initial_value(self._h, buf, len(data))
        if rc:
            raise _err(f"map {self.name}: set_initial_value", rc)

    # -- element access (after load) --------------------------------------------------------
    def _value_len(self) -> int:
        if self.type in PERCPU_TYPES:
            return ((self.value_size + 7) // 8) * 8 * lib().ncpus
        return self.value_size

    def _key(self, key: bytes) -> ct.Array[ct.c_char]:
        if len(key) != self.key_size:
            raise BpfError(f"map {self.name}: key is {self.key_size} bytes, got {len(key)}")
        return ct.create_string_buffer(key, len(key))

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self._value_len():
            raise BpfError(f"map {self.name}: value is {self._value_len()} bytes, got {len(value)}")
        v = ct.create_string_buffer(value, len(value))
        rc = lib().c.bpf_map_update_elem(self.fd, self._key(key), v, flags)
        if rc:
            raise _err(f"map {self.name}: update", rc)

    def _read(self, fn: Callable[[int, object, object], int], what: str, key: bytes) -> bytes | None:
        v = ct.create_string_buffer(self._value_len())
        rc = fn(self.fd, self._key(key), v)
        if rc:
            if ct.get_errno() == errno_mod.ENOENT or rc == -errno_mod.ENOENT:
                return None
            raise _err(f"map {self.name}: {what}", rc)
        return v.raw

    def lookup(self, key: bytes) -> bytes | None:
        return self._read(lib().c.bpf_map_lookup_elem, "lookup", key)

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        """A per-CPU map's values, one per possible CPU."""
        raw = self.lookup(key)
        if raw is None:
            return []
        stride = ((self.value_size + 7) // 8) * 8
        return [raw[i * stride:i * stride + self.value_size] for i in range(lib().ncpus)]

    def sum_percpu_u64(self, key: bytes) -> int:
        return sum(int.from_bytes(v[:8], "little") for v in self.lookup_percpu(key))

    def lookup_and_delete(self, key: bytes) -> bytes | None:
        """Take an entry atomically (hash maps, Linux 5.14+): whoever deletes it, a program
        or this call, has it; None when it is gone already."""
        return self._read(lib().c.bpf_map_lookup_and_delete_elem, "lookup_and_delete", key)

    def delete(self, key: bytes) -> bool:
        rc = lib().c.bpf_map_delete_elem(self.fd, self._key(key))
        if rc:
            if ct.get_errno() == errno_mod.ENOENT or rc == -errno_mod.ENOENT:
                return False
            raise _err(f"map {self.name}: delete", rc)
        return True

    def keys(self) -> Iterator[bytes]:
        k = ct.create_string_buffer(self.key_size)
        prev: ct.Array[ct.c_char] | None = None
        while True:
            rc = lib().c.bpf_map_get_next_key(self.fd, prev, k)
            if rc:
                return
            yield k.raw
            prev = ct.create_string_buffer(k.raw, self.key_size)

    def clear(self) -> None:
        for k in list(self.keys()):
            self.delete(k)


# ---- objects ---------------------------------------------------------------------------------


def fdinfo_count(fd: int, key: str) -> int:
    """A counter of a BPF object's fdinfo (``/proc/self/fdinfo/<fd>``), 0 where the kernel has none."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def destroy_links(links: list[int]) -> None:
    """Destroy links side by side, one thread each (ctypes releases the GIL): a syscall
    tracepoint's detach waits for an RCU grace period in the kernel (tens of ms each), and
    one after the other they made the agent's stop take seconds. The kernel still serializes
    part of the work (measured: 52 links 3.1 s one by one, 1.3 s side by side)."""
    destroy = lib().c.bpf_link__destroy
    if len(links) < 2:
        for link in links:
            destroy(link)
        return
    threads = [threading.Thread(target=destroy, args=(link,), name="podtrail-detach", daemon=True) for link in links]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class BpfObject:
    """An opened (then loaded, then attached) CO-RE object file.

    Life cycle: ``BpfObject(path)`` → configure maps/programs → ``load()`` → ``attach()`` →
    use maps → ``close()`` (detaches and frees everything, idempotent)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.name = Path(self.path).name.removesuffix(".o").removesuffix(".bpf")
        if not os.path.exists(self.path):
            raise BpfError(f"{self.path} is missing: build the BPF objects with `make bpf`")
        L = lib()
        with L.collect() as col:
            h = L.c.bpf_object__open_file(self.path.encode(), None)
        if not h:
            e = _err(f"cannot open {self.path}")
            raise BpfError(f"{e}{': ' + col.text().strip().splitlines()[-1] if col.messages else ''}")
        self._h: int | None = h
        self._links: list[int] = []
        self.loaded = False

    def _handle(self) -> int:
        if self._h is None:
            raise BpfError(f"{self.name}: object is closed")
        return self._h

    def programs(self) -> dict[str, int]:
        out: dict[str, int] = {}
        p = lib().c.bpf_object__next_program(self._handle(), None)
        while p:
            out[(lib().c.bpf_program__name(p) or b"").decode()] = p
            p = lib().c.bpf_object__next_program(self._handle(), p)
        return out

    def recursion_misses(self) -> int:
        """Runs of this object's programs the kernel skipped because a BPF program was already
        running on that CPU (``recursion_misses`` in each program's fdinfo, Linux 5.12+): events
        lost before any ring buffer, which the ``lost`` maps cannot see."""
        total = 0
        for p in self.programs().values():
            fd = lib().c.bpf_program__fd(p)
            if fd < 0:
                continue  # not loaded (autoload off)
            total += fdinfo_count(fd, "recursion_misses")
        return total

    def maps(self) -> list[BpfMap]:
        out = []
        m = lib().c.bpf_object__next_map(self._handle(), None)
        while m:
            out.append(BpfMap(self, m))
            m = lib().c.bpf_object__next_map(self._handle(), m)
        return out

    def map(self, name: str) -> BpfMap:
        """A map by name; global data sections by their section name (``.rodata``, ``.bss``)."""
        m = lib().c.bpf_object__find_map_by_name(self._handle(), name.encode())
        if not m:
            raise BpfError(f"{self.name}: no map named {name!r}")
        return BpfMap(self, m)

    def has_map(self, name: str) -> bool:
        return bool(lib().c.bpf_object__find_map_by_name(self._handle(), name.encode()))

    def set_autoload(self, program: str, on: bool) -> None:
        """Before load: leave a program out (an alternative the kernel lacks)."""
        p = self.programs().get(program)
        if p is None:
            raise BpfError(f"{self.name}: no program named {program!r}")
        rc = lib().c.bpf_program__set_autoload(p, on)
        if rc:
            raise _err(f"{self.name}: set_autoload({program})", rc)

    def set_rodata(self, data: bytes) -> None:
        """Before load: the read-only config (the object's ``const volatile`` globals, as one
        blob laid out like the C declaration)."""
        self.map(".rodata").set_initial_value(data)

    def load(self) -> None:
        """Create maps, relocate (CO-RE) and load every program; on failure the verifier's
        words are in the exception."""
        L = lib()
        with L.collect() as col:
            rc = L.c.bpf_object__load(self._handle())
            err = ct.get_errno()
        if rc:
            msgs = col.text()
            log.debug("libbpf output while loading %s:\n%s", self.path, msgs)
            reason = L.strerror(-rc if rc < 0 else err)
            raise BpfError(f"cannot load {self.name} ({self.path}): {reason}\n{verifier_excerpt(msgs)}".rstrip())
        self.loaded = True

    def attach(self) -> None:
        """Attach every program that was loaded (tracepoints, raw/BTF tracepoints, LSM...)."""
        L = lib()
        for name, p in self.programs().items():
            if not L.c.bpf_program__autoload(p):
                continue
            with L.collect() as col:
                link = L.c.bpf_program__attach(p)
                err = ct.get_errno()
            if not link:
                last = col.text().strip().splitlines()[-1:] or [""]
                raise BpfError(f"cannot attach {self.name}:{name}: {L.strerror(err)} {last[0]}".rstrip())
            self._links.append(link)

    def detach(self) -> None:
        """Destroy the links; the programs and maps stay loaded and ``attach()`` links again
        (benchmarks compare with and without in one run)."""
        destroy_links(self._links)
        self._links.clear()

    def close(self) -> None:
        if self._h is None:
            return
        self.detach()
        lib().c.bpf_object__close(self._h)
        self._h = None
        self.loaded = False

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- ring buffers ----------------------------------------------------------------------------


# A consume stops once a batch holds this many samples (the callback returns STOPPED, the
# sample is kept): the batch is handed over and the consume goes on, so memory stays bounded
# while the kernel keeps producing.
BATCH_CAP = 4096
STOPPED = -errno_mod.EXFULL  # podtrail.bpf._ring.STOPPED
OnBatch = Callable[[list[Any], int, int], None]


class RingBuffer:
    """A consumer of one BPF ring buffer map. Each consume collects what the kernel made ready
    into a list and hands it over in one call: ``on_batch(items, errors, left)`` (or
    ``on_sample`` per sample's bytes), in the polling thread.

    The sample callback is C (podtrail.bpf._ring) where it is built: it appends each sample's
    bytes, or, with ``decoder`` (a C decoder such as podtrail.bpf._process.Decoder), the event
    it made; a sample the decoder leaves (cgroup samples, refusals) stays bytes for the Python
    decoder. Without the module, a ctypes callback appends the bytes (the reference).
    ``errors``: samples that could not be stored (no memory), to be counted; ``left``: how
    many items are bytes (0: all are events).

    Waiting (``poll``) releases the GIL: it is epoll on libbpf's epoll fd. Consuming holds it
    for the whole batch (libbpf through ``PyDLL``): no GIL hand-over per sample, and the C
    callback may use the C API. An exception in the handler is logged, never propagated into
    the reader."""

    def __init__(self, m: BpfMap, on_sample: Callable[[bytes], None] | None = None, *,
                 on_batch: OnBatch | None = None, decoder: object = None, cap: int = BATCH_CAP) -> None:
        if on_batch is None:
            if on_sample is None:
                raise TypeError("RingBuffer needs on_sample or on_batch")
            on_batch = _each(on_sample)
        self._on_batch = on_batch
        ring = native.load("podtrail.bpf._ring")
        if ring is not None:
            assert ring.STOPPED == STOPPED
            batch = ring.Batch(decoder, cap)
            self._keep: object = batch  # the callback's ctx: referenced for as long as the ring buffer lives
            self._cb = SAMPLE_FN(ring.CALLBACK)
            ctx: int | None = id(batch)
            self._take: Callable[[], tuple[list[Any], int, int]] = batch.take
        else:
            self._keep, ctx = None, None
            self._cb, self._take = _collector(cap)
        rb = lib().c.ring_buffer__new(m.fd, self._cb, ctx, None)
        if not rb:
            raise _err(f"ring_buffer__new({m.name})")
        self._rb: int | None = rb
        self._consume = lib().py.ring_buffer__consume
        self._wait = select.poll()
        self._wait.register(int(lib().c.ring_buffer__epoll_fd(rb)), select.POLLIN)
        # ``wake`` ends a wait early (a stop need not wait out the poll timeout)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wait.register(self._wake_r, select.POLLIN)

    @property
    def native(self) -> bool:
        """Whether the C callback collects the samples."""
        return self._keep is not None

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for data (or ``wake``) and consume it; the number of samples."""
        if self._rb is None:
            return 0
        ready = self._wait.poll(timeout_ms)
        if not ready:
            return 0
        if any(fd == self._wake_r for fd, _ in ready):
            try:
                os.read(self._wake_r, 64)
            except BlockingIOError:
                pass
        return self.consume()

    def wake(self) -> None:
        """End a ``poll`` that is waiting (from another thread), or the next one."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is pending already, or the ring buffer is closed

    def consume(self) -> int:
        """Consume whatever is there without waiting (samples sent with BPF_RB_NO_WAKEUP), in
        batches of at most the cap; the number of samples."""
        total = 0
        while self._rb is not None:
            n = int(self._consume(self._rb))
            items, errors, left = self._take()
            total += len(items) + errors
            if items or errors:
                try:
                    self._on_batch(items, errors, left)
                except Exception:  # noqa: BLE001 - a handler bug must not stop the reader
                    log.exception("ring buffer batch handling failed")
            if n == STOPPED:
                continue
            if n < 0:
                raise _err("ring_buffer__consume", n)
            break
        return total

    def close(self) -> None:
        if self._rb is not None:
            lib().c.ring_buffer__free(self._rb)
            self._rb = None
            os.close(self._wake_r)
            os.close(self._wake_w)


def _collector(cap: int) -> tuple[Any, Callable[[], tuple[list[Any], int, int]]]:
    """The ctypes twin of podtrail.bpf._ring: a callback appending each sample's bytes, and
    its take()."""
    box: list[list[Any]] = [[]]
    string_at = ct.string_at

    def cb(_ctx: int | None, data: int | None, size: int) -> int:
        items = box[0]
        items.append(string_at(data or 0, size))
        return STOPPED if len(items) >= cap else 0

    def take() -> tuple[list[Any], int, int]:
        items = box[0]
        box[0] = []
        return items, 0, len(items)

    return SAMPLE_FN(cb), take


def _each(on_sample: Callable[[bytes], None]) -> OnBatch:
    """A per-sample handler as a batch handler (an exception is logged per sample)."""

    def on_batch(items: list[Any], errors: int, left: int) -> None:
        if errors:
            log.warning("ring buffer: %d samples could not be stored (no memory)", errors)
        for raw in items:
            try:
                on_sample(raw)
            except Exception:  # noqa: BLE001 - must not stop the reader
                log.exception("ring buffer callback failed")

    return on_batch


class SharedMaps:
    """Maps that several objects declare and must share (``drift_inodes``): the first object
    to load creates the map, every later one reuses it (``bpf_map__reuse_fd``). Holds its own
    fd per map, so the map lives as long as any user does; each loaded user ``release``s at
    its close, and the last one closes the fds."""

    def __init__(self, names: tuple[str, ...] = ("drift_inodes",)) -> None:
        self.names = names
        self.fds: dict[str, int] = {}
        self.users = 0
        self._lock = threading.Lock()

    def before_load(self, obj: BpfObject) -> None:
        for n in self.names:
            if n in self.fds and obj.has_map(n):
                obj.map(n).reuse_fd(self.fds[n])

    def after_load(self, obj: BpfObject) -> None:
        with self._lock:
            self.users += 1
            for n in self.names:
                if n not in self.fds and obj.has_map(n):
                    self.fds[n] = os.dup(obj.map(n).fd)

    def release(self) -> None:
        """A user that ``after_load`` counted is closed; the last one closes the fds."""
        with self._lock:
            self.users = max(0, self.users - 1)
            last = self.users == 0
        if last:
            self.close()

    def close(self) -> None:
        with self._lock:
            fds, self.fds = list(self.fds.values()), {}
        for fd in fds:
            os.close(fd)
