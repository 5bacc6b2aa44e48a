"""A bounded hand-over between threads that costs the producer one ``deque.append``.

``queue.Queue`` takes a lock and notifies a condition on every put and get (about 1 µs
each here); at 100k events/s that is a tenth of the budget per boundary. Here the producer
appends (atomic under the GIL) and sets the wake-up event only when the consumer has said it
is going to sleep (``Event.set`` is a lock, a notify and a futex wake: a few µs, too much
per event), so a wake-up costs one call per batch the consumer sleeps for, not one per
event; the consumer takes everything queued in one batch. (Polling every few ms instead, to
spare even that call, cost the agent more CPU per exec in an exec storm, measured; see
docs/BENCHMARKS.md.) ``None`` is the close sentinel.

The wake-up is a plain lock used as a binary semaphore (held: no signal; the producer releases
it, the sleeping consumer's ``acquire`` takes it back), not a ``threading.Event``: ``Event.set``
and ``wait`` are a condition variable in Python, with a new lock per wait; at 1,000 execs/s the
consumer sleeps before nearly every event, and the lock is about half the producer's cost per
hand-over (docs/BENCHMARKS.md, "Outputs, enrichment and delivery"). A signal left over (a
release racing a consumer that found items or timed out) only makes one later sleep return
at once with nothing: the caller loops.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._d: deque[T | None] = deque()
        self._signal = threading.Lock()
        self._signal.acquire()  # held: nothing signalled
        self._sleeping = False
        self._busy = False  # the last take found items (a nap may come first)
        self.wakeups = 0  # times the consumer slept and was woken by a put (for tests and benchmarks)

    def _wake(self) -> None:
        try:
            self._signal.release()
        except RuntimeError:  # signalled already (another producer, or close)
            pass

    def put_nowait(self, item: T) -> None:
        """Queue ``item``; raises ``queue.Full`` (the caller counts the drop) when full."""
        d = self._d
        if len(d) >= self.maxsize:
            raise queue.Full
        d.append(item)
        if self._sleeping:
            self._sleeping = False
            self._wake()

    def put_many(self, items: list[T]) -> int:
        """Queue as many of ``items`` as fit, in order, with one wake-up; how many did not fit
        (the last ones: the caller counts them)."""
        d = self._d
        room = self.maxsize - len(d)
        if room <= 0:
            return len(items)
        if len(items) > room:
            d.extend(items[:room])
        else:
            d.extend(items)
        if self._sleeping:
            self._sleeping = False
            self._wake()
        return max(0, len(items) - room)

    def close(self) -> None:
        """Queue the end marker (past the bound: closing never fails)."""
        self._d.append(None)
        self._sleeping = False
        self._wake()

    def put(self, item: T | None) -> None:
        """queue.Queue's spelling: ``None`` closes."""
        if item is None:
            self.close()
        else:
            self.put_nowait(item)

    def empty(self) -> bool:
        return not self._d

    def __len__(self) -> int:
        return len(self._d)

    def take(self, limit: int, timeout: float | None, nap: float = 0.0) -> tuple[list[T], bool]:
        """Up to ``limit`` items, waiting up to ``timeout`` (None: no limit) for the first; and
        whether the end marker was reached (items after it are not taken).

        ``nap``: while items keep coming (the previous take found some), first sleep that
        long unannounced, so producers append without waking this thread and one wake-up
        serves everything that arrived meanwhile; only a nap that finds nothing goes on to
        the announced sleep. Costs up to ``nap`` of latency, spares a wake-up per item when
        they arrive one by one."""
        d = self._d
        if not d and nap and self._busy:
            time.sleep(nap)
        if not d:
            self._sleeping = True
            # Announced before this check: a put before it is seen here, a put after it sees
            # the flag and signals (under the GIL these steps are ordered).
            if not d:
                if self._signal.acquire(True, -1 if timeout is None else timeout) and d:
                    self.wakeups += 1
            self._sleeping = False
        out: list[T] = []
        append, pop = out.append, d.popleft
        while d and len(out) < limit:
            item = pop()
            if item is None:
                return out, True
            append(item)
        self._busy = bool(out)
        return out, False
