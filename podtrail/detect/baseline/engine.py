"""Learner and monitor: one call per event, returning what was new (in monitor mode).

``Baselines.check(ev, now)`` finds the event's workload, keeps its profile version in step
with the container's image digest, learns the event's items while the profile learns, moves
it to monitor once it has learned for ``learn_seconds`` and seen ``min_events``, and in
monitor mode returns one ``Finding`` per item outside the profile, at most once per
(workload, list, item) within ``alert_window_seconds``. No I/O: the stage persists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from podtrail.config import BaselineConfig
from podtrail.detect.baseline.model import LEARN, MONITOR, OFF, Profile, ProfileVersion, WorkloadKey
from podtrail.detect.baseline.normalize import items_of
from podtrail.detect.baseline.unit import unit_of

_SEEN_MAX = 100_000  # remembered (workload, list, item) alert times; oldest forgotten first


@dataclass(frozen=True, slots=True)
class Finding:
    """Something outside a profile: which item, which list, checked against which profile."""

    workload: WorkloadKey
    list: str
    item: str
    version: int
    learned_since: float
    monitor_since: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"list": self.list, "item": self.item, "workload": self.workload.text,
                "profile_version": self.version, "learned_since": int(self.learned_since),
                "monitor_since": int(self.monitor_since) if self.monitor_since else None}


@dataclass
class Stats:
    checked: int = 0  # events with a workload, in a mode other than off
    unattributed: int = 0  # activity events without a workload (host, no pod context)
    learned: int = 0  # items added to profiles
    findings: int = 0
    suppressed: int = 0  # repeats within the alert window
    rate_limited: int = 0  # new items beyond max_alerts_per_window (counted, not alerted)
    new_versions: int = 0
    old_version: int = 0  # events of replicas still on a previous version's image


class Baselines:
    def __init__(self, cfg: BaselineConfig, profiles: Iterable[Profile] = ()) -> None:
        self.cfg = cfg
        self.profiles: dict[WorkloadKey, Profile] = {p.key: p for p in profiles}
        self.dirty: set[WorkloadKey] = set()
        self.full: list[tuple[WorkloadKey, str]] = []  # lists that just reached max_items (the stage reports them)
        self.limited: list[WorkloadKey] = []  # workloads that just ran out of alerts for the window (reported)
        self._budget: dict[WorkloadKey, tuple[float, int]] = {}  # window start, alerts in it
        self.stats = Stats()
        # is a namespace's configured mode off? `(ns in _off_flip) != _default_off`: one set lookup
        self._default_off = cfg.mode == OFF
        self._off_flip = frozenset(ns for ns, m in cfg.namespaces.items() if (m == OFF) != self._default_off)
        self._alerted: OrderedDict[tuple[WorkloadKey, int, str, str], float] = OrderedDict()

    # -- profile lifecycle --------------------------------------------------------------------
    def _profile(self, unit: tuple[str, str, str, str], ev: dict[str, Any], now: float) -> tuple[Profile | None, ProfileVersion | None]:
        """The workload's profile and the version this event is checked against: the current
        one, or during a rollout an older one whose image the event's container still runs
        (None then when that version never finished learning: nothing to check against)."""
        p = self.profiles.get(unit)  # type: ignore[call-overload]  # a tuple equal to its WorkloadKey
        container, digest = ev.get("container_name") or "", ev.get("image_digest") or ""
        if p is None:
            key = WorkloadKey(*unit)
            mode = self.cfg.mode_for(key.namespace)
            if mode == OFF:
                return None, None
            images = {container: digest} if digest else {}
            p = Profile(key, ProfileVersion(1, images, now), mode=mode, last_change=now)
            if mode == MONITOR:  # monitor with nothing learned: everything is new, by request
                p.current.monitor_since = now
            self.profiles[key] = p
            self.dirty.add(key)
            return p, p.current
        key = p.key
        if digest:
            known = p.current.images.get(container)
            if known is None:
                p.current.images[container] = digest
                self.dirty.add(key)
            elif known != digest:
                for old in p.previous:
                    if old.images.get(container) == digest:  # an old replica, still running
                        self.stats.old_version += 1
                        return p, old if old.monitor_since is not None else None
                mode = self.cfg.mode_for(key.namespace)
                p.new_version({container: digest}, now, LEARN if mode != OFF else OFF)
                self.stats.new_versions += 1
                self.dirty.add(key)
        return p, p.current

    def _maybe_graduate(self, p: Profile, now: float) -> None:
        v = self.cfg
        if (not p.pinned and now - p.current.created >= v.learn_seconds and p.current.events >= v.min_events):
            p.mode = MONITOR
            p.current.monitor_since = now
            p.last_change = now
            self.dirty.add(p.key)

    def graduate(self, now: float) -> None:
        """Move every learning profile that has learned long and much enough to monitor
        (also those that saw no event since their period ended)."""
        for p in self.profiles.values():
            if p.mode == LEARN:
                self._maybe_graduate(p, now)

    def replace(self, p: Profile) -> None:
        """A profile changed outside (``podtrail profile import|mode``): it wins."""
        self.profiles[p.key] = p
        self.dirty.discard(p.key)

    # -- the per-event check ------------------------------------------------------------------
    def check(self, ev: dict[str, Any], now: float) -> list[Finding]:
        unit = unit_of(ev)
        if unit is None:
            if ev.get("event_type") in ("process", "socket", "file"):
                self.stats.unattributed += 1
            return []
        p, v = self._profile(unit, ev, now)
        if p is None or v is None or p.mode == OFF or (not p.pinned and (unit[1] in self._off_flip) != self._default_off):
            return []
        key = p.key
        self.stats.checked += 1
        items = items_of(ev)
        if p.mode == LEARN and v is p.current:
            v.events += 1
            added = False
            for lst, item in items:
                if v.add(lst, item, self.cfg.max_items):
                    added = True
                    self.stats.learned += 1
                elif v.overflow[lst] == 1 and item not in v.items[lst]:
                    self.full.append((key, lst))  # the first item that did not fit: report once
            if added:
                p.last_change = now
                self.dirty.add(key)
            elif v.events % 256 == 0:
                self.dirty.add(key)  # the event count moves too; persist it now and then
            self._maybe_graduate(p, now)
            return []
        out: list[Finding] = []
        for lst, item in items:
            if v.has(lst, item):
                continue
            if self._seen(key, v.version, lst, item, now):
                self.stats.suppressed += 1
                continue
            if not self._spend(key, now):
                continue
            out.append(Finding(key, lst, item, v.version, v.created, v.monitor_since))
        self.stats.findings += len(out)
        return out

    def _spend(self, key: WorkloadKey, now: float) -> bool:
        """One alert from the workload's budget for this window (a scan of 60,000 ports is
        100 alerts and a count, not 60,000 alerts)."""
        start, n = self._budget.get(key, (now, 0))
        if now - start >= self.cfg.alert_window_seconds:
            start, n = now, 0
        if n >= self.cfg.max_alerts_per_window:
            self.stats.rate_limited += 1
            if n == self.cfg.max_alerts_per_window:
                self.limited.append(key)
                self._budget[key] = (start, n + 1)  # report once per window
            return False
        self._budget[key] = (start, n + 1)
        return True

    def _seen(self, key: WorkloadKey, version: int, lst: str, item: str, now: float) -> bool:
        """True for a repeat within the window; else remember this occurrence."""
        k = (key, version, lst, item)
        last = self._alerted.get(k)
        if last is not None and now - last < self.cfg.alert_window_seconds:
            return True
        self._alerted[k] = now
        self._alerted.move_to_end(k)
        while len(self._alerted) > _SEEN_MAX:
            self._alerted.popitem(last=False)
        return False
