"""Turn pgdog.toml, users.toml, ``--database-url`` and the environment into one :class:`Config`.

Order of application, each step seeing the result of the previous one:

1. both files are parsed and every table is checked against :mod:`schema` (unknown keys, types);
2. ``[general]`` keys absent from pgdog.toml are taken from ``PGDOG_<KEY>`` (as PgDog does);
3. database URLs, when given, replace ``[[databases]]`` and ``[[users]]`` (the file tables are
   still validated, so a broken file is not hidden by a command-line flag);
4. ``[admin]`` comes from users.toml if it has one, else pgdog.toml; a missing password comes
   from ``PGDOG_ADMIN_PASSWORD``, else is generated from the injected entropy source;
5. cross-table checks run and the digest is computed.

The environment is an explicit argument, never ``os.environ`` read behind the caller's back, and
randomness comes only from ``entropy``: the simulator must get the same Config for the same inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .crosscheck import (
    check_duplicate_databases,
    check_duplicate_users,
    check_general_pool_sizes,
    check_pool_sizes,
    check_workers,
)
from .env import general_from_env
from .errors import ConfigError
from .kinds import quote
from .model import AdminConfig, Config, DatabaseEntry, General, UserEntry
from .schema import (
    ADMIN_BY_NAME,
    DATABASE_BY_NAME,
    EXTRA_SECTIONS,
    GENERAL_ALIASES,
    GENERAL_BY_NAME,
    USER_BY_NAME,
)
from .sections import Where, as_array_of_tables, as_table, check_table, entry_label, unknown_key
from .toml_files import parse_toml, read_toml_file
from .url import default_url_user, parse_database_url

Entropy = Callable[[int], bytes]

DEFAULT_CONFIG_NAME = "pgdog.toml"
DEFAULT_USERS_NAME = "users.toml"
ADMIN_PASSWORD_ENV = "PGDOG_ADMIN_PASSWORD"
DATABASE_URL_ENV = "PGDOG_DATABASE_URL_"
_GENERATED_PREFIX = "_pgdog_"
_GENERATED_LENGTH = 12
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# Top-level tables of each file; True = array of tables ([[x]]), False = single table ([x]).
_PGDOG_TABLES: dict[str, bool] = {"general": False, "databases": True, "admin": False, **EXTRA_SECTIONS}
_USERS_TABLES: dict[str, bool] = {"users": True, "admin": False}


def load_config(
    config_path: str | None,
    users_path: str | None,
    database_urls: Sequence[str] = (),
    *,
    entropy: Entropy,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load the configuration; a ``None`` path means "that file's defaults" (no databases/users)."""
    pgdog_doc = read_toml_file(config_path) if config_path is not None else {}
    users_doc = read_toml_file(users_path) if users_path is not None else {}
    return _assemble(
        pgdog_doc,
        users_doc,
        config_name=config_path if config_path is not None else DEFAULT_CONFIG_NAME,
        users_name=users_path if users_path is not None else DEFAULT_USERS_NAME,
        config_path=config_path,
        users_path=users_path,
        database_urls=database_urls,
        entropy=entropy,
        env=env,
    )


def load_config_text(
    pgdog_toml: str | None,
    users_toml: str | None,
    database_urls: Sequence[str] = (),
    *,
    entropy: Entropy,
    env: Mapping[str, str] | None = None,
    config_name: str = DEFAULT_CONFIG_NAME,
    users_name: str = DEFAULT_USERS_NAME,
) -> Config:
    """Same as :func:`load_config` from strings: for tests, fuzzing and config sent over the wire.

    Relative paths (event_log) stay relative, as there is no file directory to anchor them to.
    """
    pgdog_doc = parse_toml(pgdog_toml, config_name) if pgdog_toml is not None else {}
    users_doc = parse_toml(users_toml, users_name) if users_toml is not None else {}
    return _assemble(
        pgdog_doc,
        users_doc,
        config_name=config_name,
        users_name=users_name,
        config_path=None,
        users_path=None,
        database_urls=database_urls,
        entropy=entropy,
        env=env,
    )


