"""Proxy-global names for prepared statements, so clients can share servers.

In transaction mode a client's next Bind may land on a server that never saw
its Parse. Statements are therefore renamed: every distinct (query text,
parameter types) gets one global name, the same for every client, and a server
that lacks it gets the Parse injected just before it is needed. Clients that
prepare the same text share one server-side statement, which also bounds the
number of statements per server.

Statements no client maps any more stay known (a client that closes and
re-prepares the same text keeps hitting the same server-side statement) until
the registry grows past ``limit``; then unreferenced ones are forgotten. A server
still holding a forgotten one drops it through its own LRU limit or when it
closes, and the text prepared again gets a fresh name: names are never reused,
so a server can never mistake one statement for another.
"""

from __future__ import annotations

import json

import pglast.parser

from pgdog_ev.sql import Analysis, analyze
from pgdog_ev.sql.analysis import OTHER_ANALYSIS
from pgdog_ev.sql.route import Route, route
from pgdog_ev.wire import frontend as fe

PREFIX = "__pgdog_ev_"
# Closing a statement that does not exist is not an error: this Close's
# CloseComplete stands in for a ParseComplete or CloseComplete the proxy answers
# itself, at exactly the right place in the server's response stream.
NOOP_CLOSE = fe.close("S", PREFIX + "noop")


def syntax_error(sql: str) -> tuple[str, int] | None:
    """(message, 1-based position) if PostgreSQL's parser would reject ``sql`` at Parse.

    The proxy answers a client's Parse itself, so it reports what the server's parser
    would (the same parser, libpg_query); errors found later in analysis (an unknown table)
    still come from the server, at the statement's first Bind or Describe."""
    try:
        tree = json.loads(pglast.parser.parse_sql_json(sql))
    except pglast.parser.ParseError as exc:
        message, location = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
        if location is None:
            # libpg_query gives no location for an error at the end of the text ("syntax error
            # at end of input"); PostgreSQL points just past its last character.
            location = len(sql)
        return str(message), int(location) + 1
    except (RecursionError, ValueError):
        return None  # let the server judge
    if len(tree.get("stmts", ())) > 1:
        return "cannot insert multiple commands into a prepared statement", 0
    return None


# Marks the key of a statement prepared with SQL PREPARE (prepared_statements =
# "full"): its parameter types are SQL type names inside the text, not OIDs.
SQL_LEVEL = (-1,)


class GlobalStatement:
    __slots__ = (
        "_route", "analysis", "error", "key", "name", "parse", "prepare_sql", "refs", "sql", "stale", "types",
    )  # fmt: skip

    def __init__(self, name: str, sql: str, types: tuple[int, ...]) -> None:
        self.name = name
        self.sql = sql
        self.types = types
        self.key = (sql, types)
        self.refs = 0
        # A server said its plan no longer fits (ServerSession._on_stale_plan): the text
        # prepared again gets a new statement.
        self.stale = False
        self._route: Route | None = None
        if types == SQL_LEVEL:
            # ``sql`` is what follows the name in PREPARE name [(types)] AS statement.
            self.prepare_sql = f"PREPARE {name} {sql}"
            self.parse = b""
            body = analyze(self.prepare_sql).statements[0].text
            # What an EXECUTE of it runs, for session tracking.
            self.analysis: Analysis = analyze(body) if body else OTHER_ANALYSIS
            self.error = None
            return
        self.prepare_sql = ""
        # The Parse to inject on a server that lacks the statement.
        self.parse = fe.parse(name, sql, types)
        self.analysis = analyze(sql)
        self.error = syntax_error(sql)

    @property
    def route(self) -> Route:
        """Read or write, decided once per statement (at its first use by a multi-host cluster)."""
        found = self._route
        if found is None:
            text = self.sql if self.types != SQL_LEVEL else self.prepare_sql
            found = self._route = route(text)
        return found


class PreparedRegistry:
    """All statements clients have prepared, by text and parameter types."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._by_key: dict[tuple[str, tuple[int, ...]], GlobalStatement] = {}
        self._next = 1
        self.parses = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def acquire(self, sql: str, types: tuple[int, ...]) -> GlobalStatement:
        """The shared statement for this text; the caller now holds one reference."""
        key = (sql, types)
        stmt = self._by_key.get(key)
        if stmt is None or stmt.stale:
            # (A stale one stays with the clients that use it, under its own name.)
            stmt = GlobalStatement(f"{PREFIX}{self._next}", sql, types)
            self._next += 1
            self._by_key[key] = stmt
            self.parses += 1
            if len(self._by_key) > self.limit:
                self._forget_unused()
        else:
            self.hits += 1
        stmt.refs += 1
        return stmt

    def acquire_sql(self, rest: str) -> GlobalStatement:
        """The shared statement for a SQL PREPARE whose text after the name is ``rest``."""
        return self.acquire(rest, SQL_LEVEL)

    def release(self, stmt: GlobalStatement) -> None:
        stmt.refs -= 1

    def _forget_unused(self) -> None:
        for key in [k for k, s in self._by_key.items() if s.refs <= 0]:
            del self._by_key[key]

    def statements(self) -> list[GlobalStatement]:
        return list(self._by_key.values())
