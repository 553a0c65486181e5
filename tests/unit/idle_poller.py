"""A poller that never reports anything: a real Reactor driven by a ManualClock, for tests that
build a daemon without sockets to serve."""

from __future__ import annotations

from loop.poller import EventHandler


class IdlePoller:
    def register(self, fd: int, events: int, handler: EventHandler) -> None: ...
    def modify(self, fd: int, events: int, handler: EventHandler) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float | None) -> list[tuple[EventHandler, int]]:
        return []
    def close(self) -> None: ...
