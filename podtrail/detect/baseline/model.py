"""The profile of one workload: what it was seen doing while learning, per list.

A workload (cluster, namespace, controller kind, controller name) is the unit: its replicas
share one profile. Each image digest gets its own profile version; the previous versions are
kept (read-only) for comparison. Plain data with a small API; persistence is in ``store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from podtrail.detect.baseline.normalize import LISTS, matches

LEARN, MONITOR, OFF = "learn", "monitor", "off"
MODES: Final = (LEARN, MONITOR, OFF)
KEEP_VERSIONS: Final = 3  # previous versions kept per workload


class WorkloadKey(NamedTuple):
    """A tuple (cheap to build and hash on the per-event path), ordered for listings."""

    cluster: str
    namespace: str
    kind: str  # Deployment, StatefulSet, ..., or Pod for a pod without a controller
    name: str

    @property
    def text(self) -> str:
        """``cluster/namespace/Kind/name`` (cluster empty when not configured)."""
        return f"{self.cluster}/{self.namespace}/{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> WorkloadKey:
        parts = text.split("/")
        if len(parts) == 3:
            parts = ["", *parts]
        if len(parts) != 4 or not all(parts[1:]):
            raise ValueError(f"workload {text!r}: expected [cluster/]namespace/Kind/name")
        return cls(*parts)

    def as_dict(self) -> dict[str, str]:
        return {"cluster": self.cluster, "namespace": self.namespace, "kind": self.kind, "name": self.name}


@dataclass(slots=True)
class ProfileVersion:
    """One image digest's learned behaviour."""

    version: int
    images: dict[str, str]  # container name -> image digest this version was learned on
    created: float  # when learning of this version began (epoch seconds)
    items: dict[str, set[str]] = field(default_factory=lambda: {n: set() for n in LISTS})
    overflow: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LISTS, 0))
    events: int = 0  # events learned from
    monitor_since: float | None = None  # when it left learning
    _globs: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def has(self, lst: str, item: str) -> bool:
        s = self.items[lst]
        if item in s:
            return True
        globs = self._globs.get(lst)
        if globs is None:
            globs = self._globs[lst] = tuple(p for p in s if "*" in p)
        return any(matches(p, item) for p in globs)

    def add(self, lst: str, item: str, max_items: int) -> bool:
        """Learn ``item``; False when it was known already or the list is full (counted)."""
        s = self.items[lst]
        if item in s:
            return False
        if len(s) >= max_items:
            self.overflow[lst] += 1
            return False
        s.add(item)
        if "*" in item:
            self._globs.pop(lst, None)
        return True

    def counts(self) -> dict[str, int]:
        return {n: len(self.items[n]) for n in LISTS}


@dataclass(slots=True)
class Profile:
    """A workload's current profile version, its mode and the versions before it."""

    key: WorkloadKey
    current: ProfileVersion
    mode: str = LEARN
    pinned: bool = False  # mode set by hand (`podtrail profile mode`): no automatic change
    last_change: float = 0.0  # last time anything learned or the mode changed
    previous: list[ProfileVersion] = field(default_factory=list)

    def new_version(self, images: dict[str, str], now: float, mode: str) -> None:
        """A new image: keep the old version for comparison, learn the new one from scratch."""
        self.previous.insert(0, self.current)
        del self.previous[KEEP_VERSIONS:]
        self.current = ProfileVersion(self.current.version + 1, dict(images), now)
        self.mode = mode
        self.pinned = False
        self.last_change = now

    def summary(self) -> dict[str, Any]:
        """One row for ``container_profiles`` and ``podtrail profile list``."""
        v = self.current
        return {"workload": self.key.text, "cluster_name": self.key.cluster, "namespace": self.key.namespace,
                "workload_kind": self.key.kind, "workload_name": self.key.name, "mode": self.mode,
                "pinned": self.pinned, "version": v.version,
                "image_digest": ",".join(f"{c}={d}" for c, d in sorted(v.images.items())),
                "learned_since": int(v.created), "monitor_since": int(v.monitor_since) if v.monitor_since else None,
                "events": v.events, **v.counts(), "overflow": sum(v.overflow.values()),
                "last_change": int(self.last_change), "previous_versions": len(self.previous)}