def _assemble(
    pgdog_doc: dict[str, Any],
    users_doc: dict[str, Any],
    *,
    config_name: str,
    users_name: str,
    config_path: str | None,
    users_path: str | None,
    database_urls: Sequence[str],
    entropy: Entropy,
    env: Mapping[str, str] | None,
) -> Config:
    _check_top_level(pgdog_doc, config_name, _PGDOG_TABLES, hint_keys=GENERAL_BY_NAME, hint="[general]")
    _check_top_level(users_doc, users_name, _USERS_TABLES, hint_keys=USER_BY_NAME, hint="[[users]]")

    general_where = Where(config_name, "[general]")
    general = _load_general(pgdog_doc.get("general", {}), general_where, env, config_path)
    check_general_pool_sizes(general, general_where)
    check_workers(general, general_where)

    file_databases, file_db_wheres = _load_databases(pgdog_doc.get("databases", []), config_name)
    raw_users = as_array_of_tables(users_doc.get("users", []), Where(users_name, "[[users]]"))
    checked_users = [_check_user(raw, index, users_name) for index, raw in enumerate(raw_users, start=1)]

    urls = list(database_urls) or _urls_from_env(env)
    if urls:
        databases, db_wheres, users, user_wheres = _from_urls(urls, env, from_env=not database_urls)
    else:
        databases, db_wheres = file_databases, file_db_wheres
        users, user_wheres = _expand_users(checked_users, databases, config_name)

    check_duplicate_databases(databases, db_wheres)
    check_duplicate_users(users, user_wheres)
    check_pool_sizes(general, general_where, users, user_wheres, databases, db_wheres)

    admin = _load_admin(pgdog_doc, users_doc, config_name, users_name, entropy, env)
    extra = {
        name: _extra_section(pgdog_doc[name], name, config_name)
        for name in EXTRA_SECTIONS
        if name in pgdog_doc
    }
    try:
        return Config.build(
            general,
            tuple(databases),
            tuple(users),
            admin,
            extra,
            config_path=config_path,
            users_path=users_path,
        )
    except RecursionError:
        # Deeply nested raw sections that tomllib still accepted can overflow the digest encoder.
        raise ConfigError("values nested too deeply", file=config_name) from None


# --- top level ----------------------------------------------------------------------------------


def _check_top_level(
    doc: Mapping[str, Any],
    file: str,
    tables: Mapping[str, bool],
    *,
    hint_keys: Mapping[str, object],
    hint: str,
) -> None:
    for key, value in doc.items():
        if key in tables:
            continue
        if isinstance(value, dict | list):
            label = f"[[{key}]]" if isinstance(value, list) else f"[{key}]"
            known = ", ".join(f"[[{name}]]" if array else f"[{name}]" for name, array in tables.items())
            raise ConfigError(f"unknown table (known: {known})", file=file, table=label)
        extra = f"keys like this belong under {hint}" if key in hint_keys else ""
        raise unknown_key(Where(file, "top level"), key, [], extra)


def _extra_section(value: object, name: str, file: str) -> object:
    if EXTRA_SECTIONS[name]:
        return as_array_of_tables(value, Where(file, f"[[{name}]]"))
    return as_table(value, Where(file, f"[{name}]"))


# --- [general] ----------------------------------------------------------------------------------


def _load_general(
    raw: object, where: Where, env: Mapping[str, str] | None, config_path: str | None
) -> General:
    table = check_table(as_table(raw, where), GENERAL_BY_NAME, where, GENERAL_ALIASES)
    values = dict(table.values)
    if env is not None:
        values.update(general_from_env(env, table.present))
    values["event_log"] = _resolve_relative(values["event_log"], config_path)
    return General(**values)


def _resolve_relative(path: str, config_path: str | None) -> str:
    """Anchor a relative path at pgdog.toml's directory, so the daemon's cwd does not matter."""
    if not path or os.path.isabs(path) or config_path is None:
        return path
    return os.path.join(os.path.dirname(config_path), path)


# --- [[databases]] ------------------------------------------------------------------------------


def _load_databases(raw: object, file: str) -> tuple[list[DatabaseEntry], list[Where]]:
    entries = as_array_of_tables(raw, Where(file, "[[databases]]"))
    databases: list[DatabaseEntry] = []
    wheres: list[Where] = []
    for index, entry in enumerate(entries, start=1):
        where = Where(file, entry_label("databases", index, entry))
        databases.append(DatabaseEntry(**check_table(entry, DATABASE_BY_NAME, where).values))
        wheres.append(where)
    return databases, wheres


# --- [[users]] ----------------------------------------------------------------------------------

_USER_TARGET_KEYS = ("database", "databases", "all_databases")


def _check_user(raw: dict[str, Any], index: int, file: str) -> tuple[dict[str, Any], Where]:
    where = Where(file, entry_label("users", index, raw))
    values = check_table(raw, USER_BY_NAME, where).values
    if values["database"] is None and not values["databases"] and not values["all_databases"]:
        raise where.error(
            'missing required key "database" (or give databases = [...] or all_databases = true)',
            "database",
            key_in_prefix=False,
        )
    return values, where


