"""SHOW CONFIG, VERSION, PREPARED, QUERY_CACHE and our own SHOW EVENTS [n]."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev import __version__
from pgdog_ev.admin.parser import AdminSyntaxError
from pgdog_ev.admin.resultset import Table, boolean, int8, text
from pgdog_ev.config.general_set import general_rows
from pgdog_ev.eventlog.format import format_record, kind_name, machine_name, wall_time
from pgdog_ev.sql import default_cache

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost

EVENTS_DEFAULT = 50
EVENTS_MAX = 100_000


def show_config(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    """[general] as running now: admin SET overrides included, until the next RELOAD.

    With several workers these are the daemon's totals as configured, not one worker's share.
    """
    columns = [text("name"), text("value"), text("default"), boolean("changeable")]
    rows = [list(r) for r in general_rows(host.configured.general)]
    return Table(columns, rows)


def version_text() -> str:
    return f"pgdog-ev {__version__}"


def show_version(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    return Table([text("version")], [[version_text()]])


def show_prepared(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    """The proxy-global prepared statements: name, text, and how many clients map them."""
    columns = [text("name"), text("statement"), int8("used_by"), int8("memory_used"), boolean("sql_level")]
    rows = []
    for stmt in host.directory.statements.statements():
        memory = len(stmt.sql) + len(stmt.parse) + len(stmt.prepare_sql)
        rows.append([stmt.name, stmt.sql, stmt.refs, memory, bool(stmt.prepare_sql)])
    return Table(columns, rows)


def show_query_cache(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    """The SQL analysis cache, most recently used first."""
    cache = default_cache()
    rows = [[query, hits] for query, hits in cache.entries()]
    return Table([text("query"), int8("hits")], rows)


def events_count(args: tuple[str, ...]) -> int:
    """n of ``SHOW EVENTS [n]``."""
    if not args:
        return EVENTS_DEFAULT
    if len(args) > 1 or not args[0].isdigit():
        raise AdminSyntaxError("expected SHOW EVENTS [n] with n a number")
    return min(int(args[0]), EVENTS_MAX)


def show_events(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    """The last n event-log records (default 50), oldest first, decoded as `pgdog-ev events` would."""
    n = events_count(args)
    header = host.log_header
    columns = [int8("seq"), text("time"), text("machine"), int8("id"), text("kind"), text("event")]
    rows = []
    for rec in host.events.tail(n):
        line = format_record(rec, None)
        # format_record: "<rel>s #seq machine:id KIND details..."; keep the details.
        details = line.split(" ", 4)[4] if line.count(" ") >= 4 else ""
        rows.append([rec.seq, wall_time(rec, header), machine_name(rec.machine), rec.id, kind_name(rec.kind),
                     details])
    return Table(columns, rows)
