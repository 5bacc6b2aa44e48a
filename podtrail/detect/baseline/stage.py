"""The baseline pipeline stage: check every event against its workload's profile.

It runs after the signature detection stage, so it sees each trigger event before that
stage's alert about it. A behaviour alert is held until the next non-alert event or tick: if
a signature alert about the same trigger arrives meanwhile, the two become one hybrid alert
(signature findings + behaviour findings, level raised). Findings of recent events are
remembered by event id, so a later alert (a correlation) is enriched too.

Profiles are loaded from the state directory at start, written back every ``sync_seconds``
(changed ones only, by a writer thread: the pipeline never waits for the disk) and at the
last tick; edits made by ``podtrail profile`` are picked up at each sync.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from podtrail.config import BaselineConfig
from podtrail.detect.baseline.alerts import behavior_alert, make_hybrid
from podtrail.detect.baseline.engine import Baselines, Finding
from podtrail.detect.baseline.store import BackgroundWriter, ProfileStore
from podtrail.metrics import REGISTRY
from podtrail.model.event import Event, new_event
from podtrail.model.fields import Kind
from podtrail.pipeline import Emit

log = logging.getLogger(__name__)

FINDINGS = Counter("podtrail_baseline_findings_total", "Items outside a workload profile reported (in behaviour or hybrid alerts).", registry=REGISTRY)
SUPPRESSED = Counter("podtrail_baseline_repeats_total", "Repeats of a new item within the alert window (no alert).", registry=REGISTRY)
RATE_LIMITED = Counter("podtrail_baseline_rate_limited_total", "New items not alerted: the workload's alert budget for the window was spent.", registry=REGISTRY)
OVERFLOW = Gauge("podtrail_baseline_overflow_items", "Occurrences of items not learned because a profile list was full.", registry=REGISTRY)
PROFILES = Gauge("podtrail_baseline_profiles", "Workload profiles held, by mode.", ["mode"], registry=REGISTRY)
STATE_PROBLEMS = Counter("podtrail_baseline_state_problems_total", "Profile files unreadable (set aside) or not saved.", registry=REGISTRY)

_RECENT_MAX = 4096  # trigger event id -> findings, for alerts that arrive after their trigger


class BaselineStage:
    def __init__(self, cfg: BaselineConfig, store: ProfileStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self._notes: list[str] = []  # problems to report as agent events
        loaded = []
        if store is not None:
            report = store.load_all()
            loaded, self._notes = report.loaded, list(report.problems)
            STATE_PROBLEMS.inc(len(report.problems))
        self.engine = Baselines(cfg, loaded)
        self.writer = BackgroundWriter(store) if store is not None else None
        self._pending: list[tuple[str, Event]] = []
        self._recent: OrderedDict[str, list[Finding]] = OrderedDict()
        self._next_sync = time.monotonic() + cfg.sync_seconds
        self._suppressed_seen = self._limited_seen = 0

    # -- pipeline stage --------------------------------------------------------------------
    def process(self, ev: Event, out: Emit) -> None:
        if ev.get("event_type") == "alert":
            if ev.get("detection_kind") != "behavior":
                self._hybrid(ev)
            out(ev)
            return
        self._flush(out)
        out(ev)
        findings = self.engine.check(ev, self.clock())
        if not findings:
            return
        FINDINGS.inc(len(findings))
        eid = ev.get("event_id") or ""
        self._recent[eid] = findings
        while len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)
        self._pending.append((eid, behavior_alert(ev, findings)))

    def _hybrid(self, alert: Event) -> None:
        ids = alert.get("trigger_ids") or []
        found = [f for i in ids for f in self._recent.get(i, ())]
        if not found:
            return
        make_hybrid(alert, found)
        self._pending = [(i, a) for i, a in self._pending if i not in ids]  # one alert, not two

    def _flush(self, out: Emit) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        for _, a in pending:
            out(a)

    def tick(self, now: float, out: Emit) -> None:
        self._flush(out)
        for key, lst in self.engine.full:
            self._notes.append(f"profile {key.text}: list {lst} is full ({self.cfg.max_items} items); "
                               "more items are counted as overflow and not learned")
        self.engine.full.clear()
        for key in self.engine.limited:
            self._notes.append(f"profile {key.text}: more than {self.cfg.max_alerts_per_window} new items within "
                               f"{self.cfg.alert_window_seconds:g} s; further ones are counted "
                               "(podtrail_baseline_rate_limited_total), not alerted, until the window ends")
        self.engine.limited.clear()
        for note in self._notes:
            out(new_event(Kind.AGENT, "baseline", message=note, source="detect"))
        self._notes = []
        if now < self._next_sync:
            return
        self._next_sync = now + self.cfg.sync_seconds
        self.sync(final=now == float("inf"))

    # -- state ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Wait for profile writes in flight (tests, and the last tick)."""
        if self.writer is not None:
            self.writer.flush()

    def sync(self, final: bool = False) -> None:
        """Graduate due profiles, pick up outside edits, hand changed profiles to the writer."""
        e = self.engine
        e.graduate(self.clock())
        w = self.writer
        if self.store is not None and w is not None:
            ext = self.store.changed(busy=set(w.busy))
            for p in ext.loaded:
                e.replace(p)
            problems = ext.problems + w.errors
            w.errors = []
            self._notes.extend(problems)
            STATE_PROBLEMS.inc(len(problems))
            for k in sorted(e.dirty, key=lambda k: k.text):  # encoding is cheap; the writer does the I/O
                w.submit(k, self.store.encode(e.profiles[k]))
            e.dirty.clear()
            if final:  # the pipeline's last tick: everything on disk, writer thread ends
                w.flush()
                w.close()
                self.writer = None
        modes: dict[str, int] = {"learn": 0, "monitor": 0, "off": 0}
        overflow = 0
        for p in e.profiles.values():
            modes[p.mode] = modes.get(p.mode, 0) + 1
            overflow += sum(p.current.overflow.values())
        for m, n in modes.items():
            PROFILES.labels(m).set(n)
        OVERFLOW.set(overflow)
        SUPPRESSED.inc(e.stats.suppressed - self._suppressed_seen)
        RATE_LIMITED.inc(e.stats.rate_limited - self._limited_seen)
        self._suppressed_seen, self._limited_seen = e.stats.suppressed, e.stats.rate_limited

    def state(self) -> dict[str, Any]:
        """For the agent's health report."""
        modes: dict[str, int] = {}
        for p in list(self.engine.profiles.values()):
            modes[p.mode] = modes.get(p.mode, 0) + 1
        st = self.engine.stats
        return {"profiles": modes, "findings": st.findings, "repeats": st.suppressed, "rate_limited": st.rate_limited,
                "unattributed": st.unattributed, "new_versions": st.new_versions}

    def rows(self) -> list[dict[str, Any]]:
        """``container_profiles`` rows."""
        return [p.summary() for p in sorted(list(self.engine.profiles.values()), key=lambda p: p.key)]


def build_baseline_stage(cfg: BaselineConfig) -> BaselineStage:
    return BaselineStage(cfg, ProfileStore(cfg.state_dir))
