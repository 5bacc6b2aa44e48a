"""osquery rows of buffered events, written straight as Thrift binary bytes: no row dicts.

A row on the wire is a ``map<string,string>``: TBinaryProtocol writes the key type, the value
type, an i32 pair count, then each key and value as an i32 length and its UTF-8 bytes. Pair
order is free, so a row is written as three kinds of pieces:

- per buffer shape (``buffer._Shape``: the names and constants its events share), the map
  header and the pairs every event of that shape has alike: its constant fields and the
  columns it lacks ("" each), encoded once;
- per context entity (process, container, pod), its columns' pairs, encoded once per entity
  version and table: kept on the entity (``Entity.memo``) for containers and pods, which are
  few and shared by many events, and in a bounded memo of the query for processes, which are
  many and short-lived (keeping theirs would cost the buffers' memory goal);
- per event, its own values, a group of texts and a group of integers each encoded by C-level
  maps, the rest one by one.

Every column is sent, "" when the event lacks it, so the count is the table's column count.
What a row says is exactly what ``row_maker(spec)(EventBuffers.materialize(rec))`` says
(tests decode both with thrift's readers and osquery-python's client), with one difference on
purpose: text that is not valid Unicode goes out with backslash escapes (``cells.text_bytes``)
instead of failing the whole reply.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

from podtrail.model.context import Entity
from podtrail.model.event import RUN_PREFIX
from podtrail.model.fields import FIELDS, FieldType
from podtrail.tables import buffer as buf
from podtrail.tables.cells import cell_bytes, json_bytes, text_bytes
from podtrail.tables.schema import Column, TableSpec

STRING = 11  # TType.STRING
_MAP = struct.Struct(">bbi").pack
_LEN = struct.Struct(">i").pack
# Entity kinds whose rendering is kept on the entity itself (few, widely shared).
KEEP_ON_ENTITY = frozenset({"container", "pod"})
_MEMO_MAX = 1024  # the query's memo of process entities' bytes (a process's events arrive close together)
CHUNK = 512  # rows per written chunk
_STR_T = frozenset({str})
_INT_T = frozenset({int})
_INT_BOOL_T = frozenset({int, bool})  # b"%d" % True == b"1", as render writes a boolean
_DEC = b"%d".__mod__
_ID_HEAD = f"{RUN_PREFIX}-".encode()


def key_bytes(name: str) -> bytes:
    b = name.encode()
    return _LEN(len(b)) + b


def pair(key: str, value: Any, as_json: bool = False) -> bytes:
    vb = cell_bytes(value, as_json)
    return key_bytes(key) + _LEN(len(vb)) + vb


def row_bytes(row: dict[str, str]) -> bytes:
    """A row dict as a Thrift binary ``map<string,string>``."""
    return _MAP(STRING, STRING, len(row)) + b"".join([pair(k, v) for k, v in row.items()])


def _pairs(kbs: tuple[bytes, ...], vbs: Iterable[bytes]) -> Iterator[bytes]:
    """key, length, value, key, length, value, ... (C-level)."""
    vbs = tuple(vbs)
    return chain.from_iterable(zip(kbs, map(_LEN, map(len, vbs)), vbs, strict=True))


class Unplannable(Exception):
    """A shape whose records this module does not write directly (they take the dict path)."""


Getter = Callable[[tuple[Any, ...]], Any]


class _Group:
    """Own values of one kind (texts, integers, the rest): their record slots and key bytes."""

    __slots__ = ("get", "kbs", "cols")

    def __init__(self, slots: list[tuple[int, Column]]) -> None:
        self.get = buf._getter(tuple(i for i, _ in slots))
        self.kbs = tuple(key_bytes(c.name) for _, c in slots)
        self.cols = tuple(c for _, c in slots)


class _Plan:
    """How one table writes the records of one shape, and reads single values from them."""

    __slots__ = ("head", "start", "shared", "own", "groups", "seen", "n_seen", "packed", "special", "n_cover", "getters")

    def __init__(self, spec: TableSpec, shape: Any) -> None:
        cols = {c.key: c for c in spec.columns}
        if len(cols) != len(spec.columns):
            raise Unplannable("two columns read one field")
        start = buf._ENTS + shape.n_ents
        pos = {n: start + shape.own_at + i for i, n in enumerate(shape.names)}
        taken: set[str] = set()

        def take(k: str) -> bool:
            if k not in cols:
                return False
            if k in taken:
                raise Unplannable(f"{k} from two places")
            taken.add(k)
            return True

        getters: dict[str, Getter] = {}
        static: list[bytes] = []
        own: list[tuple[int, Column]] = []
        for n, i in pos.items():
            getters[n] = _own_getter(n, i)
            if take(n):
                own.append((i, cols[n]))
        # The values the buffer keeps as one shared tuple: their pairs cached per tuple.
        self.shared: tuple[int, tuple[tuple[bytes, bool] | None, ...], dict[Any, tuple[Any, bytes]]] | None = None
        if shape.own_at:
            for j, n in enumerate(shape.rep_names):
                getters[n] = _shared_getter(start, j)
            self.shared = (start, tuple((key_bytes(cols[n].name), cols[n].json) if take(n) else None
                                        for n in shape.rep_names), {})
        self.own = tuple(own)
        self.groups = _groups(self.own, ())
        # Which own values repeat (uid, comm, namespaces, ...) is learned from the first records:
        # those are then encoded once per distinct combination (a C-level tuple lookup).
        self.seen: list[set[Any] | None] | None = [set() if _cacheable(c) else None for _, c in own]
        self.n_seen = 0
        for k, v in shape.const.items():
            getters[k] = _const(v)
            if take(k):
                static.append(pair(cols[k].name, v, cols[k].json))
        t_ns: Getter = (lambda r: r[0] >> 128) if shape.packed else (lambda r: r[0])
        specials: dict[str, Getter] = {"time_ns": t_ns}
        if shape.packed:
            specials["mono_ns"] = lambda r: (r[0] >> 64) & buf._M64
            specials["event_id"] = lambda r: f"{RUN_PREFIX}-{r[0] & buf._M64:x}"

        def t_s(r: tuple[Any, ...]) -> Any:
            t = r[buf._T_S]
            return t_ns(r) // 1_000_000_000 if t is buf._FROM_NS else t

        specials["time"] = t_s
        if shape.tid_is_pid:
            specials["tid"] = getters["pid"]
        special: list[tuple[bytes, bool, Getter]] = []
        for k, g in specials.items():
            getters[k] = g
            if take(k):
                special.append((key_bytes(cols[k].name), cols[k].json, g))
        # the common layout, written without getters: time_ns, mono_ns, event_id, time, tid
        self.packed: tuple[bytes, bytes, bytes, bytes, bytes, int] | None = None
        names = [k for k in specials if k in cols]
        if shape.packed and shape.tid_is_pid and names == ["time_ns", "mono_ns", "event_id", "time", "tid"] \
                and "pid" in pos and all(not cols[k].json for k in names):
            self.packed = (*(key_bytes(cols[k].name) for k in names), pos["pid"])  # type: ignore[assignment]
        self.special = tuple(special)
        self.n_cover = sum(take(k) for k in shape.cover)
        for k in shape.cover:
            getters[k] = _entity_getter(k, buf._ENTS, start)
        for c in spec.columns:
            if c.key not in taken:
                static.append(pair(c.name, ""))
        self.head = _MAP(STRING, STRING, len(spec.columns)) + b"".join(static)
        self.start = start
        self.getters = getters

    def observe(self, rec: tuple[Any, ...]) -> None:
        seen = self.seen
        if seen is None:
            return
        for k, ((i, _), vals) in enumerate(zip(self.own, seen, strict=True)):
            if vals is not None:
                v = rec[i]
                if type(v) in _CACHE_T and len(vals) <= _REPEAT_MAX:
                    vals.add(v)
                else:
                    seen[k] = None
        self.n_seen += 1
        if self.n_seen >= _LEARN and self.seen is not None:
            rep = tuple(i for (i, _), vals in zip(self.own, seen, strict=True) if vals is not None and len(vals) <= _REPEAT_MAX)
            self.groups = _groups(self.own, rep)
            self.seen = None

    def shared_bytes(self, rec: tuple[Any, ...]) -> bytes:
        at, kjs, cache = self.shared  # type: ignore[misc]
        rt = rec[at]
        try:
            hit = cache.get(rt)
        except TypeError:
            hit = None
        if hit is not None and hit[0] is rt:  # the very tuple: the same values, the same types
            return hit[1]  # type: ignore[no-any-return]
        b = b"".join([kj[0] + _LEN(len(vb)) + vb for kj, v in zip(kjs, rt, strict=True) if kj is not None
                      for vb in (cell_bytes(v, kj[1]),)])
        if set(map(type, rt)) <= _CACHE_T:
            if len(cache) > 4096:
                cache.clear()
            cache[rt] = (rt, b)
        return b


_CACHE_T = frozenset({str, int, bool, type(None)})  # equal values of these render alike (True == 1: "1")
_LEARN, _REPEAT_MAX = 256, 32  # records observed; at most this many distinct values: a repeating column


def _cacheable(c: Column) -> bool:
    return not c.json and c.key not in ("argv", "event_id")


class _Groups:
    """Own values split by how they are written: repeating ones (one cached piece per distinct
    combination), texts and integers (C-level maps), the rest one by one."""

    __slots__ = ("rep", "rep_cols", "cache", "texts", "ints", "others", "others_how")

    def __init__(self, rep: list[tuple[int, Column]], texts: list[tuple[int, Column]], ints: list[tuple[int, Column]],
                 others: list[tuple[int, Column]]) -> None:
        self.rep = buf._getter(tuple(i for i, _ in rep)) if rep else None
        self.rep_cols = tuple((key_bytes(c.name), c.json) for _, c in rep)
        self.cache: dict[tuple[Any, ...], bytes] = {}
        self.texts, self.ints, self.others = _Group(texts), _Group(ints), _Group(others)
        self.others_how = tuple("argv" if c.key == "argv" else "id" if c.key == "event_id" else "" for _, c in others)

    def repeating(self, rec: tuple[Any, ...]) -> bytes:
        vals = self.rep(rec)  # type: ignore[misc]
        b = self.cache.get(vals) if set(map(type, vals)) <= _CACHE_T else None
        if b is None:
            b = b"".join([kb + _LEN(len(vb)) + vb for (kb, js), v in zip(self.rep_cols, vals, strict=True)
                          for vb in (cell_bytes(v, js),)])
            if set(map(type, vals)) <= _CACHE_T:
                if len(self.cache) > 4096:
                    self.cache.clear()
                self.cache[vals] = b
        return b


def _groups(own: tuple[tuple[int, Column], ...], rep: tuple[int, ...]) -> _Groups:
    reps: list[tuple[int, Column]] = []
    texts: list[tuple[int, Column]] = []
    ints: list[tuple[int, Column]] = []
    others: list[tuple[int, Column]] = []
    for i, c in own:
        t = FIELDS[c.key].type if c.key in FIELDS else None
        if i in rep:
            reps.append((i, c))
        elif not _cacheable(c):
            others.append((i, c))
        elif t is FieldType.TEXT:
            texts.append((i, c))
        elif t in (FieldType.INTEGER, FieldType.BIGINT):
            ints.append((i, c))
        else:
            others.append((i, c))
    return _Groups(reps, texts, ints, others)


def _const(v: Any) -> Getter:
    return lambda r: v


def _own_getter(name: str, i: int) -> Getter:
    if name == "argv":
        return lambda r: r[i].split("\0") if type(r[i]) is buf._Argv else r[i]
    if name == "event_id":
        return lambda r: f"{RUN_PREFIX}-{r[i]:x}" if type(r[i]) is int else r[i]
    return lambda r: r[i]


def _entity_getter(key: str, a: int, b: int) -> Getter:
    def get(r: tuple[Any, ...]) -> Any:
        for e in r[a:b]:
            if key in e.keys:
                return e.vals[e.names.index(key)]
        return None
    return get


def _shared_getter(at: int, j: int) -> Getter:
    return lambda r: r[at][j]


def _remember(memo: dict[Any, tuple[bytes, int]], e: Entity,
              build: Callable[[Entity], tuple[bytes, int]]) -> tuple[bytes, int]:
    if len(memo) > _MEMO_MAX:
        memo.clear()
    m = memo[e] = build(e)
    return m


class TableWriter:
    """Rows of one table from buffer records: as wire bytes, and single values for filters.
    ``fallback`` makes the row dict of a record no plan covers (plain copies, odd shapes)."""

    def __init__(self, spec: TableSpec, fallback: Callable[[tuple[Any, ...]], dict[str, str]]) -> None:
        self.spec = spec
        self.fallback = fallback
        self.fmt = "osquery:" + spec.name
        self.cols = {c.key: c for c in spec.columns}
        self._plans: dict[Any, _Plan | None] = {}
        self._ent_plans: dict[tuple[str, ...], tuple[tuple[bytes, bool] | None, ...]] = {}

    def plan(self, shape: Any) -> _Plan | None:
        p = self._plans.get(shape, False)
        if p is False:
            try:
                p = _Plan(self.spec, shape) if shape is not None else None
            except Exception:  # noqa: BLE001 - Unplannable, or a layout this writer misreads: the dict path is exact
                p = None
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[shape] = p
        return p  # type: ignore[return-value]

    def _entity_bytes(self, names: tuple[str, ...], vals: Iterable[Any]) -> tuple[bytes, int]:
        plan = self._ent_plans.get(names)
        if plan is None:
            if len(self._ent_plans) > 4096:
                self._ent_plans.clear()
            plan = self._ent_plans[names] = tuple(
                (key_bytes(self.cols[n].name), self.cols[n].json) if n in self.cols else None for n in names)
        out: list[bytes] = []
        for v, kj in zip(vals, plan, strict=True):
            if kj is None:
                continue
            if kj[1]:
                vb = b"" if v is None else json_bytes(v)
            elif v.__class__ is str:
                try:
                    vb = v.encode()
                except UnicodeEncodeError:
                    vb = text_bytes(v)
            else:
                vb = cell_bytes(v, False)
            out += (kj[0], _LEN(len(vb)), vb)
        return b"".join(out), len(out) // 3

    def _entity(self, e: Entity) -> tuple[bytes, int]:
        if e.kind.name in KEEP_ON_ENTITY:
            return e.fragment(self.fmt, lambda values: self._entity_bytes(e.names, e.vals))  # type: ignore[no-any-return]
        return self._entity_bytes(e.names, e.vals)

    def _entities(self, ents: tuple[Entity, ...], memo: dict[Any, tuple[bytes, int]]) -> tuple[bytes, int]:
        """The pairs of a combination of entities (a process, its container, its pod)."""
        parts = [memo.get(e) or _remember(memo, e, self._entity) for e in ents]
        eb = b"".join([m[0] for m in parts]), sum([m[1] for m in parts])
        if len(memo) > _MEMO_MAX:
            memo.clear()
        memo[ents] = eb
        return eb

    def chunks(self, recs: Iterable[tuple[Any, ...]], chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
        """(rows, their bytes) per ``chunk`` records: each row a complete map."""
        out: list[bytes] = []
        n = 0
        memo: dict[Any, tuple[bytes, int]] = {}
        for rec in recs:
            self._row(rec, out, memo)
            n += 1
            if n == chunk:
                yield n, b"".join(out)
                out.clear()
                n = 0
        if n:
            yield n, b"".join(out)

    def _row(self, rec: tuple[Any, ...], out: list[bytes], memo: dict[Any, tuple[bytes, int]]) -> None:
        shape = rec[buf._SHAPE]
        p = self._plans.get(shape) or self.plan(shape)
        if p is None:
            out.append(row_bytes(self.fallback(rec)))
            return
        ents = rec[buf._ENTS:p.start]
        eb = memo.get(ents)
        if eb is None:
            eb = self._entities(ents, memo)
        if eb[1] != p.n_cover:  # not what the shape says: never on the wire
            out.append(row_bytes(self.fallback(rec)))
            return
        add = out.append
        add(p.head)
        add(eb[0])
        if p.shared is not None:
            add(p.shared_bytes(rec))
        if p.seen is not None:
            p.observe(rec)
        gs = p.groups
        if gs.rep is not None:
            add(gs.repeating(rec))
        g = gs.texts
        if g.kbs:
            tv = g.get(rec)
            try:
                enc: Iterable[bytes] = map(str.encode, tv) if set(map(type, tv)) <= _STR_T else (cell_bytes(v, False) for v in tv)
                out.extend(_pairs(g.kbs, enc))
            except UnicodeEncodeError:
                out.extend(_pairs(g.kbs, map(text_bytes, tv)))
        g = gs.ints
        for kb, v in zip(g.kbs, g.get(rec), strict=True):
            vb = _DEC(v) if v.__class__ is int else cell_bytes(v, False)
            out += (kb, _LEN(len(vb)), vb)
        g = gs.others
        for v, kb, c, how in zip(g.get(rec), g.kbs, g.cols, gs.others_how, strict=True):
            if how == "argv" and type(v) is buf._Argv:
                v = v.split("\0")
            elif how == "id" and type(v) is int:
                v = f"{RUN_PREFIX}-{v:x}"
            vb = cell_bytes(v, c.json)
            out += (kb, _LEN(len(vb)), vb)
        pk = p.packed
        if pk is not None and type(rec[0]) is int:
            first = rec[0]
            t = first >> 128
            ts = rec[buf._T_S]
            pid = rec[pk[5]]
            mono = _DEC((first >> 64) & buf._M64)
            tb = _DEC(t)
            ts = _DEC(t // 1_000_000_000) if ts is buf._FROM_NS else cell_bytes(ts, False)
            pid = _DEC(pid) if pid.__class__ is int else cell_bytes(pid, False)
            eid = _ID_HEAD + b"%x" % (first & buf._M64)
            out += (pk[0], _LEN(len(tb)), tb, pk[1], _LEN(len(mono)), mono, pk[2], _LEN(len(eid)), eid,
                    pk[3], _LEN(len(ts)), ts, pk[4], _LEN(len(pid)), pid)
        else:
            for kb, as_json, get in p.special:
                vb = cell_bytes(get(rec), as_json)
                out += (kb, _LEN(len(vb)), vb)

    def getter(self, shape: Any, key: str) -> Getter | None:
        """The value a record of ``shape`` has for ``key`` (as its event dict would), or None
        when only materializing the record can tell."""
        p = self.plan(shape)
        if p is None:
            return None
        return p.getters.get(key, _const(None))


class WireRows:
    """The rows of selected records, ready as wire bytes (``chunks``); iterating them gives
    the same rows as dicts (for a caller that is not on the binary protocol)."""

    def __init__(self, writer: TableWriter, recs: list[tuple[Any, ...]]) -> None:
        self.writer = writer
        self.recs = recs

    def __len__(self) -> int:
        return len(self.recs)

    def __iter__(self) -> Iterator[dict[str, str]]:
        return map(self.writer.fallback, self.recs)

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        return self.writer.chunks(self.recs)
