"""Evented tables' storage: osquery's event semantics in memory.

Each kind keeps at most ``events_max`` events and none older than ``events_expiry`` (like
osquery's ``--events_max``/``--events_expiry``); what falls off is counted, never unbounded.

Events are kept compact, as references: one flat tuple per event holding its own values,
its shape (the names of those values, shared by every event of that shape) and its context
entities (process, container, pod: shared by every event of that process or pod). The values
that repeat among a shape's events (uids, comm, namespaces, ports, ...: learned from its first
events) are one tuple shared by every record with the same ones; other texts and integers are
shared through a pool. Rows are built only when selected (``wire`` writes them as Thrift bytes
from the records), and then say exactly what the event said (tested against the event itself).

Compaction is off the per-event call: ``submit`` queues the event, and the queue is compacted
at the pipeline's batch end, when it grows long, and before any read. Once a shape has learned,
each layout of its events (names, entity cover, value types) is proven once and then compacted
by one C-level getter and one comparison of value types (``_Fast``); anything else takes the
general path (``EventBuffers._record``), which makes the same records. The batch loop over the
proven layouts runs in C where ``podtrail.tables._compact`` is built (``_compact.c``: the same
records, objects and order; this module's loop is its reference and the fallback).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import repeat
from operator import itemgetter
from sys import intern
from typing import Any

from prometheus_client import Counter, Gauge

from podtrail import native
from podtrail.metrics import REGISTRY
from podtrail.model.context import EventDict, attach, covered
from podtrail.model.event import RUN_PREFIX, Event
from podtrail.model.fields import FIELDS, FieldType, Kind

EXPIRED = Counter("podtrail_table_events_expired_total", "Buffered events dropped by expiry or by the max count.", ["table_kind", "reason"], registry=REGISTRY)
COMPACT_FAILED = Counter("podtrail_table_events_uncompacted_total", "Buffered events kept as plain copies (compaction raised).", registry=REGISTRY)
BUFFERED = Gauge("podtrail_table_events_buffered", "Events held for the osquery evented tables.", ["table_kind"], registry=REGISTRY)

# Record layout: (time_ns, time, shape, *entities, [shared tuple,] *own values); the shared tuple
# (the shape's repeating values, in ``shape.rep_names`` order) is there when ``shape.own_at``.
# time_ns and time sit in fixed slots for expiry and the time pushdown; the shape says how
# many entities follow. When the
# shape says "packed", slot 0 holds time_ns, mono_ns and the event id's counter as one int
# (three values unique to each event: one object instead of three).
_T_NS, _T_S, _SHAPE, _ENTS = 0, 1, 2, 3
_FIXED = frozenset({"time_ns", "time"})
# Values every event of a shape has in common in practice: part of the shape, not the record.
_CONST = ("event_type", "action", "source", "hostname")


class _Argv(str):
    """argv kept as one NUL-joined text (a kernel argument never holds a NUL): one object
    instead of a list and a string per argument; a list again on reading. No ``__dict__``: it
    refers to nothing but its class, so the C loop takes it out of the cycle collector (one
    per buffered exec)."""

    __slots__ = ()
# Values never shared between events (interning them would only fill the table).
_UNIQUE = frozenset({"event_id", "mono_ns"})
_INTERN_MAX = 1 << 14  # a window of recent values: enough for a process's events to share theirs


_ID_HEAD = RUN_PREFIX + "-"
_B64 = 1 << 64
_M64 = _B64 - 1
_PACKED = frozenset({"mono_ns", "event_id"})


_FROM_NS = "from time_ns"  # in the time slot: time is time_ns // 10**9


def _time_s(rec: tuple[Any, ...]) -> int:
    t = rec[_T_S]
    if t is _FROM_NS:
        return _time_ns(rec) // 1_000_000_000
    return t or 0


def _time_ns(rec: tuple[Any, ...]) -> int:
    t = rec[_T_NS]
    if type(t) is not int:
        return 0
    shape = rec[_SHAPE]
    return t >> 128 if shape is not None and shape.packed else t


_KEEP, _ID, _ARGS, _POOLED = "keep", "id", "argv", "pooled"
_STR_T, _INT_T = frozenset({str}), frozenset({int})
_INTS = (FieldType.INTEGER, FieldType.BIGINT)


def _compact_id(v: Any) -> Any:
    """An id made by ``new_event_id`` in this run is kept as its counter (an int, half the
    bytes of the text); any other id is kept as it is."""
    if type(v) is str and v.startswith(_ID_HEAD):
        tail = v[len(_ID_HEAD):]
        try:
            n = int(tail, 16)
        except ValueError:
            return v
        if f"{n:x}" == tail:  # exactly what reading makes again (no leading zeros, lower case)
            return n
    return v


def _getter(keys: tuple[Any, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The values at ``keys`` (names of an event, slots of a record) as a tuple, C-level."""
    if len(keys) > 1:
        return itemgetter(*keys)  # type: ignore[return-value]
    if keys:
        n = keys[0]
        return lambda ev: (ev[n],)
    return lambda ev: ()


