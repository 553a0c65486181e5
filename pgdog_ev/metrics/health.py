"""The health endpoint: `up` (200) while the proxy can serve, `down` (502) when it cannot.

For load balancers and orchestrators in front of several proxies (PgDog's healthcheck_port).
"Cannot serve" is decided conservatively, so that one broken database does not look like a
broken proxy only when something is genuinely wrong:

* the daemon is shutting down (a signal or the admin SHUTDOWN started the drain), or
* some database has every one of its pools failing: each has `last_error` set (its last attempt
  to connect a server failed) and none has a server connection that finished logging in.

A pool that never needed a server yet is healthy; one that connects again is healthy again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pgdog_ev.metrics.http import Request, Response
from state.server import ServerState

if TYPE_CHECKING:
    from pgdog_ev.proxy.directory import Directory
    from state.pool import Pool

_CONNECTED = (ServerState.IDLE, ServerState.ACTIVE, ServerState.CLEANING)


class HealthHost(Protocol):
    directory: Directory
    stopping: bool


def pool_down(pool: Pool) -> bool:
    """The pool's last connect failed and it has no logged-in server to lend meanwhile."""
    if pool.last_error is None:
        return False
    return not any(server.state in _CONNECTED for server in pool.servers.values())


def down_databases(directory: Directory) -> list[str]:
    """Databases none of whose pools can lend a server, sorted."""
    by_database: dict[str, list[Pool]] = {}
    for pool in directory.pools.values():
        by_database.setdefault(pool.key.database, []).append(pool)
    return sorted(name for name, pools in by_database.items() if all(pool_down(p) for p in pools))


def is_up(host: HealthHost) -> bool:
    return not host.stopping and not down_databases(host.directory)


class HealthEndpoint:
    """HTTP handler: 200 `up` or 502 `down`, for any path, as PgDog answers."""

    def __init__(self, host: HealthHost) -> None:
        self.host = host

    def __call__(self, request: Request) -> Response:
        if is_up(self.host):
            return Response(200, b"up")
        return Response(502, b"down")
