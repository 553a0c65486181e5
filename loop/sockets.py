"""Where the loop gets its sockets from.

The connector and the listener ask the reactor's ``sockets`` for every socket
they create and every name they resolve. Production uses the operating
system's; the simulator passes objects with the same methods backed by its
virtual network, so ``SocketTransport``, ``Connector`` and ``Listener`` run
unchanged in both worlds.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

AddrInfo = tuple[int, int, int, Any]


class SocketApi(Protocol):
    def socket(self, family: int, type_: int, proto: int) -> Any: ...

    def listen_socket(self, host: str | None, port: int, backlog: int, reuse_port: bool) -> Any: ...

    def resolve(self, host: str, port: int) -> list[AddrInfo]: ...


class SystemSockets:
    """The operating system's sockets and resolver."""

    __slots__ = ()

    def socket(self, family: int, type_: int, proto: int) -> socket.socket:
        return socket.socket(family, type_, proto)

    def listen_socket(self, host: str | None, port: int, backlog: int, reuse_port: bool) -> socket.socket:
        from loop.listener import make_listen_socket

        return make_listen_socket(host, port, backlog, reuse_port)

    def resolve(self, host: str, port: int) -> list[AddrInfo]:
        from loop.connector import resolve

        return resolve(host, port)
