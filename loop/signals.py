"""Signal delivery through the loop.

Python runs signal handlers between bytecodes of the main thread, i.e. at
arbitrary points inside the proxy's callbacks.  Instead the C-level handler
writes the signal number to a wakeup socket (``signal.set_wakeup_fd``) that
the poller watches, and the real callbacks run from the loop like any other
event, with the reactor's state consistent.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from loop.poller import READ

if TYPE_CHECKING:
    from loop.reactor import Reactor

_PyHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _noop_handler(signum: int, frame: FrameType | None) -> None:
    """Installed so the default action (e.g. terminate) does not happen; the wakeup fd does the work."""


class SignalDispatcher:
    """Owns the wakeup socketpair and the handlers replaced for the reactor's lifetime."""

    __slots__ = ("_callbacks", "_previous", "_previous_wakeup", "_reactor", "_rsock", "_wsock")

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor
        self._callbacks: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._previous: dict[int, _PyHandler] = {}
        self._previous_wakeup = -1
        self._rsock: socket.socket | None = None
        self._wsock: socket.socket | None = None

    def _setup(self) -> None:
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        try:
            # Raises ValueError outside the main thread, before we touch anything else.
            self._previous_wakeup = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        except BaseException:
            rsock.close()
            wsock.close()
            raise
        self._rsock, self._wsock = rsock, wsock
        self._reactor._poller.register(rsock.fileno(), READ, self)
        self._reactor.stats.registers += 1

    def add(self, signum: int, callback: Callable[..., Any], *args: Any) -> None:
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"signal {signum} cannot be caught")
        if self._rsock is None:
            self._setup()
        if signum not in self._previous:
            self._previous[signum] = signal.signal(signum, _noop_handler)
        self._callbacks[signum] = (callback, args)

    def remove(self, signum: int) -> bool:
        if self._callbacks.pop(signum, None) is None:
            return False
        self._restore(signum)
        return True

    def _restore(self, signum: int) -> None:
        previous = self._previous.pop(signum, None)
        # None means the previous handler was not installed from Python.
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)

    def on_events(self, events: int) -> None:
        rsock = self._rsock
        if rsock is None:
            return
        received = bytearray()
        while True:
            try:
                chunk = rsock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            received += chunk
        # Signals are not queued by the OS either: a burst of the same signal
        # runs its callback once per wakeup, in order of first arrival.
        for signum in dict.fromkeys(received):
            entry = self._callbacks.get(signum)
            if entry is None:
                continue
            recorder = self._reactor.recorder
            if recorder is not None:
                recorder.on_signal(signum)
            try:
                entry[0](*entry[1])
            except Exception as exc:
                self._reactor.handle_exception(exc, f"signal handler for {signum}")

    def close(self) -> None:
        for signum in list(self._previous):
            self._restore(signum)
        self._callbacks.clear()
        if self._rsock is not None and self._wsock is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            try:
                self._reactor._poller.unregister(self._rsock.fileno())
            except (KeyError, OSError, ValueError):
                pass
            self._rsock.close()
            self._wsock.close()
            self._rsock = self._wsock = None
