"""Shared context entities: the process, container and pod facts many events have in common.

An event stays a flat dict keyed by the declared names (every consumer reads it as before),
and it also carries references to the immutable entities its context came from (``ev.ctx``).
A stage that fills context fields builds an entity once per version of its subject (a
process per exec, a container per cgroup, a pod per PodInfo) and attaches it; outputs render
an entity once per format and keep the text in ``Entity.memo``, then write for each event
only its own fields plus the cached fragments. The osquery buffers keep the references
instead of the fields, so buffered events share their ancestry and pod context.

The rule that keeps this honest: every value of an attached entity is the event's value for
that name. ``share`` checks it on each event (one C-level comparison of value tuples) and
makes a new version when anything differs (a pod's labels changed, the process exec'd, a
parent exec'd), so a fragment can never be stale; ``consistent`` checks it in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from sys import intern
from typing import Any, Final

from podtrail.model.fields import FIELDS

_NONE: Final[frozenset[str]] = frozenset()


class EventDict(dict[str, Any]):
    """The event dict, plus the context entities attached by the stages and the names they
    cover, in one slot: ``(cover, *entities)``, unset until a stage attaches something (no
    per-event cost before). Copies (``dict(ev)``) and plain dicts carry no entities; every
    consumer then renders all fields itself, which is always correct, only slower."""

    __slots__ = ("_ctx",)
    _ctx: tuple[Any, ...]

    @property
    def ctx(self) -> tuple[Entity, ...]:
        c = getattr(self, "_ctx", None)
        return c[1:] if c else ()

    @property
    def cover(self) -> frozenset[str]:
        c = getattr(self, "_ctx", None)
        return c[0] if c else _NONE


class EntityKind:
    """A group of fields one stage owns."""

    __slots__ = ("name", "names")

    def __init__(self, name: str, names: Iterable[str]) -> None:
        self.name = name
        self.names: tuple[str, ...] = tuple(names)
        for n in self.names:
            assert n in FIELDS, f"entity field {n!r} is not declared in fields.py"


PROCESS_CTX: Final = EntityKind("process", (
    "process_key", "ppid", "parent_key", "path", "cmdline", "cwd", "user", "parent_path", "parent_cmdline", "ancestors"))
CONTAINER_CTX: Final = EntityKind("container", (
    "cgroup_id", "cgroup_path", "container_id", "container_runtime", "container_id_method", "pod_uid", "qos_class"))
POD_CTX: Final = EntityKind("pod", (
    "pod_name", "namespace", "service_account", "pod_ips", "host_network", "host_pid", "workload_kind", "workload_name",
    "pod_labels", "node_name", "cluster_name", "metadata_source", "container_name", "image", "image_digest", "privileged"))
KINDS: Final = (PROCESS_CTX, CONTAINER_CTX, POD_CTX)


class Entity:
    """Immutable by contract: its values (present names only) never change after creation;
    a change is a new Entity. ``memo`` holds each output's rendering of it, by format name.

    Stored as a shared tuple of names and a tuple of values (a third of a dict's size: the
    osquery buffers keep one per process for as long as its events are buffered).

    Never part of a reference cycle: its values are the event's data (texts, numbers, lists and
    dicts of those), ``memo`` holds renderings of them, and nothing it refers to refers back to
    an entity. So an exited process's entity leaves the cyclic collector with it
    (podtrail/procs/_retire.c, which checks each value) and is freed by reference counting."""

    __slots__ = ("kind", "names", "vals", "keys", "memo")

    def __init__(self, kind: EntityKind, values: dict[str, Any]) -> None:
        self.kind = kind
        names = tuple(values)
        self.names: tuple[str, ...] = _NAMES.get(names) or _shared(_NAMES, names)
        self.vals: tuple[Any, ...] = tuple(values.values())
        keys = frozenset(names)
        self.keys: frozenset[str] = _KEYSETS.get(keys) or _shared(_KEYSETS, keys)
        self.memo: dict[str, Any] | None = None  # made on first use: table-only agents never need it

    @property
    def values(self) -> dict[str, Any]:
        """The values as a new dict (for rendering once, and for reading back)."""
        return dict(zip(self.names, self.vals, strict=True))

    def items(self) -> Iterable[tuple[str, Any]]:
        return zip(self.names, self.vals, strict=True)

    def fragment(self, fmt: str, build: Callable[[dict[str, Any]], Any]) -> Any:
        """This entity rendered for ``fmt``, built once by ``build(values)`` and kept."""
        m = self.memo
        if m is None:
            m = self.memo = {}
        f = m.get(fmt)
        if f is None:
            f = m[fmt] = build(self.values)
        return f

    def matches(self, ev: dict[str, Any]) -> bool:
        """Every value of the entity is the event's (C-level: map, then a tuple comparison
        that takes identical objects as equal without calling their ``__eq__``)."""
        return tuple(map(ev.get, self.names)) == self.vals

    def __repr__(self) -> str:
        return f"Entity({self.kind.name}, {self.values!r})"


_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(table: dict[Any, Any], key: Any) -> Any:
    if len(table) > 4096:
        table.clear()
    table[key] = key
    return key


_KEYSETS: dict[frozenset[str], frozenset[str]] = {}


SHARED_TEXT_MAX = 512  # an entity's text up to this long is interned (see shared_text)


def shared_text(s: str) -> str:
    """An entity's text as entities keep it: equal strings of many entities (paths, parents'
    command lines) one object."""
    return intern(s) if len(s) <= SHARED_TEXT_MAX else s


def snapshot(kind: EntityKind, ev: dict[str, Any]) -> Entity:
    """A new entity from the event's current values for the kind's names."""
    get = ev.get
    vals = {}
    for n in kind.names:
        v = get(n)
        if v is not None:
            # shared_text, inline: this runs for every value of every new entity
            vals[n] = intern(v) if type(v) is str and len(v) <= SHARED_TEXT_MAX else v
    return Entity(kind, vals)


_WHOLE: dict[EntityKind, tuple[tuple[str, ...], frozenset[str]]] = {}


def whole(kind: EntityKind, vals: tuple[Any, ...]) -> Entity:
    """The entity ``snapshot`` makes of an event that has a value (not None) for every name of
    ``kind``: ``vals`` in the kind's order. Without snapshot's pass over the names, for a stage
    that has just set each of them (the process stage, once per exec); the caller interns
    what is worth sharing."""
    shape = _WHOLE.get(kind)
    if shape is None:
        shape = _WHOLE[kind] = (_NAMES.get(kind.names) or _shared(_NAMES, kind.names), frozenset(kind.names))
    e = Entity.__new__(Entity)
    e.kind, e.vals, e.memo = kind, vals, None
    e.names, e.keys = shape
    return e


_UNIONS: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] = {}


def share(ev: dict[str, Any], kind: EntityKind, cached: Entity | None) -> Entity:
    """Attach the entity for ``ev``'s current context: ``cached`` when the event still has
    every one of its values, else a new version. Returns what was attached (the caller keeps
    it for the next event). The event's other names of the kind stay its own fields."""
    ent = cached if cached is not None and cached.matches(ev) else snapshot(kind, ev)
    put(ev, ent)
    return ent


