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

With several worker processes (``[general] workers``) the console of each
worker speaks for the whole daemon through its ``cluster`` link: a SHOW asks
every worker and merges their tables (merge.py), a command that changes the
proxy runs in every worker, and SHUTDOWN goes to the supervisor. The answer
waits for the workers, without blocking the loop, the way PAUSE waits for its
pools; a worker that does not answer within a short time is left out, and a
NOTICE names it. With one process ``cluster`` is None and nothing of this runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pgdog_ev.admin import (
    control,
    merge,
    replicas,
    show_misc,
    show_pools,
    show_sessions,
    show_stats,
    show_workers,
)
from pgdog_ev.admin.averages import StatsWindow
from pgdog_ev.admin.parser import AdminSyntaxError, Command, parse, split_statements
from pgdog_ev.admin.resultset import Table, done, text
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from state.events import Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost
    from state.client import ClientSession
    from state.pool import Pool

log = logging.getLogger("pgdog_ev.admin")

Handler = Callable[["ConsoleHost", tuple[str, ...]], Table]
#: What a gather hands back: each answering worker's result, the workers that did not answer,
#: and what the supervisor knows of every worker (pid, state, restarts).
GatherDone = Callable[[dict[int, Any], list[int], dict[int, dict[str, Any]]], None]

#: How long a SHOW waits for the other workers; a command that changes the proxy waits longer,
#: PAUSE as long as the servers take to come home (or until the worker is gone).
SHOW_TIMEOUT = 2.0
CONTROL_TIMEOUT = 10.0
#: Commands every worker runs. SHUTDOWN is the supervisor's; SHOW is gathered (merge.GATHERED).
BROADCAST = frozenset({"SET", "RELOAD", "RECONNECT", "PAUSE", "RESUME", "MAINTENANCE", "BAN", "UNBAN", "HEALTHCHECK"})
#: Commands whose ``[id]`` names a pool by this worker's ids (other workers may number differently).
BY_POOL_ID = frozenset({"BAN", "UNBAN", "HEALTHCHECK"})
#: SHOW items whose columns can be picked (``SHOW CLIENTS id, state``).
PICKABLE = frozenset({"clients", "servers"})
NO_ANSWER = "58000"  # system_error: no worker answered at all
WARNING = "01000"

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
    ("SHOW WORKERS", "worker processes: pid, state, clients, servers, cancels passed between them, restarts"),
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


class Cluster(Protocol):
    """The worker's link to the other workers, through the supervisor (pgdog_ev/workers/link.py)."""

    index: int
    count: int

    def gather(self, request: dict[str, Any], timeout: float | None, on_done: GatherDone, *,
               others: bool = False) -> None:
        """Ask every worker (with ``others``, every other one) ``request``; ``on_done`` runs later,
        from the loop."""

    def request_shutdown(self) -> None:
        """Ask the supervisor to drain and stop every worker."""


@dataclass(slots=True)
class PendingPause:
    """A PAUSE waiting for its pools to close their servers, and what its Query has left."""

    client: Any  # a ClientSession, or a RemoteCaller running another worker's PAUSE
    pools: list[Pool]
    rest: list[str]
    out: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class PendingGather:
    """A command waiting for the other workers' answers, and what its Query has left."""

    client: ClientSession
    finish: Callable[[dict[int, Any], list[int], dict[int, dict[str, Any]]], bytes]
    rest: list[str] = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)


class RemoteCaller:
    """Stands in for the admin client of another worker while this worker runs its command.

    Offers what the console reads of a client (id, user, peer, errors) and takes the answer of a
    command that had to wait (PAUSE) through ``admin_reply``, like a client would.
    """

    def __init__(self, ident: int, user: str, peer: str, reply: Callable[[dict[str, Any]], None]) -> None:
        self.id = ident
        self.user = user
        self.peer = peer
        self.errors = 0
        self._reply = reply

    def admin_reply(self, now: float, payload: bytes) -> None:
        error = first_error(payload)
        self._reply({"error": list(error)} if error is not None else {"ok": True})


def first_error(payload: bytes) -> tuple[str, str] | None:
    """(SQLSTATE, message) of the first ErrorResponse in protocol bytes, if there is one."""
    pos = 0
    while pos + 5 <= len(payload):
        kind = payload[pos:pos + 1]
        length = int.from_bytes(payload[pos + 1:pos + 5], "big")
        if kind == b"E":
            fields = be.parse_error_fields(payload[pos + 5:pos + 1 + length])
            return fields.get("C", "XX000"), fields.get("M", "")
        pos += 1 + length
    return None


