"""The floor under pgdog-ev's hot path: a byte relay on the same reactor and transports.

Each client connection gets its own PostgreSQL connection (session pooling without the pool) and
bytes are copied both ways unread: no framing, no state machines, no event log. Run pgbench
through it beside pgdog-ev and PgBouncer and the difference between its CPU per transaction and
pgdog-ev's is what the PostgreSQL protocol layer costs in Python; the difference to PgBouncer's is
what the loop and the interpreter cost.

    python -m bench.relay --server-port 5432 --port 6499
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from loop.protocol import Protocol
from loop.reactor import Reactor


class _Side(Protocol):
    """One end of a relayed pair: what it reads, its peer writes."""

    __slots__ = ("peer", "transport")

    def __init__(self) -> None:
        self.peer: _Side | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: memoryview) -> None:
        assert self.peer is not None
        self.peer.transport.write(data)

    def eof_received(self) -> None:
        self._close_peer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_peer()

    def _close_peer(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


def serve(host: str, port: int, server_host: str, server_port: int) -> None:
    reactor = Reactor()

    def accept(sock: socket.socket, _addr: Any) -> None:
        # A blocking connect is fine for a benchmark tool: pgbench connects before it measures.
        try:
            upstream = socket.create_connection((server_host, server_port), timeout=5)
        except OSError:
            sock.close()
            return
        for s in (sock, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client, server = _Side(), _Side()
        client.peer, server.peer = server, client
        reactor.transport(sock, client)
        reactor.transport(upstream, server)

    reactor.listen(host, port, accept)
    reactor.run_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-host", default="127.0.0.1")
    ap.add_argument("--server-port", type=int, required=True)
    args = ap.parse_args()
    try:
        serve(args.host, args.port, args.server_host, args.server_port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
