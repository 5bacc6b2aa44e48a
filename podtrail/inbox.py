"""A bounded hand-over between threads that costs the producer one ``deque.append``.

``queue.Queue`` takes a lock and notifies a condition on every put and get (about 1 µs
each here); at 100k events/s that is a tenth of the budget per boundary. Here the producer
appends (atomic under the GIL) and sets the wake-up event only when the consumer has said it
is going to sleep (``Event.set`` is a lock, a notify and a futex wake: a few µs, too much
per event), so a wake-up costs one call per batch the consumer sleeps for, not one per
event; the consumer takes everything queued in one batch. (Polling every few ms instead, to
spare even that call, cost the agent more CPU per exec in an exec storm, measured; see
docs/BENCHMARKS.md.) ``None`` is the close sentinel.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._d: deque[T | None] = deque()
        self._wake = threading.Event()
        self._sleeping = False
        self.wakeups = 0  # times the consumer slept and was woken by a put (for tests and benchmarks)

    def put_nowait(self, item: T) -> None:
        """Queue ``item``; raises ``queue.Full`` (the caller counts the drop) when full."""
        d = self._d
        if len(d) >= self.maxsize:
            raise queue.Full
        d.append(item)
        if self._sleeping:
            self._sleeping = False
            self._wake.set()

    def close(self) -> None:
        """Queue the end marker (past the bound: closing never fails)."""
        self._d.append(None)
        self._sleeping = False
        self._wake.set()

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

    def take(self, limit: int, timeout: float) -> tuple[list[T], bool]:
        """Up to ``limit`` items, waiting up to ``timeout`` for the first; and whether the
        end marker was reached (items after it are not taken)."""
        d = self._d
        if not d:
            self._wake.clear()
            self._sleeping = True
            # Announced before this check: a put before it is seen here, a put after it sees
            # the flag and sets the event (under the GIL these steps are ordered).
            if not d:
                if self._wake.wait(timeout) and d:
                    self.wakeups += 1
            self._sleeping = False
        out: list[T] = []
        append, pop = out.append, d.popleft
        while d and len(out) < limit:
            item = pop()
            if item is None:
                return out, True
            append(item)
        return out, False
