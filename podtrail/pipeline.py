"""How events move: Source -> stages (enrichment) -> finalize -> sinks.

The kernel reader never waits: a source hands events to a bounded queue and counts what
does not fit. One pipeline thread runs the stages and fans events out to sinks, each of
which queues (and spools) on its own, so a slow SIEM never reaches back to the kernel.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from podtrail import metrics, native
from podtrail.inbox import Inbox
from podtrail.model.context import EventDict
from podtrail.model.event import _SEVERITY, Event, finalize

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
# While events keep coming, the pipeline thread naps this long before it takes the next batch
# instead of being woken for each event (Inbox.take): at 1,000 execs/s events arrive one by
# one, and a wake-up per event cost more than all the stages of a host event together
# (docs/BENCHMARKS.md, "Outputs, enrichment and delivery"). At most this much latency.
NAP_S = 0.005
# With no event for IDLE_AFTER_S, the stages tick once a second instead of ten times: each
# wake-up of an idle thread costs ~0.2 ms of CPU here (docs/BENCHMARKS.md, "Fewer wake-ups").
# An event wakes the thread at once either way; what an idle tick delays (by under a second)
# is only what a stage still holds that long after the last event.
IDLE_AFTER_S = 2.0
IDLE_TICK_S = 1.0


# The chain's links and finalize + the events counter in C (podtrail/_pipeline.c); the
# references are _link and _finalize_count below.
_native = native.load("podtrail._pipeline")
if _native is not None:
    _native.configure(_SEVERITY, metrics._event_counts, finalize, metrics.event_out, EventDict)


def _source(ev: Event) -> str:
    """The event's source as a metric label; "unknown" for anything but a text (an event is
    counted, never lost to its own odd value)."""
    try:
        src = ev.get("source", "unknown")
    except Exception:  # noqa: BLE001 - not even a mapping
        return "unknown"
    return src if type(src) is str else "unknown"


def _link(process: Callable[[Event, Emit], None], out: Emit) -> Emit:
    """One step of the chain: ``process(ev, out)``."""
    return lambda ev: process(ev, out)


def _finalize_count(ev: Event) -> None:
    finalize(ev)
    metrics.event_out(ev)


class Source(Protocol):
    """A sensor: eBPF or auditd. ``run`` blocks in its own thread until ``stop`` is set."""

    name: str

    def run(self, emit: Emit, stop: threading.Event) -> None: ...


class Stage(Protocol):
    """One enrichment step. ``process`` passes the event on through ``out`` (now or later);
    ``tick`` is called periodically to release events a stage held back (e.g. waiting for
    pod metadata)."""

    def process(self, ev: Event, out: Emit) -> None: ...

    def tick(self, now: float, out: Emit) -> None: ...


class Sink(Protocol):
    """A consumer: stdout, a SIEM output, the osquery event buffer. ``submit`` never blocks.
    A sink may also have ``end_batch()``, called after each batch the pipeline took (and at
    its ticks): it can then write once for many events, and ``fast_submit()`` (see Chain)."""

    name: str

    def submit(self, ev: Event) -> None: ...

    def close(self) -> None: ...


class FnStage:
    """A stage from a plain function that enriches in place and never holds events."""

    def __init__(self, fn: Callable[[Event], object]) -> None:
        self._fn = fn

    def process(self, ev: Event, out: Emit) -> None:
        self._fn(ev)
        out(ev)

    def tick(self, now: float, out: Emit) -> None:
        return None


def batch_emitter(emit: Emit) -> Callable[[list[Event]], None]:
    """How a source hands over a batch through ``emit``: the pipeline's ``emit_batch`` when
    ``emit`` is a pipeline's ``emit``, else ``emit`` per event (tests collect with a list)."""
    owner = getattr(emit, "__self__", None)
    if isinstance(owner, Pipeline) and emit == owner.emit:
        return owner.emit_batch

    def each(evs: list[Event]) -> None:
        for ev in evs:
            emit(ev)

    return each


