"""Time source for the reactor.

The reactor never calls ``time`` directly: every deadline is computed from a
``Clock`` so the deterministic simulator can substitute virtual time and drive
the very same scheduling code.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds; the only notion of "now" the reactor knows."""

    def now(self) -> float: ...


class MonotonicClock:
    """Production clock: monotonic so wall-clock jumps never fire timers early or late."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """Clock that only moves when told to, for tests and the simulator."""

    __slots__ = ("_t",)

    def __init__(self, t: float = 0.0) -> None:
        self._t = float(t)

    def now(self) -> float:
        return self._t

    def advance(self, dt: float) -> None:
        """Move forward; refusing to go backwards keeps the clock monotonic."""
        if dt < 0:
            raise ValueError("ManualClock cannot go backwards")
        self._t += dt

    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError("ManualClock cannot go backwards")
        self._t = float(t)
