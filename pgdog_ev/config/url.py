"""``--database-url`` (and ``PGDOG_DATABASE_URL_<n>``): a whole database + user in one string.

This is how PgDog is run without config files (containers, quick tests): each URL
``postgres://user:password@host:port/database?role=replica&shard=1...`` describes one host entry
and a client user allowed on it. PgDog's fallbacks are kept (host 127.0.0.1, database
"postgres", user $USER or "postgres", password "postgres") so the same command lines work, but
unlike PgDog a misspelt or malformed query value is an error instead of being silently ignored.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .kinds import Invalid, quote
from .model import DatabaseEntry, UserEntry
from .schema import DATABASE_BY_NAME

#: Query keys PgDog understands, all stored on the database entry.
QUERY_KEYS: tuple[str, ...] = (
    "database_name",
    "role",
    "shard",
    "user",
    "password",
    "pool_size",
    "min_pool_size",
    "pooler_mode",
    "statement_timeout",
    "lock_timeout",
    "idle_timeout",
    "read_only",
    "server_lifetime",
    "server_lifetime_jitter",
)
_SCHEMES = ("postgres", "postgresql")
_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_DATABASE = "postgres"
_DEFAULT_PASSWORD = "postgres"


@dataclass(frozen=True)
class UrlEntry:
    database: DatabaseEntry
    user: UserEntry


def redact(url: str) -> str:
    """The URL with its password masked, fit to appear in an error message or a log."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):[^/?#]*@", r"\1:***@", url)


def parse_database_url(
    url: str,
    *,
    index: int = 1,
    source: str = "--database-url",
    default_user: str = "postgres",
) -> UrlEntry:
    def fail(part: str, detail: str) -> ConfigError:
        return ConfigError(detail, file=source, table=f"#{index} {quote(redact(url), 200)}", key=part)

    try:
        split = urllib.parse.urlsplit(url.strip())
        port = split.port
    except ValueError as exc:
        raise fail("port" if "port" in str(exc).lower() else "url", f"malformed URL: {exc}") from None
    if split.scheme.lower() not in _SCHEMES:
        got = quote(split.scheme) if split.scheme else "none"
        raise fail("scheme", f"expected postgres:// or postgresql://, got {got}")
    if split.fragment:
        raise fail("fragment", f"unexpected fragment {quote(split.fragment)}")
    if port is not None and port < 1:
        raise fail("port", f"must be >= 1, got {port}")
    raw_path = split.path[1:] if split.path.startswith("/") else split.path
    if "/" in raw_path:
        raise fail("database", f"expected a single database name in the path, got {quote(split.path)}")

    name = urllib.parse.unquote(raw_path) or _DEFAULT_DATABASE
    host = urllib.parse.unquote(split.hostname or "") or _DEFAULT_HOST
    user = urllib.parse.unquote(split.username or "") or default_user
    password = urllib.parse.unquote(split.password) if split.password is not None else _DEFAULT_PASSWORD

    fields: dict[str, Any] = {}
    try:
        pairs = urllib.parse.parse_qsl(split.query, keep_blank_values=True, strict_parsing=bool(split.query))
    except ValueError as exc:
        raise fail("query", f"malformed query string: {exc}") from None
    for key, value in pairs:
        if key not in QUERY_KEYS:
            known = ", ".join(QUERY_KEYS)
            raise fail(key, f"unknown query key {quote(key)} (known: {known})")
        if key in fields:
            raise fail(key, "given more than once")
        try:
            fields[key] = DATABASE_BY_NAME[key].from_text(value)
        except Invalid as exc:
            raise fail(key, str(exc)) from None

    database = DatabaseEntry(name=name, host=host, port=port or 5432, **fields)
    client = UserEntry(name=user, database=name, passwords=(password,))
    return UrlEntry(database, client)


def default_url_user(env: Mapping[str, str] | None) -> str:
    """PgDog's fallback user for URLs without one: $USER, else "postgres"."""
    if env is not None and env.get("USER"):
        return env["USER"]
    return "postgres"
