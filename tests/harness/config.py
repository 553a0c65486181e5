"""Entries for a proxy's [[databases]] and [[users]] pointing at the test PostgreSQL (`pg`) and its
users: most tests need the same ones and only vary [general], so they are built here."""

from __future__ import annotations

from typing import Any

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.pgserver import PgServer

# A session-mode user of the proxy that logs in to PostgreSQL as APP_USER: next to a transaction-mode
# APP_USER, it shows that the pooler_mode of one user does not affect the other's.
SESS_USER, SESS_PASSWORD = "app_sess", "sess_pw"


def app_database(pg: PgServer, name: str = APP_DB, database_name: str = APP_DB) -> dict[str, Any]:
    """A [[databases]] entry: the proxy's database `name`, served by `database_name` on `pg`."""
    return {"name": name, "host": pg.host, "port": pg.port, "database_name": database_name}


def app_user(database: str = APP_DB, **extra: Any) -> dict[str, Any]:
    """A [[users]] entry for APP_USER (same password on the proxy and on PostgreSQL) on `database`."""
    return {"name": APP_USER, "database": database, "password": APP_PASSWORD, **extra}


def session_user() -> dict[str, Any]:
    """A [[users]] entry for SESS_USER on APP_DB: session mode, logged in to PostgreSQL as APP_USER."""
    return {
        "name": SESS_USER,
        "database": APP_DB,
        "password": SESS_PASSWORD,
        "server_user": APP_USER,
        "server_password": APP_PASSWORD,
        "pooler_mode": "session",
    }
