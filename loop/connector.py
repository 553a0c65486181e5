"""Non-blocking outbound connect.

``on_done`` is called exactly once and always from the loop (never from
inside ``Reactor.connect``), so the caller can finish setting up its own state
after ``connect`` returns without racing an immediate completion.  Resolution
uses the blocking ``getaddrinfo``: backend hosts are few and long-lived, and
numeric addresses (the common case) skip DNS entirely via AI_NUMERICHOST.
Each resolved address is tried in turn; a timeout covers the whole attempt.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loop.poller import WRITE
from loop.timers import TimerHandle

if TYPE_CHECKING:
    from loop.reactor import Reactor

ConnectCallback = Callable[[socket.socket | None, Exception | None], None]
AddrInfo = tuple[int, int, int, Any]


def resolve(host: str, port: int) -> list[AddrInfo]:
    """Addresses to try; a host starting with "/" is a full unix socket path (port ignored)."""
    if host.startswith("/"):
        return [(socket.AF_UNIX, socket.SOCK_STREAM, 0, host)]
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    return [(family, type_, proto, addr) for family, type_, proto, _, addr in infos]


class Connector:
    """One in-flight connection attempt; ``cancel()`` guarantees ``on_done`` will not run."""

    __slots__ = (
        "_addrs",
        "_done",
        "_fd",
        "_last_exc",
        "_on_done",
        "_reactor",
        "_sock",
        "_timer",
        "host",
        "port",
        "seq",
        "tag",
    )

    def __init__(self, reactor: Reactor, host: str, port: int, on_done: ConnectCallback) -> None:
        self._reactor = reactor
        self.host = host
        self.port = port
        self._on_done: ConnectCallback | None = on_done
        self._addrs: list[AddrInfo] = []
        self._sock: socket.socket | None = None
        self._fd = -1
        self._timer: TimerHandle | None = None
        self._last_exc: Exception | None = None
        self._done = False
        # Reactor.connect numbers its connectors 1, 2, ...: names this one in an input capture,
        # with the caller's own name for the connection (``tag``, opaque to the loop).
        self.seq = 0
        self.tag: Any = None

    def start(self, timeout: float | None = None) -> None:
        try:
            self._addrs = self._reactor.sockets.resolve(self.host, self.port)
        except OSError as exc:
            self._finish(None, exc, defer=True)
            return
        if timeout is not None:
            self._timer = self._reactor.call_later(timeout, self._on_timeout)
        self._try_next(defer=True)

    def _try_next(self, defer: bool) -> None:
        while self._addrs:
            family, type_, proto, addr = self._addrs.pop(0)
            try:
                sock = self._reactor.sockets.socket(family, type_, proto)
            except OSError as exc:
                self._last_exc = exc
                continue
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err == 0:
                self._finish(self._prepare(sock), None, defer=defer)
                return
            if err == errno.EINPROGRESS:
                self._sock = sock
                self._fd = sock.fileno()
                self._reactor._poller.register(self._fd, WRITE, self)
                self._reactor.stats.registers += 1
                return
            # Includes EAGAIN from a unix socket whose accept queue is full.
            sock.close()
            self._last_exc = OSError(err, f"connect to {addr!r} failed: {os.strerror(err)}")
        exc = self._last_exc or OSError(f"no addresses for {self.host!r}")
        self._finish(None, exc, defer=defer)

    @staticmethod
    def _prepare(sock: socket.socket) -> socket.socket:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _release_socket(self) -> socket.socket | None:
        sock = self._sock
        if sock is not None:
            self._sock = None
            try:
                self._reactor._poller.unregister(self._fd)
            except (KeyError, OSError, ValueError):
                pass
            self._fd = -1
        return sock

    def on_events(self, events: int) -> None:
        sock = self._release_socket()
        if sock is None or self._done:
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            try:
                self._finish(self._prepare(sock), None, defer=False)
            except OSError as exc:
                sock.close()
                self._finish(None, exc, defer=False)
            return
        sock.close()
        self._last_exc = OSError(err, f"connect to {self.host!r}:{self.port} failed: {os.strerror(err)}")
        self._try_next(defer=False)

    def _on_timeout(self) -> None:
        self._timer = None
        if self._done:
            return
        sock = self._release_socket()
        if sock is not None:
            sock.close()
        self._finish(None, TimeoutError(f"connect to {self.host!r}:{self.port} timed out"), defer=False)

    def _finish(self, sock: socket.socket | None, exc: Exception | None, defer: bool) -> None:
        self._done = True
        recorder = self._reactor.recorder
        if recorder is not None:
            recorder.on_connect(self, exc, defer, self._timer is not None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if defer:
            self._reactor.call_soon(self._deliver, sock, exc)
        else:
            self._deliver(sock, exc)

    def _deliver(self, sock: socket.socket | None, exc: Exception | None) -> None:
        on_done = self._on_done
        self._on_done = None
        if on_done is None:
            # Cancelled between completion and delivery.
            if sock is not None:
                sock.close()
            return
        on_done(sock, exc)

    def cancel(self) -> None:
        """Abandon the attempt; ``on_done`` is never called afterwards."""
        self._on_done = None
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sock = self._release_socket()
        if sock is not None:
            sock.close()

    @property
    def done(self) -> bool:
        return self._done

    def __repr__(self) -> str:
        return f"<Connector {self.host!r}:{self.port} {'done' if self._done else 'pending'}>"
