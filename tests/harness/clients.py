"""psycopg clients of the proxy and of PostgreSQL as the test user, with the settings most tests
want, and a background client that keeps a shared pool busy while a test does something odd."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.pgserver import PgServer
from tests.harness.proxy import ProxyProcess


def connect(
    proxy: ProxyProcess, user: str = APP_USER, password: str = APP_PASSWORD, dbname: str = APP_DB, **kw: Any
) -> psycopg.Connection:
    """A psycopg client of `proxy`. Defaults: autocommit; no named prepared statements (in
    transaction mode the next statement may run on another server; tests of prepared statements opt
    in with prepare_threshold); a 10 s connect timeout, so a proxy that does not answer fails the test
    instead of hanging it."""
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)
    kw.setdefault("connect_timeout", 10)
    return psycopg.connect(proxy.dsn(user, password, dbname), **kw)


def connect_direct(pg: PgServer, **kw: Any) -> psycopg.Connection:
    """A psycopg client of PostgreSQL itself, with connect()'s defaults: what the proxy must match."""
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)
    kw.setdefault("connect_timeout", 10)
    return psycopg.connect(pg.dsn(APP_USER, APP_DB, APP_PASSWORD), **kw)


class BackgroundClient:
    """Another client of the same pool, running checked queries in a thread until the `with` ends.

    On a pool of one server, it shows that whatever the test does to its own connection neither
    blocks the pool (`wait_for_more`) nor corrupts the shared server (`errors`).
    `check_on_exit`: also fail on leaving the `with` block if the client saw an error.
    """

    def __init__(self, proxy: ProxyProcess, check_on_exit: bool = True) -> None:
        self.conn = connect(proxy)
        self.check_on_exit = check_on_exit
        self.ok = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                assert self.conn.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
                self.ok += 1
            except BaseException as e:
                self.errors.append(e)
                return

    def __enter__(self) -> BackgroundClient:
        self._thread.start()
        return self

    def wait_for_more(self, n: int = 3, timeout: float = 10.0) -> None:
        """Wait until `n` more queries succeeded; fails on an error or after `timeout` seconds."""
        start = self.ok
        deadline = time.monotonic() + timeout
        while self.ok < start + n:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, "background client made no progress"
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.conn.close()
        if self.check_on_exit:
            assert not self.errors, self.errors