def _pool(v: Any, how: str, pool: dict[Any, Any]) -> Any:
    """A text or integer value as a record keeps it: shared (interned, pooled) when it is
    exactly a str or an int; anything else as ``_keep`` keeps it."""
    if how is _POOLED:
        t = type(v)
        return intern(v) if t is str else pool.setdefault(v, v) if t is int else v
    return _keep(v, how)


def _keep(v: Any, how: str) -> Any:
    """An ``others`` value as a record keeps it."""
    if how is _ID:  # the event id: its counter when it is one of this run's
        return _compact_id(v)
    if how is _ARGS and type(v) is list and v:
        try:
            j = "\0".join(v)  # every argument a str (TypeError otherwise)
        except TypeError:
            return v
        if j.count("\0") == len(v) - 1 and set(map(type, v)) == _STR_T:  # no NUL inside one; no str subclass
            return _Argv(j)
    return v


_SHARE_T = frozenset({str, int, type(None)})  # equal values of these types are the same value, same type
_LEARN, _REPEAT_MAX = 256, 32  # a shape's first events observed; at most this many distinct values: repeating
_COMBOS_MAX = 1 << 14


class _Shape:
    """The names of a record's own values, grouped by how they are kept, with C-level getters:
    values that repeat (learned from the shape's first events: uid, comm, namespaces, ...) as
    one tuple shared by every record with the same ones, text values (interned), integers
    (shared through the pool), and the rest."""

    __slots__ = ("own", "names", "rep_names", "reps", "own_at", "texts", "ints", "others", "others_how", "cover",
                 "n_ents", "const", "packed", "tid_is_pid", "seen", "n_seen", "n_texts", "n_ints")

    def __init__(self, names: tuple[str, ...], cover: frozenset[str], n_ents: int, const: dict[str, Any], packed: bool,
                 tid_is_pid: bool, reps: tuple[str, ...] | None = None) -> None:
        self.own = names
        rep = set(reps or ())
        texts = tuple(n for n in names if getattr(FIELDS.get(n), "type", None) is FieldType.TEXT and n not in _UNIQUE
                      and n != "event_id" and n not in rep)
        ints = tuple(n for n in names if getattr(FIELDS.get(n), "type", None) in _INTS and n not in _UNIQUE and n not in rep)
        others = tuple(n for n in names if n not in texts and n not in ints and n not in rep)
        self.rep_names = tuple(n for n in names if n in rep)
        self.reps = _getter(self.rep_names)
        self.own_at = 1 if self.rep_names else 0  # the shared tuple's slot comes first
        self.names = texts + ints + others  # the order of the other values in a record
        self.n_texts, self.n_ints = len(texts), len(ints)
        self.texts, self.ints, self.others = _getter(texts), _getter(ints), _getter(others)
        self.others_how = tuple(_ID if n == "event_id" else _ARGS if n == "argv" else _KEEP for n in others)
        self.packed = packed
        self.tid_is_pid = tid_is_pid  # a main thread: tid is not stored
        self.const = const
        self.n_ents = n_ents
        self.cover = cover
        # learning which values repeat: only before the split is known
        self.seen: dict[str, set[Any]] | None = {n: set() for n in texts + ints} if reps is None else None
        self.n_seen = 0

    def observe(self, ev: Event, c: Any = None) -> tuple[str, ...] | None:
        """Count this event's values; after ``_LEARN`` events, the names that repeat. (``c``:
        the C module, whose ``observe`` does this loop.)"""
        seen = self.seen
        if seen is None:
            return None
        if c is not None:
            c.observe(seen, ev, _REPEAT_MAX)
        else:
            for n, vals in seen.items():
                v = ev.get(n)
                if len(vals) <= _REPEAT_MAX and type(v) in _SHARE_T:
                    vals.add(v)
                else:
                    vals.add(object())  # unshareable or too many: never repeating
        self.n_seen += 1
        if self.n_seen < _LEARN:
            return None
        self.seen = None
        return tuple(n for n, vals in seen.items() if len(vals) <= _REPEAT_MAX)


