"""Detection as the last pipeline stage: each event goes on first, then the alerts it raised.

The stage finalizes the event before evaluating it (rules read derived fields such as
``dst_address`` and ``outcome``; finalize is idempotent), passes it on, then asks every
detector for alerts and passes those on after their trigger. The Sigma engine is the first
detector; others (behaviour baselines) implement ``Detector`` and are appended to
``DetectStage.detectors``. A detector that raises is logged and counted, never drops the event.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from podtrail import metrics
from podtrail.config import ConfigError, DetectionConfig
from podtrail.detect.codegen import accelerator
from podtrail.detect.engine import Engine
from podtrail.detect.ruleset import Problem, RuleLoadError, load_texts, rule_texts
from podtrail.model.event import Event, finalize
from podtrail.pipeline import Emit

log = logging.getLogger(__name__)
EXPIRE_INTERVAL_S = 10.0


class Detector(Protocol):
    """Something that turns events into alerts (``podtrail.detect.alert.new_alert``)."""

    def process(self, ev: Event) -> list[Event]: ...

    def tick(self, now: float) -> list[Event]: ...


class SigmaDetector:
    """The Sigma engine as a Detector. Given a builder instead of an engine, it compiles the
    rules in a thread (while the sensors load) and waits for them at the first event."""

    def __init__(self, engine: Engine | Callable[[], Engine]) -> None:
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._next_expire = 0.0
        if isinstance(engine, Engine):
            self._ready(engine)
        else:
            build = engine

            def run() -> None:
                self._ready(build())

            self._thread = threading.Thread(target=run, name="podtrail-rules-compile", daemon=True)
            self._thread.start()

    @property
    def engine(self) -> Engine:
        if self._engine is None and self._thread is not None:
            self._thread.join()
        if self._engine is None:
            raise RuntimeError("the Sigma rules could not be compiled (see the log)")
        return self._engine

    def _ready(self, engine: Engine) -> None:
        self._engine = engine
        self.process = engine.process  # type: ignore[method-assign]  # from now on, no call in between

    def process(self, ev: Event) -> list[Event]:
        """Until the rules are compiled: wait for them (then ``process`` is the engine's own)."""
        return self.engine.process(ev)

    def tick(self, now: float) -> list[Event]:
        if now >= self._next_expire:
            self.engine.expire()
            self._next_expire = now + EXPIRE_INTERVAL_S
        return []


class DetectStage:
    def __init__(self, detectors: Iterable[Detector]) -> None:
        self.detectors = list(detectors)

    def process(self, ev: Event, out: Emit) -> None:
        finalize(ev)
        out(ev)
        for d in self.detectors:
            try:
                alerts = d.process(ev)
            except Exception as e:  # a detector bug must not stop the others or the event
                self._failed(d, e)
                continue
            for a in alerts:
                out(a)

    def _failed(self, d: object, e: BaseException) -> None:
        log.error("detector %s failed", type(d).__name__, exc_info=e)
        metrics.dropped("detect", "detector_error")

    def fast_step(self) -> tuple[object, ...]:
        """This stage in the pipeline's C chain (pipeline.Pipeline._fast_chain): ``process`` as
        it is, in C, where an engine's bucket lookup is done too (events no rule can match
        call no Python); a detector's exception goes to ``_failed``."""
        return ("detect", Engine.process, self, self._failed)

    def tick(self, now: float, out: Emit) -> None:
        for d in self.detectors:
            try:
                alerts = d.tick(now)
            except Exception:
                log.exception("detector %s failed", type(d).__name__)
                metrics.dropped("detect", "detector_error")
                continue
            for a in alerts:
                out(a)


def read_rules(cfg: DetectionConfig) -> tuple[list[tuple[str, str]], dict[str, bool]]:
    """The configured rule files' texts; an unreadable path is a configuration error (one line)."""
    try:
        return rule_texts(cfg.rule_paths, shipped=cfg.shipped_rules)
    except RuleLoadError as e:
        raise ConfigError(f"detection.rule_paths: {e}") from None


def report(problems: list[Problem]) -> None:
    for p in problems:
        who = " ".join(x for x in (p.id, repr(p.title) if p.title else "") if x)
        log.warning("rule %s%s not used: %s", p.path, f" ({who})" if who else "", p.reason)


def build_detect_stage(cfg: DetectionConfig) -> DetectStage | None:
    """The detection stage; the rule files are read now (a bad path fails at once), compiled in
    the background (they are ready before the first event in practice: the sensors load first)."""
    if not cfg.enabled:
        return None
    texts, outputs = read_rules(cfg)
    accelerator()  # asked now, so the agent's start names it if it runs in Python (rules compile later)

    def build() -> Engine:
        rules = load_texts(texts, outputs=outputs)
        report(rules.problems)
        engine = Engine(rules, max_groups=cfg.max_groups, max_events=cfg.max_events_per_group)
        _ENGINES.add(engine)
        return engine

    return DetectStage([SigmaDetector(build)])


# ---- metrics per rule: read from the engine's counters at scrape time (no cost per event) -------
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


class _RuleCollector:
    def collect(self) -> Iterator[Any]:
        ev = CounterMetricFamily("podtrail_rule_evaluations", "Events a rule was evaluated on (after indexing).",
                                 labels=["rule_id", "rule", "kind"])
        ma = CounterMetricFamily("podtrail_rule_matches", "Events (signatures) or windows (correlations) a rule matched.",
                                 labels=["rule_id", "rule", "kind"])
        al = CounterMetricFamily("podtrail_rule_alerts", "Alerts a rule raised.", labels=["rule_id", "rule", "kind"])
        loaded = GaugeMetricFamily("podtrail_rules", "Rules read, by whether the agent can use them.", labels=["state"])
        state = GaugeMetricFamily("podtrail_correlation_state_entries", "Matches held by correlations.", labels=["rule"])
        evicted = CounterMetricFamily("podtrail_correlation_evicted",
                                      "Correlation state dropped by the memory bounds (groups or matches).", labels=["rule"])
        usable = unusable = 0
        for engine in list(_ENGINES):
            usable += engine.rules.usable
            unusable += len(engine.rules.problems)
            for rid, name, kind, st in engine.stats():
                ev.add_metric([rid, name, kind], st.evaluated)
                ma.add_metric([rid, name, kind], st.matched)
                al.add_metric([rid, name, kind], st.alerts)
            for c, corr in zip(engine.correlators, engine.rules.correlations, strict=True):
                state.add_metric([corr.meta.name], c.size())
                evicted.add_metric([corr.meta.name], c.evicted)
        loaded.add_metric(["usable"], usable)
        loaded.add_metric(["unusable"], unusable)
        yield from (ev, ma, al, loaded, state, evicted)

    def describe(self) -> list[Any]:
        return []


metrics.REGISTRY.register(_RuleCollector())  # type: ignore[arg-type]
