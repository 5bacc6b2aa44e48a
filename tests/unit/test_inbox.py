"""The hand-over between threads: nothing lost or reordered when the consumer sleeps and is
woken between bursts, and the end marker always ends it."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from podtrail.inbox import Inbox


def test_every_item_arrives_in_order_through_bursts_and_pauses() -> None:
    box: Inbox[int] = Inbox(1 << 20)
    n = 20000

    def produce() -> None:
        for i in range(n):
            box.put_nowait(i)
            if i % 2000 == 0:
                time.sleep(0.03)  # long enough for the consumer to sleep on the event
        box.close()

    t = threading.Thread(target=produce)
    t.start()
    got: list[int] = []
    closed = False
    while not closed:
        batch, closed = box.take(512, 5.0)
        got += batch
    t.join()
    assert got == list(range(n)) and box.wakeups > 0


def test_full_is_reported_and_close_passes_the_bound() -> None:
    box: Inbox[int] = Inbox(2)
    box.put_nowait(1)
    box.put_nowait(2)
    with pytest.raises(queue.Full):
        box.put_nowait(3)
    box.close()
    assert box.take(10, 0.1) == ([1, 2], True)


def test_many_producers_waking_one_sleeping_consumer_lose_nothing() -> None:
    """Producers race to signal the same sleep (and close signals again): no error, no loss."""
    box: Inbox[tuple[int, int]] = Inbox(1 << 20)
    n, k = 5000, 4

    def produce(p: int) -> None:
        for i in range(n):
            box.put_nowait((p, i))
            if i % 500 == 0:
                time.sleep(0.005)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(k)]
    for t in threads:
        t.start()
    got: list[tuple[int, int]] = []
    while len(got) < n * k:
        batch, closed = box.take(256, 5.0)
        assert not closed
        got += batch
    for t in threads:
        t.join()
    box.close()
    box.close()  # twice: the second signal finds one pending
    assert box.take(10, 0.1) == ([], True)
    assert all([i for p2, i in got if p2 == p] == list(range(n)) for p in range(k))


def test_a_busy_consumer_naps_unannounced_and_a_put_meanwhile_wakes_nobody() -> None:
    box: Inbox[int] = Inbox(100)
    box.put_nowait(1)
    assert box.take(10, 1.0, nap=0.2) == ([1], False)  # found items: busy, the next take naps first
    got: list[tuple[list[int], bool]] = []
    t = threading.Thread(target=lambda: got.append(box.take(10, 5.0, nap=0.2)))
    t.start()
    time.sleep(0.05)
    box.put_nowait(2)  # during the nap: appended only, no signal
    assert box._signal.locked() and not box._sleeping
    t.join(30)
    assert got == [([2], False)] and box.wakeups == 0
    # the nap found something: still busy; an empty nap goes on to the announced sleep, which a put ends
    t = threading.Thread(target=lambda: got.append(box.take(10, 30.0, nap=0.01)))
    t.start()
    deadline = time.monotonic() + 30  # a guard against a hang, not a timing measure
    while not box._sleeping and time.monotonic() < deadline:
        time.sleep(0.001)
    box.put_nowait(3)
    t.join(30)
    assert got[-1] == ([3], False) and box.wakeups == 1


def test_batches_arrive_in_order_wake_a_sleeping_consumer_and_report_what_did_not_fit() -> None:
    box: Inbox[int] = Inbox(10)
    got: list[int] = []

    def consume() -> None:
        while len(got) < 14:
            items, _ = box.take(100, 5.0)
            got.extend(items)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.1)  # the consumer sleeps: the batch must wake it
    assert box.put_many(list(range(4))) == 0
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert box.put_many(list(range(4, 18))) == 4  # room for 10: the last 4 did not fit
    t.join(5)
    assert got == list(range(14)) and box.wakeups >= 1
    box.put_many(list(range(10)))
    assert box.put_many([1, 2]) == 2 and len(box) == 10


def test_the_pipeline_hands_batches_over_and_counts_its_drops() -> None:
    from podtrail import metrics
    from podtrail.pipeline import Pipeline, batch_emitter

    p = Pipeline([], [], queue_size=3)
    assert batch_emitter(p.emit) == p.emit_batch
    dropped = metrics.DROPPED.labels("batch-test", "pipeline_queue_full")
    before = dropped._value.get()
    p.emit_batch([{"source": "batch-test", "n": i} for i in range(5)])
    assert [e["n"] for e in p._q.take(10, 0)[0]] == [0, 1, 2] and dropped._value.get() - before == 2
    seen: list[dict[str, int]] = []
    each = batch_emitter(seen.append)  # not a pipeline: per event
    each([{"n": 1}, {"n": 2}])
    assert seen == [{"n": 1}, {"n": 2}]
