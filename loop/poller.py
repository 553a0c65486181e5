"""Readiness notification behind a small interface.

The reactor only ever asks "which handlers are ready, and for what?", so the
deterministic simulator can replace epoll with a virtual poller without
touching scheduling code.  Handlers are objects with ``on_events(events)``;
``poll`` returns the handler objects themselves (not fds) so an event for an
fd that was closed and reused earlier in the same pass is delivered to the
stale (closed) handler, which ignores it, never to the new owner.
"""

from __future__ import annotations

import select
from typing import Final, Protocol

READ: Final[int] = select.EPOLLIN
WRITE: Final[int] = select.EPOLLOUT
#: Error conditions, reported in addition to READ/WRITE so handlers that care
#: can distinguish them; handlers that do not simply read/write and see the error.
ERROR: Final[int] = select.EPOLLERR
HANGUP: Final[int] = select.EPOLLHUP
READ_HANGUP: Final[int] = select.EPOLLRDHUP

_EXCEPTIONAL: Final = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP


class EventHandler(Protocol):
    def on_events(self, events: int) -> None: ...


class Poller(Protocol):
    """Level-triggered readiness source.

    ``events`` is a mask of READ and WRITE.  An interest of 0 is legal and
    means "tell me nothing" (not even errors) until modified again.
    """

    def register(self, fd: int, events: int, handler: EventHandler) -> None: ...

    def modify(self, fd: int, events: int, handler: EventHandler) -> None: ...

    def unregister(self, fd: int) -> None: ...

    def poll(self, timeout: float | None) -> list[tuple[EventHandler, int]]: ...

    def close(self) -> None: ...


class EpollPoller:
    """``select.epoll``, level-triggered.

    Level-triggered because every reader does exactly one ``recv`` per event
    (fairness between connections); edge-triggered would force draining
    until EAGAIN.  An fd whose interest drops to 0 is removed from the kernel
    set: epoll always reports EPOLLHUP/EPOLLERR, and with level triggering a
    paused, hung-up socket would otherwise wake the loop forever.

    Reported events are normalised: an error/hang-up condition also sets the
    READ/WRITE bits the fd is interested in, so the handler's read or write
    path runs and discovers the error through the syscall's errno.
    """

    __slots__ = ("_epoll", "_handlers", "_in_kernel")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, tuple[EventHandler, int]] = {}
        self._in_kernel: set[int] = set()

    @staticmethod
    def _kernel_mask(events: int) -> int:
        # RDHUP only alongside READ: while reading is paused a half-closed
        # peer must not wake us (level-triggered) until we read again.
        if events & READ:
            return events | select.EPOLLRDHUP
        return events

    def register(self, fd: int, events: int, handler: EventHandler) -> None:
        if fd in self._handlers:
            raise FileExistsError(f"fd {fd} is already registered")
        self._handlers[fd] = (handler, events)
        if events:
            self._epoll.register(fd, self._kernel_mask(events))
            self._in_kernel.add(fd)

    def modify(self, fd: int, events: int, handler: EventHandler) -> None:
        if fd not in self._handlers:
            raise KeyError(f"fd {fd} is not registered")
        self._handlers[fd] = (handler, events)
        in_kernel = self._in_kernel
        if events:
            if fd in in_kernel:
                self._epoll.modify(fd, self._kernel_mask(events))
            else:
                self._epoll.register(fd, self._kernel_mask(events))
                in_kernel.add(fd)
        elif fd in in_kernel:
            self._epoll.unregister(fd)
            in_kernel.discard(fd)

    def unregister(self, fd: int) -> None:
        del self._handlers[fd]
        if fd in self._in_kernel:
            self._in_kernel.discard(fd)
            self._epoll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[EventHandler, int]]:
        # epoll.poll rounds the timeout up to the next millisecond, so a timer
        # is never woken for early and the loop never spins on sub-ms waits.
        ready = self._epoll.poll(-1 if timeout is None else timeout)
        if not ready:
            return []
        handlers = self._handlers
        out: list[tuple[EventHandler, int]] = []
        for fd, ev in ready:
            entry = handlers.get(fd)
            if entry is None:
                continue
            if ev & _EXCEPTIONAL:
                ev |= entry[1]
            out.append((entry[0], ev))
        return out

    def interest(self, fd: int) -> int | None:
        """Current interest mask for ``fd`` (None if unregistered); for tests and debugging."""
        entry = self._handlers.get(fd)
        return None if entry is None else entry[1]

    def fileno(self) -> int:
        return self._epoll.fileno()

    def close(self) -> None:
        self._handlers.clear()
        self._in_kernel.clear()
        self._epoll.close()
