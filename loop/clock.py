"""Time source for the reactor.

The reactor never calls ``time`` directly: every deadline is computed from a
``Clock`` so the deterministic simulator can substitute virtual time and drive
the very same scheduling code.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

# Bound once: compiled, a module-level Final is a C static, where ``time.monotonic`` would be an
# attribute lookup on the module at every reading.
_monotonic: Final = time.monotonic


class Clock(Protocol):
    """Monotonic seconds; the only notion of "now" the reactor knows."""

    def now(self) -> float: ...


class MonotonicClock:
    """Production clock: monotonic so wall-clock jumps never fire timers early or late."""

    __slots__ = ()

    def now(self) -> float:
        return _monotonic()


def read(clock: Clock) -> float:
    """``clock.now()``: the production clock is tested for first so that, compiled, reading it
    is a direct call rather than a method looked up on the object at every message."""
    if isinstance(clock, MonotonicClock):
        return clock.now()
    return clock.now()


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


class SampledClock:
    """A clock that moves only when sampled: what an input capture runs the reactor on.

    ``now()`` returns the reading of the last :meth:`sample`, rounded to whole nanoseconds, so the
    integer written next to a captured input converts back (``ns / 1e9``) to exactly the float the
    code saw. Between two samples every reader sees the same time, which is what lets a replay
    reproduce every clock reading from the sample points alone. The owner samples at points it
    records (the start of a pass, before timers are collected); readings never go backwards.
    """

    __slots__ = ("_t", "base", "ns")

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.ns = 0
        self._t = 0.0
        self.sample()

    def now(self) -> float:
        return self._t

    def sample(self) -> int:
        """Read the base clock; returns the (new) reading in nanoseconds."""
        ns = round(self.base.now() * 1e9)
        if ns > self.ns:
            self.ns = ns
            self._t = ns / 1e9
        return self.ns
