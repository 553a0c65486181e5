"""Timers for state machines, on top of the reactor's timer heap.

Machines arm timers with a deadline and receive the firing time as ``now``
instead of reading a clock, which is what lets the simulator drive them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loop.reactor import Reactor
from loop.timers import TimerHandle


class ReactorScheduler:
    __slots__ = ("_reactor",)

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor

    def arm(self, when: float, callback: Callable[..., None], *args: Any) -> TimerHandle:
        return self._reactor.call_at(when, self._fire, callback, args)

    def _fire(self, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        callback(self._reactor.now(), *args)