def put(ev: dict[str, Any], ent: Entity) -> None:
    """Attach ``ent``, whose values the caller has just given the event (``share`` without
    the comparison: for a stage that filled the event from the entity itself)."""
    if type(ev) is not EventDict:
        return
    cur = getattr(ev, "_ctx", None)
    if cur is None:
        ev._ctx = (ent.keys, ent)
        return
    kind = ent.kind
    n = len(cur)
    # the common cases (the stages in order: process, container, pod), with their cover known
    if n == 2 and cur[1].kind is not kind:
        u = _UNIONS.get((cur[0], ent.keys))
        if u is not None:
            ev._ctx = (u, cur[1], ent)
            return
    elif n == 3 and cur[1].kind is not kind and cur[2].kind is not kind:
        u = _UNIONS.get((cur[0], ent.keys))
        if u is not None:
            ev._ctx = (u, cur[1], cur[2], ent)
            return
    ents = cur[1:]
    cover = cur[0]
    for e in ents:
        if e.kind is kind:  # attached again (a second pass): replace it
            ents = tuple(x for x in ents if x.kind is not kind)
            cover = frozenset().union(*(x.keys for x in ents))
            break
    key = (cover, ent.keys)
    u = _UNIONS.get(key)
    if u is None:
        if len(_UNIONS) > 4096:
            _UNIONS.clear()
        u = _UNIONS[key] = cover | ent.keys
    ev._ctx = (u, *ents, ent)


def attach(ev: EventDict, ents: tuple[Entity, ...], cover: frozenset[str]) -> None:
    """Put entities back on an event made again from them (the osquery buffers)."""
    if ents:
        ev._ctx = (cover, *ents)


def covered(ev: dict[str, Any]) -> tuple[tuple[Entity, ...], frozenset[str]]:
    """The event's entities and the names they cover; ((), empty) for a plain dict."""
    c = getattr(ev, "_ctx", None) if type(ev) is EventDict else None
    if c is None:
        return (), _NONE
    return c[1:], c[0]


def consistent(ev: dict[str, Any]) -> list[str]:
    """Names where an attached entity and the event disagree (the invariant, for tests)."""
    return [f"{e.kind.name}.{k}" for e in covered(ev)[0] for k, v in e.items() if ev.get(k) != v]
