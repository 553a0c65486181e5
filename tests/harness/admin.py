"""Clients of a proxy's admin console (the virtual `admin` database): psycopg with the simple query
protocol, psql, and small readers that turn SHOW results into dicts keyed by column name."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest

from tests.harness.pgserver import find_bindir
from tests.harness.proxy import ProxyProcess

ADMIN_USER = ADMIN_DB = "admin"
ADMIN_PASSWORD = "admin_pw"
# The proxy_factory `admin=` argument that unlocks the console.
ADMIN = {"password": ADMIN_PASSWORD}

Row = dict[str, Any]
# The conftest fixtures, as annotations.
ProxyFactory = Callable[..., ProxyProcess]
Poll = Callable[..., Any]


def admin_connect(proxy: ProxyProcess, password: str = ADMIN_PASSWORD, **kw: Any) -> psycopg.Connection:
    """A psycopg client of the admin console. The console speaks only the simple query protocol:
    ClientCursor sends a query without parameters as a simple Query and never prepares it."""
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("cursor_factory", psycopg.ClientCursor)
    return psycopg.connect(proxy.dsn(ADMIN_USER, password, ADMIN_DB), **kw)


def show(conn: psycopg.Connection, command: str) -> list[Row]:
    """The rows of an admin SHOW command, each a dict keyed by column name."""
    cur = conn.execute(command)
    assert cur.description is not None, f"{command} returned no rows description"
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def columns(conn: psycopg.Connection, command: str) -> list[str]:
    cur = conn.execute(command)
    assert cur.description is not None, f"{command} returned no rows description"
    cur.fetchall()
    return [d.name for d in cur.description]


def only(rows: Sequence[Row], **match: Any) -> Row:
    """The single row whose columns have the given values (fails if none or several)."""
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one row with {match}, got {len(found)}: {rows}"
    return found[0]


def pool_row(conn: psycopg.Connection, database: str = "app", user: str = "app") -> Row:
    return only(show(conn, "SHOW POOLS"), database=database, user=user)


def client_row(conn: psycopg.Connection, application_name: str) -> Row:
    return only(show(conn, "SHOW CLIENTS"), application_name=application_name)


def maxwait_us(row: Row) -> int:
    """SHOW POOLS' longest current wait, in microseconds (maxwait is whole seconds, maxwait_us the rest)."""
    return int(row["maxwait"]) * 1_000_000 + int(row["maxwait_us"])


# --------------------------------------------------------------------------- psql


def psql_path() -> str:
    """psql from the same PostgreSQL as the test servers, else from PATH; skips the test if none."""
    p = os.path.join(find_bindir(), "psql")
    if os.access(p, os.X_OK):
        return p
    found = shutil.which("psql")
    if not found:
        pytest.skip("psql not installed")
    return found


def psql_env(password: str, application_name: str = "psql") -> dict[str, str]:
    """The environment without the caller's PG* variables (they would redirect psql), plus the
    password, an application_name and a connect timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGAPPNAME=application_name, PGCONNECT_TIMEOUT="10")
    return env


def psql_argv(proxy: ProxyProcess, *commands: str, user: str = ADMIN_USER, dbname: str = ADMIN_DB) -> list[str]:
    argv = [psql_path(), "-X", "--csv", "-v", "ON_ERROR_STOP=1", "-h", proxy.host, "-p", str(proxy.port),
            "-U", user, "-d", dbname]
    for command in commands:
        argv += ["-c", command]
    return argv


def psql(
    proxy: ProxyProcess, *commands: str, password: str = ADMIN_PASSWORD, application_name: str = "psql",
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run `psql -c COMMAND ...` against the admin console (CSV output); the result, whatever its exit code."""
    return subprocess.run(
        psql_argv(proxy, *commands), capture_output=True, text=True, timeout=timeout,
        env=psql_env(password, application_name), stdin=subprocess.DEVNULL,
    )


def psql_show(proxy: ProxyProcess, command: str) -> tuple[list[str], list[dict[str, str]]]:
    """Column names and rows (text, NULL as "") of one admin command run by psql."""
    res = psql(proxy, command)
    assert res.returncode == 0, f"psql -c {command!r} exited {res.returncode}: {res.stderr}"
    reader = csv.DictReader(io.StringIO(res.stdout))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def as_text(value: Any) -> str:
    """A psycopg value as psql prints it in CSV: booleans t/f, NULL as an empty field."""
    if value is None:
        return ""
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value)