class AdminConsole:
    def __init__(self, host: ConsoleHost) -> None:
        self.host = host
        self.window = StatsWindow()
        self._pending: dict[int, PendingPause | PendingGather] = {}
        # Set by the daemon of a worker process (``[general] workers`` > 1).
        self.cluster: Cluster | None = None
        self._remote_ids = 0
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
            "workers": show_workers.show_workers,
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
        pauses = [p for p in self._pending.values() if isinstance(p, PendingPause)]
        for pending in [p for p in pauses if pool in p.pools]:
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
                if self.cluster is not None and command.verb in BROADCAST:
                    reply = self._broadcast(client, command)
                else:
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

    def _audit(self, now: float, client: Any, command: Command, *, log_line: bool = True) -> None:
        if log_line:
            shown = f"SET {command.args[0]}" if command.verb == "SET" else " ".join((command.verb, *command.args))
            log.info("admin command %s by %s from %s", shown, client.user, client.peer,
                     extra={"user": client.user, "addr": client.peer, "command": command.verb})
        # Another worker's admin client has no id here (a RemoteCaller's is negative): 0.
        self.host.events.emit(now, Kind.NOTE, Machine.DAEMON, max(client.id, 0), 0, 0, Reason.ADMIN_COMMAND)

    def _show(self, client: ClientSession, command: Command) -> bytes | None:
        if not command.args:
            raise AdminSyntaxError("SHOW what? Try SHOW HELP")
        item = command.args[0]
        handler = self.show.get(item)
        if handler is None:
            raise AdminSyntaxError(f'unknown SHOW item "{item}"; items: {", ".join(sorted(self.show))}')
        args = command.args[1:]
        if self.cluster is not None and item in merge.GATHERED:
            # This worker's rows now, before its client waits for the others' (it would show up
            # as waiting in its own SHOW CLIENTS otherwise); a bad argument fails here, at once.
            me = self.cluster.index
            local = {"table": handler(self.host, args).to_json()}
            return self._gather(
                client, {"show": item, "args": list(args)}, SHOW_TIMEOUT,
                lambda results, missing, meta: self._merged_show(item, args, {**results, me: local}, missing, meta),
                others=True,
            )
        table = handler(self.host, args)
        if item in PICKABLE:
            table = show_sessions.pick(table, args)
        return table.encode()

    def _help(self) -> Table:
        return Table([text("command"), text("description")], [list(row) for row in HELP])

    # -- several workers -----------------------------------------------------------------

    def _gather(self, client: ClientSession, request: dict[str, Any], timeout: float | None,
                finish: Callable[[dict[int, Any], list[int], dict[int, dict[str, Any]]], bytes], *,
                others: bool = False) -> None:
        """Send ``request`` to every worker (``others``: but this one); the client's answer waits
        (see _gathered)."""
        assert self.cluster is not None
        pending = PendingGather(client, finish)
        self._pending[client.id] = pending
        self.cluster.gather(request, timeout,
                            lambda results, missing, meta: self._gathered(pending, results, missing, meta),
                            others=others)
        return None

    def _gathered(self, pending: PendingGather, results: dict[int, Any], missing: list[int],
                  meta: dict[int, dict[str, Any]]) -> None:
        client = pending.client
        if self._pending.get(client.id) is not pending:
            return  # canceled, or the client left
        del self._pending[client.id]
        now = self.host.now()
        out = pending.out
        try:
            out += pending.finish(results, missing, meta)
        except (AdminSyntaxError, control.AdminError) as exc:
            client.errors += 1
            sqlstate = exc.sqlstate if isinstance(exc, control.AdminError) else codes.PROTOCOL_VIOLATION
            out += be.error_response(sqlstate, str(exc))
            client.admin_reply(now, bytes(out))
            return
        reply = self._run(now, client, pending.rest, out) if pending.rest else bytes(out)
        if reply is not None:
            client.admin_reply(now, reply)

    def _order(self, results: dict[int, Any]) -> list[int]:
        """Workers in merge order: this one first (its ids are the ones its client sees)."""
        me = self.cluster.index if self.cluster is not None else 0
        return sorted(results, key=lambda worker: (worker != me, worker))

    @staticmethod
    def _notices(missing: list[int], why: str = "did not answer in time") -> bytes:
        out = bytearray()
        for worker in sorted(missing):
            out += be.notice_response(WARNING, f"worker {worker} {why}: the answer leaves it out")
        return bytes(out)

    def _merged_show(self, item: str, args: tuple[str, ...], results: dict[int, Any], missing: list[int],
                     meta: dict[int, dict[str, Any]]) -> bytes:
        sources: list[merge.Source] = []
        errors: list[tuple[int, list[str]]] = []
        for worker in self._order(results):
            answer = results[worker]
            if "table" in answer:
                sources.append((worker, Table.from_json(answer["table"])))
            else:
                errors.append((worker, answer.get("error") or [codes.INTERNAL_ERROR, "no answer"]))
        if not sources:
            if errors:
                raise control.AdminError(errors[0][1][0], errors[0][1][1])
            raise control.AdminError(NO_ANSWER, f"SHOW {item.upper()}: no worker answered")
        if item == "workers":
            table = merge.merge_workers(sources, meta, self.cluster.count if self.cluster is not None else 1)
        else:
            table = merge.merge_show(item, sources, args)
        if item in PICKABLE:
            table = show_sessions.pick(table, args)
        notices = self._notices([w for w, _ in errors], "failed")
        if item != "workers":  # SHOW WORKERS has a row saying so
            notices += self._notices(missing)
        return notices + table.encode()

    def _broadcast(self, client: ClientSession, command: Command) -> None:
        """Run ``command`` in every worker; answer when they have (PAUSE: once all drained)."""
        request: dict[str, Any] = {"run": command.text, "user": client.user, "peer": client.peer}
        if command.verb == "RELOAD":
            request["reload_config"] = True
        if command.verb in BY_POOL_ID and command.args:
            # Pool ids are this worker's; the others find the pools by key.
            request["pools"] = [replicas.key_of(p) for p in replicas.chosen(self.host, command.verb, command.args)]
        timeout = None if command.verb == "PAUSE" else CONTROL_TIMEOUT
        return self._gather(client, request, timeout,
                            lambda results, missing, meta: self._merged_run(command.verb, results, missing))

    def _merged_run(self, tag: str, results: dict[int, Any], missing: list[int]) -> bytes:
        failed = [(w, results[w]["error"]) for w in self._order(results) if "error" in results[w]]
        if failed:
            if len(failed) == len(results) and len({tuple(e) for _, e in failed}) == 1:
                raise control.AdminError(failed[0][1][0], failed[0][1][1])  # the same everywhere
            raise control.AdminError(failed[0][1][0], "; ".join(f"worker {w}: {e[1]}" for w, e in failed))
        if not results:
            raise control.AdminError(NO_ANSWER, f"{tag}: no worker answered")
        return self._notices(missing) + done(tag)

    # -- answering another worker ---------------------------------------------------------

    def remote_show(self, item: str, args: tuple[str, ...]) -> dict[str, Any]:
        """This worker's table for another worker's SHOW, unmerged and unpicked."""
        handler = self.show.get(item)
        try:
            if handler is None:
                raise AdminSyntaxError(f'unknown SHOW item "{item}"')
            return {"table": handler(self.host, args).to_json()}
        except AdminSyntaxError as exc:
            return {"error": [codes.PROTOCOL_VIOLATION, str(exc)]}
        except control.AdminError as exc:
            return {"error": [exc.sqlstate, str(exc)]}

    def remote_run(self, now: float, request: dict[str, Any], reply: Callable[[dict[str, Any]], None],
                   *, audit: bool = True) -> None:
        """Run another worker's command here; ``reply`` gets {"ok": true} or {"error": [state, text]},
        at once or, for PAUSE, once this worker's pools are drained."""
        self._remote_ids -= 1  # negative: never a real client's id
        caller = RemoteCaller(self._remote_ids, str(request.get("user", "")), str(request.get("peer", "")), reply)
        try:
            command = parse(str(request["run"]))
            handler = self.commands.get(command.verb)
            if handler is None or command.verb not in BROADCAST:
                raise AdminSyntaxError(f"{command.verb} is not run on behalf of another worker")
            if audit:
                self._audit(now, caller, command, log_line=False)
            keys = request.get("pools")
            if keys is not None:
                pools = replicas.pools_with_keys(self.host, keys)
                actions = {"BAN": replicas.ban_pools, "UNBAN": replicas.unban_pools,
                           "HEALTHCHECK": replicas.healthcheck_pools}
                answer: bytes | None = actions[command.verb](self.host, pools)
            else:
                answer = handler(caller, command)  # type: ignore[arg-type]
        except AdminSyntaxError as exc:
            reply({"error": [codes.PROTOCOL_VIOLATION, str(exc)]})
            return
        except control.AdminError as exc:
            reply({"error": [exc.sqlstate, str(exc)]})
            return
        if answer is not None:
            reply({"ok": True})
        # else a PAUSE is pending with ``caller`` as its client: caller.admin_reply answers.

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
        pauses = [p for p in self._pending.values() if isinstance(p, PendingPause)]
        for pending in [p for p in pauses if any(pool in p.pools for pool in pools)]:
            # Its pools will not drain now: answer the waiting PAUSE rather than leave it hanging.
            self._pending.pop(pending.client.id, None)
            pending.client.errors += 1
            pending.client.admin_reply(now, bytes(pending.out) + be.error_response(
                codes.QUERY_CANCELED, "PAUSE canceled: RESUME was issued before every server connection closed"))
        return done("RESUME")

    def _shutdown(self, client: ClientSession, command: Command) -> bytes:
        if self.cluster is not None:
            # The supervisor stops every worker (and does not restart them).
            self.cluster.request_shutdown()
        else:
            self.host.call_soon(self.host.shutdown)
        return done("SHUTDOWN")
