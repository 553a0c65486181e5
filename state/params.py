"""Session parameters: which startup settings travel to whichever server a client gets.

In transaction mode two clients share one server, so the settings one client
asked for at startup (``application_name``, ``search_path``, ``TimeZone``...)
must be applied before its statements run and undone before the next client's.
A server remembers what the proxy applied to it; on checkout we compute the
difference and send one query. Values go through ``set_config`` rather than
``SET name TO 'value'`` because it parses list-valued settings
(``search_path = 'a, b'``) exactly as a startup packet or ``options=-c`` does.
"""

from __future__ import annotations

from typing import Final

# Startup keys that are not session settings, or that a server must not change.
NOT_SYNCED: Final = frozenset(
    {
        "user",
        "database",
        "replication",
        "options",
        "session_authorization",
        "is_superuser",
        "server_version",
        "server_encoding",
        "integer_datetimes",
        "in_hot_standby",
    }
)


def session_params(startup: dict[str, str], options: dict[str, str]) -> dict[str, str]:
    """The settings a client asked for, keyed by lower-case name (GUC names are)."""
    out: dict[str, str] = {}
    for source in (startup, options):
        for name, value in source.items():
            key = name.lower()
            if key in NOT_SYNCED or key.startswith("_pq_.") or key.startswith("pgdog."):
                continue
            out[key] = value
    # Servers log in as application_name "pgdog-ev" (visible in pg_stat_activity);
    # a client that set none must still see PostgreSQL's default, the empty string.
    out.setdefault("application_name", "")
    return out


def quote_literal(value: str) -> str:
    """An escape-string literal, safe whatever standard_conforming_strings says."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sync_query(applied: dict[str, str], wanted: dict[str, str]) -> str | None:
    """SQL that turns a server's ``applied`` settings into ``wanted``, or None."""
    if applied == wanted:
        return None  # the usual case on every checkout: one dict comparison
    resets = [name for name in applied if name not in wanted]
    sets = [(k, v) for k, v in wanted.items() if applied.get(k) != v]
    if not resets and not sets:
        return None
    parts = [f"RESET {quote_ident(name)}" for name in sorted(resets)]
    if sets:
        calls = ", ".join(
            f"pg_catalog.set_config({quote_literal(k)}, {quote_literal(v)}, false)" for k, v in sorted(sets)
        )
        parts.append(f"SELECT {calls}")
    return "; ".join(parts)