_HEAD_LEN = len(_ID_HEAD)
_FAST_FIXED = ("time_ns", "mono_ns", "event_id", "time")
_FAST_MAX = 8  # layouts tried per family (entity cover, constants, number of names)
_const_of = itemgetter(*_CONST)


class _Fast:
    """A proven layout: an event with the same entity cover, constants, number of names and
    value types as one the general path (``EventBuffers._record``) compacted, once its shape
    has learned its repeating values, is compacted by one C-level getter and one comparison
    of its value types, with no per-value checks, into the very record the general path would
    make. Whatever does not match (a missing name, another type, a foreign event id, a thread
    whose tid is not its pid) takes the general path."""

    __slots__ = ("names", "get", "types", "shape", "put", "fixed", "rep", "pooled", "others", "how", "mode", "cuts")

    def __init__(self, shape: _Shape, put: Callable[[tuple[Any, ...]], None], vals: tuple[Any, ...],
                 names: tuple[str, ...]) -> None:
        self.names = names
        self.get = itemgetter(*names)
        self.types = tuple(map(type, vals))
        self.shape = shape
        self.put = put  # its kind's records' append
        f = len(_FAST_FIXED)
        # time_ns, mono_ns, event_id, time, and tid and pid to compare (same-typed, proven by
        # the types); where tid is stored, two slots that are always equal
        self.fixed = itemgetter(0, 1, 2, 3, *((f, names.index("pid")) if shape.tid_is_pid else (0, 0)))
        a = f + (1 if shape.tid_is_pid else 0)
        b = a + len(shape.rep_names)
        d = b + shape.n_texts + shape.n_ints
        self.rep = itemgetter(slice(a, b)) if shape.own_at else None
        # texts and integers: shared through the pool at once when each is exactly a str or an int
        pooled = set(self.types[b:d]) <= _POOL_T
        self.pooled = itemgetter(slice(b, d))
        self.others = itemgetter(slice(d if pooled else b, None))
        if not pooled:  # one by one
            self.mode, self.how = 3, (*(_POOLED,) * (d - b), *shape.others_how)
        elif any(h is not _KEEP for h in shape.others_how):
            self.mode, self.how = 2, shape.others_how
        else:
            self.mode, self.how = (1 if shape.others_how else 0), ()
        self.cuts = (a, b, d)

    def native(self, c: Any) -> Any:
        """This layout for the C loop (``_compact.Layout``): the same numbers."""
        a, b, d = self.cuts
        at = {3: b, 2: d}.get(self.mode, len(self.names))
        pid_at = self.names.index("pid") if self.shape.tid_is_pid else -1
        return c.Layout(self.names, self.types, self.shape, self.put, self, pid_at, a, b, b, d, at,
                        self.rep is not None, self.mode, tuple(_HOW_CODE[h] for h in self.how))

    @staticmethod
    def names_of(shape: _Shape) -> tuple[str, ...]:
        return (*_FAST_FIXED, *(("tid",) if shape.tid_is_pid else ()), *shape.rep_names, *shape.names)

    def record(self, ev: Event, pool: dict[Any, Any], combos: dict[tuple[Any, ...], tuple[Any, ...]]) -> tuple[Any, ...] | None:
        """The record of one event, or None when it does not have this layout. (A pass over
        many events at once, one C-level map per step, was measured 15 % faster at best: not
        worth its length.)"""
        try:
            vals = self.get(ev)
        except KeyError:
            return None
        if tuple(map(type, vals)) != self.types:
            return None
        t_ns, mono, eid, t_s, tid, pid = self.fixed(vals)
        try:
            seq = int(eid[_HEAD_LEN:], 16)
        except ValueError:
            return None
        # the id exactly as reading makes it again; mono and the counter in 0..2**64-1 (time_ns
        # takes the high bits, a negative one included)
        if tid != pid or (mono | seq) >> 64 or f"{_ID_HEAD}{seq:x}" != eid:
            return None
        setdefault = pool.setdefault
        if self.mode == 3:
            own = tuple(map(_pool, self.others(vals), self.how, repeat(pool)))
        else:
            own = self.pooled(vals)
            own = (*map(setdefault, own, own), *(map(_keep, self.others(vals), self.how) if self.mode == 2 else self.others(vals)))
        t_s = _FROM_NS if t_s == t_ns // 1_000_000_000 else setdefault(t_s, t_s)
        first = (t_ns << 128) | (mono << 64) | seq
        ents = ev._ctx[1:]  # type: ignore[attr-defined]
        if self.rep is None:
            return (first, t_s, self.shape, *ents, *own)
        rv = self.rep(vals)
        rt = combos.get(rv)
        if rt is None:
            rt = combos[rv] = _shared(rv, pool)
        return (first, t_s, self.shape, *ents, rt, *own)


