"""Accepting inbound connections.

Accepts are batched (many per readable event) because connection storms are
exactly when per-event overhead hurts.  Running out of descriptors
(EMFILE/ENFILE) is handled by withdrawing read interest for a short while:
with a level-triggered poller the pending connection would otherwise make
the loop spin at 100% CPU while nothing can be accepted.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loop.poller import READ
from loop.timers import TimerHandle

if TYPE_CHECKING:
    from loop.reactor import Reactor

AcceptCallback = Callable[[socket.socket, Any], None]

ACCEPT_BATCH = 64
#: How long to stop accepting after running out of file descriptors.
RESOURCE_BACKOFF = 0.1

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The connection died between SYN and accept(): not our problem, keep going.
_TRANSIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})


def make_listen_socket(host: str | None, port: int, backlog: int | None, reuse_port: bool) -> socket.socket:
    """A bound (and, with a ``backlog``, listening) stream socket. ``backlog=None`` only binds: a
    socket that holds a TCP port (with SO_REUSEPORT, for others to listen on) and is handed no
    connection."""
    if host and host.startswith("/"):
        # A host starting with "/" is a full unix socket path.
        try:
            if stat.S_ISSOCK(os.stat(host).st_mode):
                os.unlink(host)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(host)
            if backlog is not None:
                sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    err: OSError | None = None
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            if backlog is not None:
                sock.listen(backlog)
                sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            err = exc
    raise err if err is not None else OSError(f"cannot resolve {host!r}")


class Listener:
    """A listening socket that hands accepted, non-blocking sockets to ``on_accept``."""

    __slots__ = (
        "_backoff",
        "_batch",
        "_closed",
        "_fd",
        "_inet",
        "_on_accept",
        "_reactor",
        "_sock",
        "_starved",
        "path",
        "sockname",
    )

    def __init__(
        self,
        reactor: Reactor,
        host: str | None,
        port: int,
        on_accept: AcceptCallback,
        backlog: int = 1024,
        reuse_port: bool = False,
        batch: int = ACCEPT_BATCH,
    ) -> None:
        self._reactor = reactor
        self._on_accept = on_accept
        self._batch = batch
        self._sock = reactor.sockets.listen_socket(host, port, backlog, reuse_port)
        self._fd = self._sock.fileno()
        self._inet = self._sock.family in (socket.AF_INET, socket.AF_INET6)
        self.path: str | None = None if self._inet else host
        self.sockname: Any = self._sock.getsockname()
        self._backoff: TimerHandle | None = None
        # Out of descriptors since the backlog was last drained.
        self._starved = False
        self._closed = False
        reactor._poller.register(self._fd, READ, self)
        reactor.stats.registers += 1

    @property
    def port(self) -> int | None:
        """Bound port (useful with port 0); None for unix sockets."""
        return self.sockname[1] if self._inet else None

    def fileno(self) -> int:
        return self._fd

    def on_events(self, events: int) -> None:
        if self._closed or self._backoff is not None:
            return
        accept = self._sock.accept
        reactor = self._reactor
        for _ in range(self._batch):
            try:
                conn, addr = accept()
            except BlockingIOError:
                if self._starved:
                    # The backlog drained: accepting normally again. (Not at the first accept
                    # that works: at the limit, each descriptor freed lets one in before the next
                    # EMFILE, and that is still the same episode.)
                    self._starved = False
                    reactor.handle_starvation(None, repr(self))
                return
            except InterruptedError:
                return
            except OSError as exc:
                if exc.errno in _TRANSIENT_ERRNOS:
                    continue
                if exc.errno in _RESOURCE_ERRNOS:
                    # The load, not a bug: told once per episode (it recurs every backoff period).
                    if not self._starved:
                        self._starved = True
                        reactor.handle_starvation(exc, repr(self))
                    self._pause()
                    return
                reactor.handle_exception(exc, f"{self!r} accept")
                return
            reactor.stats.accepts += 1
            try:
                conn.setblocking(False)
                if self._inet:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                # Already reset by the peer; nothing worth reporting.
                conn.close()
                continue
            try:
                self._on_accept(conn, addr)
            except Exception as exc:
                reactor.handle_exception(exc, f"{self!r} on_accept")
            if self._closed:
                return

    def _pause(self) -> None:
        self._reactor._poller.modify(self._fd, 0, self)
        self._reactor.stats.modifies += 1
        self._backoff = self._reactor.call_later(RESOURCE_BACKOFF, self._resume)

    def _resume(self) -> None:
        self._backoff = None
        if not self._closed:
            self._reactor._poller.modify(self._fd, READ, self)
            self._reactor.stats.modifies += 1
            # Try at once: an empty backlog ends the episode now, not at the next connection.
            self.on_events(READ)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        try:
            self._reactor._poller.unregister(self._fd)
        except (KeyError, OSError, ValueError):
            pass
        self._sock.close()
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<Listener {self.sockname!r}>"
