"""One consistent reading of the pools and sessions for a SHOW command.

Everything runs on the reactor thread, so a reading cannot tear; what this adds
is grouping (clients and servers by pool) done once per command instead of
once per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from state.client import ClientState
from state.server import ServerState

if TYPE_CHECKING:
    from pgdog_ev.proxy.directory import Directory
    from state.client import ClientSession
    from state.pool import Pool
    from state.server import ServerSession

LOGGING_IN = (ClientState.STARTUP, ClientState.AUTH, ClientState.LOGIN)


@dataclass(slots=True)
class PoolView:
    pool: Pool
    clients: list[ClientSession] = field(default_factory=list)

    @property
    def servers(self) -> list[ServerSession]:
        return sorted(self.pool.servers.values(), key=lambda s: s.id)


def client_state(client: ClientSession) -> str:
    """PgBouncer's words for a client's state."""
    if client.state in LOGGING_IN:
        return "login"
    if client.state is ClientState.WAITING:
        return "waiting"
    if client.state is ClientState.ACTIVE:
        return "active"
    if client.state is ClientState.CLOSED:
        return "closed"
    return "idle"


def server_state(server: ServerSession) -> str:
    """PgBouncer's words, plus idle_xact for a server whose client sits in a transaction."""
    state = server.state
    if state in (ServerState.CONNECTING, ServerState.STARTUP):
        return "login"
    if state is ServerState.ACTIVE:
        if not server.owed and server.txn_status != b"I":
            return "idle_xact"
        return "active"
    if state is ServerState.CLEANING:
        return "used"
    if state is ServerState.CLOSED:
        return "closed"
    return "idle"


def split_peer(peer: str) -> tuple[str, int | None]:
    """'127.0.0.1:5555' -> ('127.0.0.1', 5555); a unix socket peer has no port."""
    host, sep, port = peer.rpartition(":")
    if sep and port.isdigit():
        return host.strip("[]"), int(port)
    return peer, None


def pool_views(directory: Directory) -> list[PoolView]:
    """Every pool (by id) with its logged-in clients."""
    views = {pool.id: PoolView(pool) for pool in directory.pools.values()}
    for client in directory.clients.values():
        pool = client.pool
        if pool is not None and pool.id in views:
            views[pool.id].clients.append(client)
    return [views[k] for k in sorted(views)]


def sorted_clients(directory: Directory) -> list[ClientSession]:
    return [directory.clients[k] for k in sorted(directory.clients)]
