"""Signals: SIGTERM drains transactions in flight within shutdown_timeout and exits 0; SIGHUP
reloads the files (new pool size, new database), and a broken file keeps the old config."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

import psycopg
import pytest

from tests.conftest import APP_DB
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.ports import port_open
from tests.harness.tables import create_table


def test_sigterm_lets_transaction_commit_then_exits_0(pg, proxy_factory, poll):
    table = create_table(pg, "term")
    proxy = proxy_factory(
        general={"default_pool_size": 2, "shutdown_timeout": 15000},
        databases=[app_database(pg)],
        users=[app_user()],
    )
    busy = connect(proxy, autocommit=False)
    idle = connect(proxy)
    try:
        busy.execute(f"INSERT INTO {table} VALUES (1)")
        assert idle.execute("SELECT 1").fetchone() == (1,)
        proxy.signal(signal.SIGTERM)
        poll(lambda: not port_open(proxy.host, proxy.port), what="listener closed")
        with pytest.raises(psycopg.OperationalError):
            connect(proxy).close()
        # The idle client is told the proxy is going away.
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
        # The transaction in flight can still finish.
        busy.execute(f"INSERT INTO {table} VALUES (2)")
        busy.commit()
        assert proxy.wait(timeout=15) == 0
    finally:
        busy.close()
        idle.close()
    assert pg.psql(f"SELECT array_agg(id ORDER BY id) FROM {table}", db=APP_DB) == "{1,2}"
    assert "Traceback" not in proxy.log_text()


def test_sigterm_shutdown_timeout_cuts_long_transactions(pg, proxy_factory):
    table = create_table(pg, "termto")
    proxy = proxy_factory(
        general={"default_pool_size": 1, "shutdown_timeout": 1000},
        databases=[app_database(pg)],
        users=[app_user()],
    )
    busy = connect(proxy, autocommit=False)
    try:
        busy.execute(f"INSERT INTO {table} VALUES (1)")
        t0 = time.monotonic()
        proxy.signal(signal.SIGTERM)
        assert proxy.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        with pytest.raises(psycopg.OperationalError):
            busy.execute("SELECT 1")
    finally:
        busy.close()
    # Never committed, and the server connection was closed (so rolled back).
    assert pg.psql(f"SELECT count(*) FROM {table}", db=APP_DB) == "0"


def test_sighup_reload_pool_size_and_new_database(pg, proxy_factory, poll):
    proxy = proxy_factory(
        general={"default_pool_size": 1, "checkout_timeout": 500},
        databases=[app_database(pg)],
        users=[app_user()],
    )
    survivor = connect(proxy)
    holders: list[psycopg.Connection] = []
    try:
        # Pool of 1: a second concurrent transaction cannot get a server.
        holders = [connect(proxy, autocommit=False) for _ in range(3)]
        holders[0].execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError, match=r"(?i)checkout timeout"):
            holders[1].execute("SELECT 1")
        holders[1].rollback()
        with pytest.raises(psycopg.OperationalError):
            connect(proxy, dbname="app_two").close()
        holders[0].rollback()

        new_db = f"app_two_{uuid.uuid4().hex[:6]}"
        proxy.update(
            general={**proxy.general, "default_pool_size": 3},
            databases=[app_database(pg), app_database(pg, new_db)],
            users=[app_user(), app_user(new_db)],
        )
        poll(lambda: "configuration reloaded" in proxy.log_text(), what="reload logged")
        with connect(proxy, dbname=new_db) as c:
            assert c.execute("SELECT current_database()").fetchone() == (APP_DB,)
        # Three transactions at once now each get a server.
        pids = {h.execute("SELECT pg_backend_pid()").fetchone()[0] for h in holders}
        assert len(pids) == 3
        for h in holders:
            h.rollback()
        # A client connected before the reload carries on.
        assert survivor.execute("SELECT 5").fetchone() == (5,)
    finally:
        for h in holders:
            h.close()
        survivor.close()


def test_sighup_with_broken_file_keeps_old_config(pg, proxy_factory, poll):
    proxy = proxy_factory(general={"default_pool_size": 1}, databases=[app_database(pg)], users=[app_user()])
    with connect(proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    good_general = dict(proxy.general)
    proxy.update(general={**good_general, "bogus_reload_key": 1, "default_pool_size": 5})
    poll(lambda: "reload failed" in proxy.log_text(), what="reload failure logged")
    line = next(ln for ln in proxy.log_text().splitlines() if "reload failed" in ln)
    assert "bogus_reload_key" in line and "pgdog.toml" in line, line
    assert "keeping" in line
    assert proxy.returncode is None
    # Still serving with the old configuration.
    with connect(proxy) as c:
        assert c.execute("SELECT 2").fetchone() == (2,)
    # Fixed file: the next reload works.
    proxy.update(general=good_general)
    poll(lambda: "configuration reloaded" in proxy.log_text(), what="reload logged")
    with connect(proxy) as c:
        assert c.execute("SELECT 3").fetchone() == (3,)
    # Garbage that is not even TOML.
    with open(proxy.config_path, "a") as f:
        f.write("\n[general\nthis is not toml\n")
    proxy.signal(signal.SIGHUP)
    poll(lambda: proxy.log_text().count("reload failed") >= 2, what="second reload failure logged")
    with connect(proxy) as c:
        assert c.execute("SELECT 4").fetchone() == (4,)
    assert "Traceback" not in proxy.log_text()
    proxy.write_config()  # leave valid files behind for teardown
    assert proxy.stop() == 0


def test_sigint_stops_idle_proxy(pg, proxy_factory):
    proxy = proxy_factory(general={"default_pool_size": 1}, databases=[app_database(pg)], users=[app_user()])
    with connect(proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    proxy.signal(signal.SIGINT)
    try:
        assert proxy.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("SIGINT did not stop an idle proxy within 10s")
