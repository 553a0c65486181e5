"""The admin console: runs admin commands for clients of the admin database.

Commands are looked up in one table (verb, then the SHOW item), so the load
balancer's BAN/UNBAN/HEALTHCHECK and SHOW BANS/REPLICATION slot in beside the
rest. Anything not in it, SQL included, gets SQLSTATE 08P01 with the list of
what exists: that is how pgcli recognises a virtual database, and it tells a
person at 3 a.m. what to type instead.

Several commands in one Query run in order and stop at the first error, like
a simple query. PAUSE answers only once the paused pools have closed every
server connection (what an operator needs before restarting PostgreSQL); the
commands after it run then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgdog_ev.admin import control, replicas, show_misc, show_pools, show_sessions, show_stats
from pgdog_ev.admin.averages import StatsWindow
from pgdog_ev.admin.parser import AdminSyntaxError, Command, parse, split_statements
from pgdog_ev.admin.resultset import done, result, text
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from state.events import Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost
    from state.client import ClientSession
    from state.pool import Pool

log = logging.getLogger("pgdog_ev.admin")

Handler = Callable[["ConsoleHost", tuple[str, ...]], bytes]

HELP = [
    ("SHOW POOLS", "pools: clients waiting, servers active/idle, pause and health"),
    ("SHOW CLIENTS [col, ...]", "client connections"),
    ("SHOW SERVERS [col, ...]", "server connections"),
    ("SHOW STATS | STATS_TOTALS | STATS_AVERAGES", "per-pool totals and averages over stats_period"),
    ("SHOW DATABASES | USERS | LISTS", "configured databases and users, object counts"),
    ("SHOW CONFIG", "[general] as running now"),
    ("SHOW PREPARED", "proxy-global prepared statements"),
    ("SHOW QUERY_CACHE", "the SQL analysis cache"),
    ("SHOW EVENTS [n]", "the last n event-log records (default 50)"),
    ("SHOW VERSION", "version"),
    ("SHOW BANS", "hosts out of the read rotation, why, and for how long"),
    ("SHOW REPLICATION", "per host: role, WAL position, lag behind the primary"),
    ("BAN [id] / UNBAN [id]", "take a pool's host out of (back into) the read rotation; ids from SHOW POOLS"),
    ("HEALTHCHECK [id]", "health-check a pool's host now"),
    ("SET <general key> TO <value>", "change a [general] key until the next RELOAD"),
    ("RELOAD", "re-read pgdog.toml and users.toml (same as SIGHUP)"),
    ("RECONNECT [db]", "replace server connections as they come free"),
    ("PAUSE [db] / RESUME [db]", "hold new transactions and close servers; answer when they are closed"),
    ("MAINTENANCE ON|OFF [db]", "hold clients between transactions, keep servers"),
    ("SHUTDOWN", "graceful shutdown"),
]


@dataclass(slots=True)
class PendingPause:
    """A PAUSE waiting for its pools to close their servers, and what its Query has left."""

    client: ClientSession
    pools: list[Pool]
    rest: list[str]
    out: bytearray = field(default_factory=bytearray)


class AdminConsole:
    def __init__(self, host: ConsoleHost) -> None:
        self.host = host
        self.window = StatsWindow()
        self._pending: dict[int, PendingPause] = {}
        self.show: dict[str, Handler] = {
            "pools": show_pools.show_pools,
            "databases": show_pools.show_databases,
            "users": show_pools.show_users,
            "lists": show_pools.show_lists,
            "clients": show_sessions.show_clients,
            "servers": show_sessions.show_servers,
            "stats": lambda h, a: show_stats.show_stats(h, self.window),
            "stats_totals": lambda h, a: show_stats.show_stats_totals(h, self.window),
            "stats_averages": lambda h, a: show_stats.show_stats_averages(h, self.window),
            "config": show_misc.show_config,
            "version": show_misc.show_version,
            "prepared": show_misc.show_prepared,
            "query_cache": show_misc.show_query_cache,
            "events": show_misc.show_events,
            "bans": replicas.show_bans,
            "replication": replicas.show_replication,
            "help": lambda h, a: self._help(),
        }
        self.commands: dict[str, Callable[[ClientSession, Command], bytes | None]] = {
            "SHOW": self._show,
            "SET": lambda c, cmd: control.admin_set(self.host, cmd.args[0], cmd.args[1]),
            "RELOAD": lambda c, cmd: control.reload(self.host),
            "RECONNECT": lambda c, cmd: control.reconnect(self.host, cmd.args),
            "PAUSE": self._pause,
            "RESUME": self._resume,
            "MAINTENANCE": lambda c, cmd: control.maintenance(self.host, cmd.args),
            "SHUTDOWN": self._shutdown,
            "BAN": lambda c, cmd: replicas.ban(self.host, cmd.args),
            "UNBAN": lambda c, cmd: replicas.unban(self.host, cmd.args),
            "HEALTHCHECK": lambda c, cmd: replicas.healthcheck(self.host, cmd.args),
        }

    # -- the Directory's admin interface ----------------------------------------------

    def parameters(self) -> dict[str, str]:
        return {
            "server_version": "15.0 (" + show_misc.version_text() + ")",
            "server_encoding": "UTF8",
            "client_encoding": "UTF8",
            "DateStyle": "ISO, MDY",
            "integer_datetimes": "on",
            "standard_conforming_strings": "on",
            "TimeZone": "UTC",
            "is_superuser": "on",
        }

    def query(self, now: float, client: ClientSession, text_: str) -> bytes | None:
        statements = split_statements(text_)
        if not statements:
            return be.empty_query_response()
        return self._run(now, client, statements, bytearray())

    def cancel(self, now: float, client: ClientSession) -> None:
        self._pending.pop(client.id, None)

    def pool_drained(self, now: float, pool: Pool) -> None:
        for pending in [p for p in self._pending.values() if pool in p.pools]:
            if all(p.drained or not p.paused for p in pending.pools):
                self._finish_pause(now, pending)

    def tick(self, now: float) -> None:
        """Take a stats reading (every stats_period)."""
        self.window.tick(now, list(self.host.directory.pools.values()))

    # -- running commands ----------------------------------------------------------------

    def _run(self, now: float, client: ClientSession, statements: list[str], out: bytearray) -> bytes | None:
        for i, statement in enumerate(statements):
            try:
                command = parse(statement)
                handler = self.commands.get(command.verb)
                if handler is None:
                    raise AdminSyntaxError(self._unknown(statement))
                if command.verb != "SHOW":
                    self._audit(now, client, command)
                reply = handler(client, command)
            except AdminSyntaxError as exc:
                client.errors += 1
                out += be.error_response(codes.PROTOCOL_VIOLATION, str(exc))
                return bytes(out)
            except control.AdminError as exc:
                client.errors += 1
                out += be.error_response(exc.sqlstate, str(exc))
                return bytes(out)
            if reply is None:
                self._pending[client.id].rest = statements[i + 1:]
                self._pending[client.id].out = out
                return None
            out += reply
        return bytes(out)

    def _unknown(self, statement: str) -> str:
        word = statement.split(None, 1)[0].upper() if statement.split() else statement
        return (f'unsupported admin command "{word}": this is the pgdog-ev admin console, not a database; '
                f"try SHOW HELP (commands: {', '.join(sorted(self.commands))})")

    def _audit(self, now: float, client: ClientSession, command: Command) -> None:
        shown = f"SET {command.args[0]}" if command.verb == "SET" else " ".join((command.verb, *command.args))
        log.info("admin command %s by %s from %s", shown, client.user, client.peer,
                 extra={"user": client.user, "addr": client.peer, "command": command.verb})
        self.host.events.emit(now, Kind.NOTE, Machine.DAEMON, client.id, 0, 0, Reason.ADMIN_COMMAND)

    def _show(self, client: ClientSession, command: Command) -> bytes:
        if not command.args:
            raise AdminSyntaxError("SHOW what? Try SHOW HELP")
        item = command.args[0]
        handler = self.show.get(item)
        if handler is None:
            raise AdminSyntaxError(f'unknown SHOW item "{item}"; items: {", ".join(sorted(self.show))}')
        return handler(self.host, command.args[1:])

    def _help(self) -> bytes:
        return result("SHOW", [text("command"), text("description")], HELP)

    def _pause(self, client: ClientSession, command: Command) -> bytes | None:
        now = self.host.now()
        pools = control.target_pools(self.host, "PAUSE", command.args)
        for pool in pools:
            pool.pause(now)
        if all(pool.drained for pool in pools):
            return done("PAUSE")
        self._pending[client.id] = PendingPause(client, pools, [])
        return None

    def _finish_pause(self, now: float, pending: PendingPause) -> None:
        self._pending.pop(pending.client.id, None)
        out = pending.out
        out += done("PAUSE")
        reply = self._run(now, pending.client, pending.rest, out) if pending.rest else bytes(out)
        if reply is not None:
            pending.client.admin_reply(now, reply)

    def _resume(self, client: ClientSession, command: Command) -> bytes:
        now = self.host.now()
        pools = control.resume(self.host, command.args)
        for pending in [p for p in self._pending.values() if any(pool in p.pools for pool in pools)]:
            # Its pools will not drain now: answer the waiting PAUSE rather than leave it hanging.
            self._pending.pop(pending.client.id, None)
            pending.client.errors += 1
            pending.client.admin_reply(now, bytes(pending.out) + be.error_response(
                codes.QUERY_CANCELED, "PAUSE canceled: RESUME was issued before every server connection closed"))
        return done("RESUME")

    def _shutdown(self, client: ClientSession, command: Command) -> bytes:
        self.host.call_soon(self.host.shutdown)
        return done("SHUTDOWN")
