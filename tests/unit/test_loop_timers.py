"""TimerHeap and clock behaviour, no IO."""

from __future__ import annotations

import pytest

from loop.clock import ManualClock, MonotonicClock
from loop.timers import TimerHeap


def test_equal_deadlines_fire_fifo() -> None:
    heap = TimerHeap()
    order: list[int] = []
    for i in range(20):
        heap.push(5.0, order.append, i)
    heap.push(1.0, order.append, -1)
    due = heap.pop_due(5.0)
    for handle in due:
        handle.callback(*handle.args)  # type: ignore[misc]
    assert order == [-1, *range(20)]
    assert len(heap) == 0


def test_pop_due_respects_now_and_order() -> None:
    heap = TimerHeap()
    h3 = heap.push(3.0, print)
    h1 = heap.push(1.0, print)
    h2 = heap.push(2.0, print)
    assert heap.next_deadline() == 1.0
    assert heap.pop_due(0.5) == []
    assert heap.pop_due(2.0) == [h1, h2]
    assert heap.next_deadline() == 3.0
    assert heap.pop_due(10.0) == [h3]
    assert heap.next_deadline() is None


def test_cancel_skips_and_updates_len() -> None:
    heap = TimerHeap()
    handles = [heap.push(float(i), print) for i in range(10)]
    handles[0].cancel()
    handles[0].cancel()  # idempotent
    assert handles[0].cancelled
    assert handles[0].callback is None
    assert len(heap) == 9
    assert heap.next_deadline() == 1.0
    handles[5].cancel()
    due = heap.pop_due(100.0)
    assert [h.when for h in due] == [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0]
    assert len(heap) == 0
    # Cancelling after firing must not corrupt the dead-entry count.
    due[0].cancel()
    assert len(heap) == 0
    assert not heap


def test_lazy_cancel_compacts_when_more_than_half_dead() -> None:
    heap = TimerHeap()
    handles = [heap.push(float(i), print) for i in range(100)]
    for h in handles[:50]:
        h.cancel()
    # Exactly half dead: entries are still held lazily.
    assert heap.heap_size() == 100
    assert len(heap) == 50
    handles[50].cancel()
    # More than half dead: rebuilt.
    assert heap.heap_size() == 49
    assert len(heap) == 49
    assert [h.when for h in heap.pop_due(1000.0)] == [float(i) for i in range(51, 100)]


def test_compaction_preserves_fifo_for_equal_deadlines() -> None:
    heap = TimerHeap()
    keep = []
    for i in range(30):
        h = heap.push(1.0, print, i)
        if i % 3:
            h.cancel()
        else:
            keep.append(h)
    assert heap.heap_size() < 30
    assert heap.pop_due(1.0) == keep


def test_manual_clock() -> None:
    clock = ManualClock(10.0)
    assert clock.now() == 10.0
    clock.advance(1.5)
    assert clock.now() == 11.5
    clock.set(20.0)
    assert clock.now() == 20.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(1.0)


def test_monotonic_clock_moves_forward() -> None:
    clock = MonotonicClock()
    a = clock.now()
    assert clock.now() >= a