def _expand_users(
    checked: Sequence[tuple[dict[str, Any], Where]], databases: Sequence[DatabaseEntry], config_name: str
) -> tuple[list[UserEntry], list[Where]]:
    known = list(dict.fromkeys(db.name for db in databases))
    users: list[UserEntry] = []
    wheres: list[Where] = []
    for values, where in checked:
        targets: list[tuple[str, str]] = []  # (database, key that named it)
        if values["all_databases"]:
            targets = [(name, "all_databases") for name in known]
        else:
            if values["database"] is not None:
                targets.append((values["database"], "database"))
            targets += [(name, "databases") for name in values["databases"] or ()]
        seen: set[str] = set()
        for database, key in targets:
            if database in seen:
                continue
            seen.add(database)
            if database not in known:
                listing = ", ".join(quote(name) for name in known) if known else "none configured"
                raise where.error(
                    f"no [[databases]] entry named {quote(database)} in {config_name} (known: {listing})", key
                )
            users.append(_user_entry(values, database))
            wheres.append(where)
    return users, wheres


def _user_entry(values: Mapping[str, Any], database: str) -> UserEntry:
    fields = {key: value for key, value in values.items() if key not in _USER_TARGET_KEYS}
    single = fields.pop("password")
    extra = fields.pop("passwords") or ()
    passwords = tuple(dict.fromkeys(([single] if single is not None else []) + list(extra)))
    return UserEntry(database=database, passwords=passwords, **fields)


# --- database URLs ------------------------------------------------------------------------------


def _urls_from_env(env: Mapping[str, str] | None) -> list[str]:
    """PGDOG_DATABASE_URL_1, _2, ... up to the first gap, as PgDog reads them."""
    if env is None:
        return []
    urls: list[str] = []
    while f"{DATABASE_URL_ENV}{len(urls) + 1}" in env:
        urls.append(env[f"{DATABASE_URL_ENV}{len(urls) + 1}"])
    return urls


def _from_urls(
    urls: Sequence[str], env: Mapping[str, str] | None, *, from_env: bool
) -> tuple[list[DatabaseEntry], list[Where], list[UserEntry], list[Where]]:
    databases: list[DatabaseEntry] = []
    db_wheres: list[Where] = []
    users: list[UserEntry] = []
    user_wheres: list[Where] = []
    default_user = default_url_user(env)
    for index, url in enumerate(urls, start=1):
        source = f"{DATABASE_URL_ENV}{index}" if from_env else "--database-url"
        entry = parse_database_url(url, index=index, source=source, default_user=default_user)
        where = Where(source, f"#{index}")
        # Repeating the same host or user across URLs is how replicas are described; identical
        # entries collapse (as in PgDog), conflicting ones are reported by the cross-checks.
        if entry.database not in databases:
            databases.append(entry.database)
            db_wheres.append(where)
        if entry.user not in users:
            users.append(entry.user)
            user_wheres.append(where)
    return databases, db_wheres, users, user_wheres


# --- [admin] ------------------------------------------------------------------------------------


def _load_admin(
    pgdog_doc: Mapping[str, Any],
    users_doc: Mapping[str, Any],
    config_name: str,
    users_name: str,
    entropy: Entropy,
    env: Mapping[str, str] | None,
) -> AdminConfig:
    # users.toml's [admin] replaces pgdog.toml's as a whole (PgDog behaviour): credentials are
    # usually kept in the users file, and mixing halves of two sections would surprise.
    pgdog_admin = Where(config_name, "[admin]")
    values = check_table(as_table(pgdog_doc.get("admin", {}), pgdog_admin), ADMIN_BY_NAME, pgdog_admin).values
    if "admin" in users_doc:
        users_admin = Where(users_name, "[admin]")
        values = check_table(as_table(users_doc["admin"], users_admin), ADMIN_BY_NAME, users_admin).values
    password = values["password"]
    if password is None and env is not None and env.get(ADMIN_PASSWORD_ENV):
        password = env[ADMIN_PASSWORD_ENV]
    if password is not None:
        return AdminConfig(values["name"], values["user"], password, password_generated=False)
    return AdminConfig(values["name"], values["user"], _generated_password(entropy), password_generated=True)


def _generated_password(entropy: Entropy) -> str:
    """PgDog's locked-out default: "_pgdog_" + 12 random characters nobody has been told."""
    data = entropy(_GENERATED_LENGTH)
    if len(data) < _GENERATED_LENGTH:
        raise ValueError(f"entropy source returned {len(data)} bytes, {_GENERATED_LENGTH} requested")
    return _GENERATED_PREFIX + "".join(_ALPHABET[byte % len(_ALPHABET)] for byte in data[:_GENERATED_LENGTH])