_POOL_T = frozenset({str, int})
_HOW_CODE = {_KEEP: 0, _ID: 1, _ARGS: 2, _POOLED: 3}  # as _compact.c numbers them


def _shared(rv: tuple[Any, ...], pool: dict[Any, Any]) -> tuple[Any, ...]:
    """A shape's repeating values as the one tuple records share (texts interned, integers pooled)."""
    return tuple([intern(v) if type(v) is str else pool.setdefault(v, v) if type(v) is int else v for v in rv])


_NO_FAST: list[_Fast] = []
_PENDING_MAX = 256  # events waiting for compaction before a submit compacts them itself


def _with_native(mod: Any) -> Any:
    """The C module, given this module's objects it must give back the same (None stays None)."""
    if mod is not None:
        mod.setup(EventDict, _ID_HEAD, _FROM_NS, _Argv, _compact_id, _CONST)
    return mod


_C = _with_native(native.load("podtrail.tables._compact"))


class EventBuffers:
    """A pipeline Sink: every process/socket/file/alert event, kept for the evented tables.

    ``submit`` only queues a reference to the event (the pipeline's finished event, which
    nothing changes afterwards); the events are compacted into records in batches: at the
    end of the pipeline's batch (``end_batch``), when ``_PENDING_MAX`` are waiting, and
    before any read, all under the lock, so a query always sees every submitted event."""

    name = "tables"

    def __init__(self, events_max: int = 50000, expiry_s: float = 3600.0, *, native: bool = True) -> None:
        self.max = events_max
        self.expiry_ns = int(expiry_s * 1e9)
        self._q: dict[str, deque[tuple[Any, ...]]] = {k.value: deque() for k in (Kind.PROCESS, Kind.SOCKET, Kind.FILE, Kind.ALERT)}
        self._lock = threading.Lock()
        self._pending: deque[Event] = deque()  # submitted, not yet compacted (append/popleft: atomic)
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        self._fast: dict[tuple[Any, ...], list[_Fast]] = {}
        self._c = _C if native else None  # the C loop (same records), or this module's
        self._cfast: dict[tuple[Any, ...], list[Any]] = {}  # _fast's layouts for the C loop, in the same order
        self._values: dict[Any, Any] = {}  # repeating str/int values -> the one shared object
        self._combos: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # repeating values of a shape -> one shared tuple
        self._dropped = {kind: EXPIRED.labels(kind, "max") for kind in self._q}  # labels() once, not per event
        self.general = 0  # events compacted by the general path (the rest by a proven layout)

    # -- writing --------------------------------------------------------------------------------
    def submit(self, ev: Event) -> None:
        p = self._pending
        p.append(ev)
        if len(p) >= _PENDING_MAX:
            self.end_batch()

    def fast_submit(self) -> tuple[object, ...]:
        """``submit`` in the pipeline's C chain (pipeline.Pipeline._fast_chain): the same
        append to ``_pending``, and ``end_batch`` once ``_PENDING_MAX`` wait."""
        return ("queue", self._pending, _PENDING_MAX, self.end_batch)

    def end_batch(self) -> None:
        """Compact what was submitted since (the pipeline calls it after each batch)."""
        if self._pending:
            with self._lock:
                self._compact()

    def _compact(self) -> None:
        """Move the pending events into their kinds' records, in order (the caller holds the lock)."""
        qs, pool, combos = self._q, self._values, self._combos
        if len(pool) > _INTERN_MAX:
            pool.clear()  # still correct: later values are simply not shared with earlier ones
        if len(combos) > _COMBOS_MAX:
            combos.clear()
        if self._c is not None:
            self._c.compact(self._pending, self._cfast, pool, combos, self._general_put)
        else:
            self._compact_py()
        for kind, q in qs.items():
            over = len(q) - self.max
            if over > 0:  # the steady state of a busy node: one out for each one in
                for _ in range(over):
                    q.popleft()
                self._dropped[kind].inc(over)

    def _compact_py(self) -> None:
        """The loop ``_compact.compact`` does in C (its reference)."""
        pend = self._pending
        fast, pool, combos = self._fast, self._values, self._combos
        popleft = pend.popleft
        for _ in range(len(pend)):  # only those there now: later submits wait for the next call
            ev = popleft()
            try:
                ctx = ev._ctx  # type: ignore[attr-defined]
                cands = fast[(ctx[0], len(ctx), len(ev), _const_of(ev))]
            except (AttributeError, KeyError, TypeError):
                cands = _NO_FAST
            for f in cands:
                rec = f.record(ev, pool, combos)
                if rec is not None:
                    f.put(rec)
                    break
            else:
                self._general_put(ev)

    def _general_put(self, ev: Event) -> None:
        """An event no proven layout takes, by the general path (the C loop's way out too)."""
        rec, kind = self._general(ev)
        if kind is not None:
            self._q[kind].append(rec)

    def _general(self, ev: Event) -> tuple[Any, str | None]:
        """(record, kind) by the general path; kind None: not a table's event."""
        kind = ev.get("event_type", "")
        if kind not in self._q:
            return None, None
        self.general += 1
        try:
            return self._record(ev), kind
        except Exception:  # noqa: BLE001 - never lose an event to compaction: keep a plain copy
            COMPACT_FAILED.inc()
            t_ns, t_s = ev.get("time_ns"), ev.get("time")
            return (t_ns if type(t_ns) is int else None, t_s if type(t_s) is int else None, None, dict(ev)), kind

    def _record(self, ev: Event) -> tuple[Any, ...]:
        """The general path: any event, any values; learns shapes and proves layouts."""
        ents, cover = covered(ev)
        keys = tuple(ev)
        get = ev.get
        consts = tuple(map(get, _CONST))
        t_ns, mono, seq = get("time_ns"), get("mono_ns"), _compact_id(get("event_id"))
        packed = type(t_ns) is int and type(mono) is int and type(seq) is int and 0 <= t_ns < _B64 and 0 <= mono < _B64 \
            and 0 <= seq < _B64
        pid = get("pid")
        same_tid = pid is not None and get("tid") == pid and type(get("tid")) is type(pid)
        sk = (keys, cover, len(ents), consts, packed, same_tid)
        shape = self._shapes.get(sk)
        if shape is None:
            if len(self._shapes) > 4096:  # shapes are few (kind x action x sensor x host); bounded anyway
                self._shapes.clear()
            const = {k: v for k, v in zip(_CONST, consts, strict=True) if k in ev and k not in cover}
            skip = _FIXED | const.keys() | (_PACKED if packed else set()) | ({"tid"} if same_tid else set())
            own = tuple(k for k in keys if k not in cover and k not in skip)
            shape = self._shapes[sk] = _Shape(own, cover, len(ents), const, packed, same_tid)
        elif shape.seen is not None:
            reps = shape.observe(ev, self._c)
            if reps is not None:  # learned: this shape's later records share their repeating values
                shape = self._shapes[sk] = _Shape(shape.own, shape.cover, shape.n_ents, shape.const, shape.packed,
                                                  shape.tid_is_pid, reps)
        elif packed and ents:
            self._prove(ev, shape)
        pool = self._values
        t_s = ev.get("time")
        if type(t_s) is int and type(t_ns) is int and t_s == t_ns // 1_000_000_000:
            t_s = _FROM_NS  # made again from time_ns on reading
        first = (t_ns << 128) | (mono << 64) | seq if packed else t_ns  # type: ignore[operator]
        texts, ints = shape.texts(ev), shape.ints(ev)
        try:  # declared types hold (validate checks every source); intern takes exactly str
            tv = tuple(map(intern, texts))  # freed when the last holder goes (not immortal before 3.12)
        except TypeError:
            tv = tuple(intern(v) if type(v) is str else v for v in texts)
        if set(map(type, ints)) <= _INT_T:  # exactly int: a bool must not take an int's place
            iv = tuple(map(pool.setdefault, ints, ints))
        else:
            iv = tuple(pool.setdefault(v, v) if type(v) is int else v for v in ints)
        others = shape.others(ev)
        if shape.others_how:
            others = tuple(map(_keep, others, shape.others_how))
        t_s = pool.setdefault(t_s, t_s) if type(t_s) is int else t_s
        if not shape.own_at:
            return (first, t_s, shape, *ents, *tv, *iv, *others)
        rv = shape.reps(ev)
        if set(map(type, rv)) <= _SHARE_T:
            rt = self._combos.get(rv)
            if rt is None:
                rt = self._combos[rv] = _shared(rv, pool)
        else:  # a type no declaration allows: kept exactly, not shared
            rt = tuple([intern(v) if type(v) is str else v for v in rv])
        return (first, t_s, shape, *ents, rt, *tv, *iv, *others)

    def _prove(self, ev: Event, shape: _Shape) -> None:
        """Register the layout of ``ev`` (a packed event with entities, of a learned shape) for
        the fast path, when its values allow one: the time an int, the shared values of types
        that compare exactly."""
        names = _Fast.names_of(shape)
        try:
            vals = itemgetter(*names)(ev)
            key = (ev._ctx[0], len(ev._ctx), len(ev), _const_of(ev))  # type: ignore[attr-defined]
        except (AttributeError, KeyError):
            return
        if type(vals[3]) is not int or type(vals[2]) is not str:
            return
        f = _Fast(shape, self._q[ev["event_type"]].append, vals, names)
        n = len(_FAST_FIXED) + (1 if shape.tid_is_pid else 0)
        if not set(f.types[n:n + len(shape.rep_names)]) <= _SHARE_T:
            return
        fams = self._fast
        if len(fams) > 4096:
            fams.clear()
            self._cfast.clear()
        fam = fams.setdefault(key, [])
        if len(fam) < _FAST_MAX and not any(g.shape is shape and g.types == f.types for g in fam):
            fam.append(f)
            if self._c is not None:
                self._cfast.setdefault(key, []).append(f.native(self._c))

    def expire(self, now_ns: int | None = None) -> None:
        cut = (time.time_ns() if now_ns is None else now_ns) - self.expiry_ns
        with self._lock:
            self._compact()
            for kind, q in self._q.items():
                n = 0
                while q and _time_ns(q[0]) < cut:
                    q.popleft()
                    n += 1
                if n:
                    EXPIRED.labels(kind, "expiry").inc(n)
                BUFFERED.labels(kind).set(len(q))

    # -- reading --------------------------------------------------------------------------------
    @staticmethod
    def materialize(rec: tuple[Any, ...]) -> EventDict:
        """The event as a dict again (its own values plus its entities' values)."""
        shape: _Shape | None = rec[_SHAPE]
        if shape is None:  # kept as a plain copy (see submit)
            return EventDict(rec[_ENTS])
        start = _ENTS + shape.n_ents
        if shape.own_at:
            ev = EventDict(zip(shape.rep_names, rec[start], strict=True))
            ev.update(zip(shape.names, rec[start + 1:], strict=True))
        else:
            ev = EventDict(zip(shape.names, rec[start:], strict=True))
        eid = ev.get("event_id")
        if type(eid) is int:
            ev["event_id"] = f"{RUN_PREFIX}-{eid:x}"
        if shape.const:
            ev.update(shape.const)
        if shape.tid_is_pid:
            ev["tid"] = ev["pid"]
        argv = ev.get("argv")
        if type(argv) is _Argv:
            ev["argv"] = argv.split("\0")
        first = rec[_T_NS]
        if shape.packed:
            ev["time_ns"], ev["mono_ns"] = first >> 128, (first >> 64) & _M64
            ev["event_id"] = f"{RUN_PREFIX}-{first & _M64:x}"
        elif first is not None:
            ev["time_ns"] = first
        t_s = rec[_T_S]
        if t_s is _FROM_NS:
            ev["time"] = ev["time_ns"] // 1_000_000_000
        elif t_s is not None:
            ev["time"] = t_s
        ents = rec[_ENTS:start]
        for e in ents:
            ev.update(e.items())
        attach(ev, ents, shape.cover)
        return ev

    def records(self, kind: Kind, since_s: float | None = None, until_s: float | None = None) -> list[tuple[Any, ...]]:
        """A snapshot of the compact records, narrowed by time (arrival order, close to time order)."""
        self.expire()
        with self._lock:
            recs = list(self._q[kind.value])
        if since_s is not None:
            recs = [r for r in recs if _time_s(r) >= since_s]
        if until_s is not None:
            recs = [r for r in recs if _time_s(r) <= until_s]
        return recs

    def iter_events(self, kind: Kind, since_s: float | None = None, until_s: float | None = None) -> Iterator[EventDict]:
        """Events one at a time from a snapshot of the records: a full scan never holds more
        than one materialized event."""
        m = self.materialize
        for r in self.records(kind, since_s, until_s):
            yield m(r)

    def events(self, kind: Kind, since_s: float | None = None, until_s: float | None = None) -> list[Event]:
        return list(self.iter_events(kind, since_s, until_s))

    def __len__(self) -> int:
        self.end_batch()
        return sum(len(q) for q in self._q.values())

    def close(self) -> None:
        return None
