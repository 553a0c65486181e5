"""Timer heap with lazy cancellation.

Cancelling a timer is far more common than firing one in a proxy (every query
timeout, idle timeout and connect timeout is armed and then usually
cancelled), so cancel is O(1): the entry stays in the heap, flagged, and is
skipped when it reaches the top.  The heap is rebuilt once more than half of
it is dead so memory stays bounded.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class TimerHandle:
    """A scheduled call; keep it to cancel the call."""

    __slots__ = ("_heap", "args", "callback", "cancelled", "seq", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        # The heap's insertion number (1, 2, ...): names this timer in an input capture.
        self.seq = 0
        self.callback: Callable[..., Any] | None = callback
        self.args = args
        self.cancelled = False
        # The heap owning this entry while it is still queued; None once
        # popped, so a late cancel() does not disturb the dead-entry count.
        self._heap: TimerHeap | None = None

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # Drop references early: a cancelled entry may linger in the heap and
        # must not keep connections or protocols alive.
        self.callback = None
        self.args = ()
        heap = self._heap
        if heap is not None:
            self._heap = None
            heap._on_cancel()

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "pending"
        return f"<TimerHandle when={self.when:.6f} {state} {self.callback!r}>"


class TimerHeap:
    """Min-heap of ``(when, seq, handle)``.

    ``seq`` is a monotonically increasing insertion counter: equal deadlines
    fire in FIFO order and tuple comparison never reaches the handle, so
    ordering cannot depend on object identity (the simulator needs
    reproducible runs).
    """

    __slots__ = ("_cancelled", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._cancelled = 0

    def push(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(when, callback, args)
        handle._heap = self
        self._seq += 1
        handle.seq = self._seq
        heapq.heappush(self._heap, (when, self._seq, handle))
        return handle

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            entry = heap[0]
            if not entry[2].cancelled:
                return entry[0]
            heapq.heappop(heap)
            self._cancelled -= 1
        return None

    def pop_due(self, now: float) -> list[TimerHandle]:
        """Remove and return the live timers with ``when <= now``, in firing order."""
        heap = self._heap
        due: list[TimerHandle] = []
        # (heapq.heappop read only when something is due: most passes pop nothing.)
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if handle.cancelled:
                self._cancelled -= 1
                continue
            handle._heap = None
            due.append(handle)
        return due

    def _on_cancel(self) -> None:
        self._cancelled += 1
        if self._cancelled * 2 > len(self._heap):
            self._compact()

    def _compact(self) -> None:
        # Rebuild in place of repeated pops: O(n) and the (when, seq) keys keep
        # the firing order identical.
        live = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(live)
        self._heap = live
        self._cancelled = 0

    def heap_size(self) -> int:
        """Entries physically held, including dead ones (for tests and stats)."""
        return len(self._heap)

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def __bool__(self) -> bool:
        return len(self._heap) > self._cancelled