class Pipeline:
    def __init__(
        self,
        stages: Sequence[Stage],
        sinks: Sequence[Sink],
        *,
        queue_size: int = 65536,
        tick_interval: float = 0.1,
        nap: float = NAP_S,
    ) -> None:
        self._stages = list(stages)
        self._sinks = list(sinks)
        self._q: Inbox[Event] = Inbox(queue_size)
        self._tick_interval = tick_interval
        self._nap = nap  # see Inbox.take
        self._outs = self._build_chain()
        self._fast = self._fast_chain()  # None: every event takes the Python chain
        self._batch_ends: list[Callable[[], None]] = [
            end for end in (getattr(s, "end_batch", None) for s in self._sinks) if callable(end)]
        self.stop_event = threading.Event()  # tells the sources (and helpers) to stop
        # the pipeline itself stops only on close(): sources still hand over their last poll
        # (and the process sensor its held forks) after stop_event is set
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # -- source side (kernel reader thread) -------------------------------------------------
    def emit(self, ev: Event) -> None:
        """Hand an event over without blocking; count it as dropped if the queue is full."""
        try:
            self._q.put_nowait(ev)
        except queue.Full:
            metrics.dropped(_source(ev), "pipeline_queue_full")

    def emit_batch(self, evs: list[Event]) -> None:
        """Hand over what one ring-buffer consume decoded, in one call (one append of many,
        at most one wake-up); what does not fit is counted as dropped, as ``emit`` does."""
        left = self._q.put_many(evs)
        for ev in evs[len(evs) - left:] if left else ():
            metrics.dropped(_source(ev), "pipeline_queue_full")

    # -- pipeline thread --------------------------------------------------------------------
    def _build_chain(self) -> list[Emit]:
        """outs[i] feeds stage i; outs[len(stages)] finalizes and fans out to the sinks."""
        sinks = self._sinks
        link = _native.Link if _native is not None else _link
        if _native is not None:
            fin = _native.finalize_count

            def deliver(ev: Event) -> None:
                fin(ev)
                for s in sinks:
                    s.submit(ev)
        else:
            def deliver(ev: Event) -> None:  # _finalize_count inline: one frame fewer per event
                finalize(ev)
                metrics.event_out(ev)
                for s in sinks:
                    s.submit(ev)

        outs: list[Emit] = [deliver]
        for stage in reversed(self._stages):
            outs.insert(0, link(stage.process, outs[0]))
        return outs

    def _fast_chain(self) -> Emit | None:
        """The chain in one C call for the common event (``_pipeline.Chain``), from the stages'
        C steps in order (``fast_step()``: a tuple, or None) and the sinks' C submits
        (``fast_submit()``, else their ``submit``). It runs the leading stages that have a
        step; a step that declines, and every stage after the first without one, is the Python
        chain (``self._outs``, the reference), and so is every event without the accelerator."""
        if _native is None:
            return None
        steps: list[tuple[object, ...]] = []
        for stage in self._stages:
            fast = getattr(stage, "fast_step", None)
            step = fast() if callable(fast) else None
            if step is None:
                break
            steps.append(step)
        if not steps:
            return None
        whole = len(steps) == len(self._stages)
        sinks = [self._fast_submit(s) for s in self._sinks] if whole else None
        chain: Emit = _native.Chain(steps, self._outs[:len(steps) + 1], sinks, whole and steps[-1][0] == "detect")
        return chain

    @staticmethod
    def _fast_submit(sink: Sink) -> tuple[object, ...]:
        fast = getattr(sink, "fast_submit", None)
        got = fast() if callable(fast) else None
        return got if got is not None else ("plain", sink.submit)

    def _tick(self, now: float) -> None:
        for i, stage in enumerate(self._stages):
            try:
                stage.tick(now, self._outs[i + 1])
            except Exception:  # a bug releasing one held event must not kill the pipeline thread
                log.exception("%s: releasing held events failed", type(stage).__name__)
                metrics.dropped("unknown", "processing_error")

    def run(self) -> None:
        """Consume until stopped; then drain what is queued and release held events.

        Events are taken from the source side in batches (one wake-up for all that queued
        while the previous batch was processed, or during a nap), then run one by one through
        the stages."""
        first = self._fast if self._fast is not None else self._outs[0]
        interval = self._tick_interval
        last_event = time.monotonic()
        next_tick = last_event + interval
        while not self._closing.is_set() or not self._q.empty():
            batch, _ = self._q.take(1024, interval, self._nap)
            self._run_batch(first, batch)
            now = time.monotonic()
            if batch:
                last_event = now
                interval = self._tick_interval
                next_tick = min(next_tick, now + interval)  # not an idle tick's second away
            elif now - last_event >= IDLE_AFTER_S:
                interval = max(self._tick_interval, IDLE_TICK_S)
            if now >= next_tick:
                self._tick(now)
                next_tick = now + interval
                self._end_batch()
            elif batch:
                self._end_batch()
        self._tick(float("inf"))
        self._end_batch()

    def _run_batch(self, first: Emit, batch: list[Event]) -> None:
        """Each event of a taken batch through the chain from ``first``."""
        for ev in batch:
            try:
                first(ev)
            except Exception:  # an enrichment bug must not kill the agent
                log.exception("event processing failed")
                metrics.dropped(_source(ev), "processing_error")

    def _end_batch(self) -> None:
        for end in self._batch_ends:
            try:
                end()
            except Exception:  # an output bug must not kill the agent
                log.exception("an output failed to write its batch")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="podtrail-pipeline", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Drain what the sources handed over (call it after their threads returned), then close the sinks."""
        self.stop_event.set()
        self._closing.set()
        self._q.close()  # wakes the thread now, not at its next tick (up to IDLE_TICK_S)
        if self._thread is not None:
            self._thread.join(timeout)
        for s in self._sinks:
            s.close()
