"""The proxy's own server-connection machine (state/server.py) against the fake backend.

This is the pairing the simulator relies on: the production login code
(cleartext, MD5, SCRAM), the health check and the replication poll must
all understand the bytes the fake sends.
"""

from __future__ import annotations

import pytest

from sim.fakepg import AuthSpec, Database, FakeServer
from sim.fakepg.session import BackendSession
from state.probe import HEALTHCHECK_SQL, Probe
from state.replication import LSN_SQL, parse_status
from state.server import ServerSession, ServerState
from tests.unit.statekit import World, feed


def _pump(world: World, server: ServerSession, backend: BackendSession) -> None:
    stream = server.io
    for _ in range(100):
        data = stream.take_raw()  # type: ignore[attr-defined]
        if not data:
            return
        backend.on_bytes(world.now, data)
    raise AssertionError("the conversation does not end")


def _probe(method: str, sql: str, database: Database) -> tuple[ServerSession, list[tuple[object, object]]]:
    world = World()
    pool = world.make_pool(pool_size=1, server_user="app", server_password="pw", server_database="app")
    fake = FakeServer(database, AuthSpec.single("app", "pw", method))
    results: list[tuple[object, object]] = []
    pool.probe(world.now, Probe(sql, 5.0, lambda now, p, row, err: results.append((row, err)), health=False))
    server = world.pool_io.opened[-1]
    backend = fake.open_session(world.now, lambda data: feed(server, world.now, data))
    server.on_connected(world.now)
    _pump(world, server, backend)
    return server, results


@pytest.mark.parametrize("method", ["trust", "password", "md5", "scram-sha-256"])
def test_the_proxy_logs_in_and_runs_a_health_check(method: str) -> None:
    server, results = _probe(method, HEALTHCHECK_SQL, Database(tables=("kv",)))
    assert results == [(None, None)]
    assert server.state is ServerState.IDLE and server.pid >= 1000
    assert server.reported["server_version"] == "16.4"


def test_the_proxy_reads_the_replication_poll_of_a_replica() -> None:
    primary = Database(tables=("kv",))
    replica = Database(primary=primary)
    server, results = _probe("scram-sha-256", LSN_SQL, replica)
    ((row, error),) = results
    assert error is None
    status = parse_status(0.0, row, None)  # type: ignore[arg-type]
    assert status.ok and status.in_recovery is True and status.lsn == replica.current_lsn
    assert server.reported["in_hot_standby"] == "on"
