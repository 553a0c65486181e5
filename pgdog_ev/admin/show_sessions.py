"""SHOW CLIENTS and SHOW SERVERS: one row per connection.

Times are wall clock (UTC) for moments and microseconds for durations, as in
PgBouncer. ``SHOW CLIENTS col, col`` and ``SHOW SERVERS col`` (PgDog) pick columns: the
handlers here build every column and the console picks (:func:`pick`), after merging the rows of
every worker when there are several.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev.admin.clock import micros, wall
from pgdog_ev.admin.parser import AdminSyntaxError
from pgdog_ev.admin.resultset import Table, boolean, float8, int8, text
from pgdog_ev.admin.snapshot import client_state, server_state, sorted_clients, split_peer
from state.server import ServerState

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost

CLIENT_COLUMNS = [
    int8("id"), text("user"), text("database"), text("addr"), int8("port"), text("state"), text("replication"),
    text("connect_time"), text("last_request"), int8("queries"), int8("transactions"), int8("wait_time"),
    int8("query_time"), int8("transaction_time"), int8("bytes_received"), int8("bytes_sent"), int8("errors"),
    text("application_name"), boolean("locked"), int8("prepared_statements"), int8("server_id"),
    text("pool_mode"), boolean("admin"),
]


def pick(table: Table, wanted: tuple[str, ...]) -> Table:
    """Keep only the named columns, in the order asked (PgDog's ``SHOW CLIENTS id, state``)."""
    names = [w.strip(",") for word in wanted for w in word.split(",") if w.strip(",")]
    if not names:
        return table
    index = {name: i for i, (name, _) in enumerate(table.columns)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise AdminSyntaxError(f"unknown column {unknown[0]!r}; columns are: {', '.join(index)}")
    keep = [index[n] for n in names]
    return Table([table.columns[i] for i in keep], [[row[i] for i in keep] for row in table.rows])


def show_clients(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    header = host.log_header
    rows = []
    for client in sorted_clients(host.directory):
        addr, port = split_peer(client.peer)
        server = client.server
        rows.append([
            client.id, client.user, client.database, addr, port, client_state(client), "none",
            wall(header, client.connected_at), wall(header, client.last_activity), client.queries,
            client.transactions, micros(client.wait_time), micros(client.query_time), micros(client.xact_time),
            client.bytes_in, client.bytes_out, client.errors, client.application_name, client.pinned,
            len(client.statements) + len(client.sql_statements), server.id if server is not None else None,
            client.login.pooler_mode if client.login is not None and not client.admin else None, client.admin,
        ])
    return Table(list(CLIENT_COLUMNS), rows)


SERVER_COLUMNS = [
    int8("id"), int8("pool_id"), text("database"), text("user"), text("addr"), int8("port"), text("state"),
    text("connect_time"), text("request_time"), int8("remote_pid"), int8("client_id"), int8("transactions"),
    int8("queries"), int8("rollbacks"), int8("prepared_statements"), int8("errors"), int8("bytes_received"),
    int8("bytes_sent"), float8("age"), int8("re_synced"), text("application_name"),
]


def show_servers(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    header = host.log_header
    now = host.now()
    rows = []
    servers = [s for pool in host.directory.pools.values() for s in pool.servers.values()]
    for server in sorted(servers, key=lambda s: s.id):
        if server.state is ServerState.CLOSED:
            continue
        key = server.pool.key
        client = server.client
        rows.append([
            server.id, server.pool.id, key.database, key.user, key.host, key.port, server_state(server),
            wall(header, server.created_at), wall(header, server.last_used), server.pid or None,
            client.id if client is not None else None, server.transactions, server.queries, server.rollbacks,
            len(server.prepared), server.errors, server.bytes_in, server.bytes_out, round(now - server.created_at, 3),
            server.resyncs, server.reported.get("application_name", ""),
        ])
    return Table(list(SERVER_COLUMNS), rows)
