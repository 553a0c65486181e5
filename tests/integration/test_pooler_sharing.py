"""Transaction mode with one server shared by several clients: startup parameters stay per client,
and the server really is reused (same backend pid)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={"default_pool_size": 1, "pooler_mode": "transaction", "checkout_timeout": 10000},
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _settings(conn: psycopg.Connection) -> tuple:
    row = conn.execute(
        "SELECT current_setting('application_name'), current_setting('search_path'),"
        " current_setting('TimeZone'), pg_backend_pid()"
    ).fetchone()
    (tz,) = conn.execute("SHOW TimeZone").fetchone()
    assert tz == row[2]
    return row


def test_startup_parameters_isolated_on_one_server(pg, proxy):
    uid = uuid.uuid4().hex[:8]
    schema, table = f"sch_{uid}", f"iso_{uid}"
    server_tz = pg.psql("SHOW TimeZone", db=APP_DB)
    server_path = pg.psql("SHOW search_path", db=APP_DB)
    tz_a = "Asia/Tokyo" if server_tz != "Asia/Tokyo" else "Europe/Paris"
    tz_c = "America/New_York" if server_tz != "America/New_York" else "Europe/Paris"

    with connect(proxy) as setup:
        setup.execute(f"CREATE SCHEMA {schema}")
        setup.execute(f"CREATE TABLE {schema}.{table} AS SELECT 'schema'::text AS v")
        setup.execute(f"CREATE TABLE public.{table} AS SELECT 'public'::text AS v")

    params_a = {"application_name": "a", "options": f"-c search_path={schema},public -c TimeZone={tz_a}"}
    params_c = {"application_name": "c", "options": f"-c TimeZone={tz_c} -c search_path=public"}
    # What PostgreSQL itself reports for each set of startup parameters.
    expected = []
    for params in (params_a, {}, params_c):
        with psycopg.connect(pg.dsn(APP_USER, APP_DB, APP_PASSWORD), connect_timeout=10, **params) as direct:
            expected.append(_settings(direct)[:3])
    want_a, want_b, want_c = expected
    assert want_a[0] == "a" and want_a[2] == tz_a and schema in want_a[1]
    assert want_b[1:] == (server_path, server_tz)
    assert want_c == ("c", "public", tz_c)

    a = connect(proxy, **params_a)
    b = connect(proxy)
    c = connect(proxy, **params_c)
    try:
        assert a.info.parameter_status("TimeZone") == tz_a
        assert a.info.parameter_status("application_name") == "a"
        assert b.info.parameter_status("TimeZone") == server_tz
        assert c.info.parameter_status("TimeZone") == tz_c
        # Without an application_name of its own, a client gets the one the proxy announced at its
        # login (the proxy's server-side name, as PgDog does), never another client's.
        b_app = b.info.parameter_status("application_name")
        assert b_app not in ("a", "c")
        want_b = (b_app, *want_b[1:])
        pids = set()
        for _ in range(3):
            for conn, want in (
                (a, want_a),
                (b, want_b),
                (c, want_c),
                (b, want_b),
                (a, want_a),
            ):
                *got, pid = _settings(conn)
                assert tuple(got) == want
                pids.add(pid)
            assert a.execute(f"SELECT v FROM {table}").fetchone() == ("schema",)
            assert b.execute(f"SELECT v FROM {table}").fetchone() == ("public",)
            assert c.execute(f"SELECT v FROM {table}").fetchone() == ("public",)
            # The time zone is applied, not just reported.
            ts = "SELECT to_char(timestamptz '2024-01-01 12:00:00+00', 'HH24')"
            hour_a = {"Asia/Tokyo": "21", "Europe/Paris": "13"}[tz_a]
            assert a.execute(ts).fetchone() == (hour_a,)
            # Inside an explicit transaction too.
            with a.transaction():
                assert _settings(a)[:3] == want_a
            with b.transaction():
                assert _settings(b)[:3] == want_b
        assert len(pids) == 1, f"pool of 1 expected one server, saw {pids}"
    finally:
        for conn in (a, b, c):
            conn.close()
    # A client arriving afterwards sees nothing of theirs.
    with connect(proxy) as d:
        assert _settings(d)[:3] == (d.info.parameter_status("application_name"), *want_b[1:])
        assert d.info.parameter_status("application_name") == b_app


def test_transaction_mode_reuses_one_server(pg, proxy):
    table = f"reuse_{uuid.uuid4().hex[:8]}"
    with connect(proxy) as setup:
        setup.execute(f"CREATE TABLE {table} (who text, n int)")
    a, b = connect(proxy), connect(proxy)
    try:
        pids = []
        for i in range(5):
            for name, conn in (("a", a), ("b", b)):
                with conn.transaction():
                    conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (name, i))
                    pids.append(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
                    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert len(set(pids)) == 1, pids
        assert a.execute(f"SELECT count(*) FROM {table}").fetchone() == (10,)
        # Both clients are connected, yet the server side has a single connection for the pool.
        n = pg.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{APP_USER}' AND datname = '{APP_DB}'"
            f" AND application_name <> 'psql' AND pid = {pids[0]}"
        )
        assert n == "1"
    finally:
        a.close()
        b.close()


def test_login_with_new_settings_does_not_inherit_previous_clients(pg, proxy):
    """A login whose settings the pool has not seen is checked on a server; that server must lose
    the settings of the client that used it before (here: A's TimeZone), not just gain C's."""
    uid = uuid.uuid4().hex[:8]
    server_tz = pg.psql("SHOW TimeZone", db=APP_DB)
    tz_a = "Asia/Tokyo" if server_tz != "Asia/Tokyo" else "Europe/Paris"
    a = connect(proxy, options=f"-c TimeZone={tz_a} -c work_mem=5MB")
    try:
        assert _settings(a)[2] == tz_a  # A's settings are now on the only server
        # A stays connected; C asks for something the pool has never seen (a fresh search_path).
        with connect(proxy, options=f"-c search_path=s_{uid}") as c:
            _, path, tz, _ = _settings(c)
            assert (path, tz) == (f"s_{uid}", server_tz)
            assert c.execute("SHOW work_mem").fetchone()[0] == pg.psql("SHOW work_mem")
        assert _settings(a)[2] == tz_a
        assert a.execute("SHOW work_mem").fetchone() == ("5MB",)
    finally:
        a.close()


def test_rejected_setting_leaves_the_server_usable_and_clean(pg, proxy):
    uid = uuid.uuid4().hex[:8]
    server_tz = pg.psql("SHOW TimeZone", db=APP_DB)
    with connect(proxy, options=f"-c search_path=known_{uid}") as d:  # teach the pool this login
        assert _settings(d)[1] == f"known_{uid}"
    with connect(proxy, options="-c work_mem=6MB") as w:
        assert w.execute("SHOW work_mem").fetchone() == ("6MB",)
    with pytest.raises(psycopg.OperationalError, match='invalid value for parameter "TimeZone"'):
        connect(proxy, options="-c TimeZone=No/Such_Zone")
    # A login the pool already knows (no check on a server) gets exactly its own settings.
    with connect(proxy, options=f"-c search_path=known_{uid}") as d:
        _, path, tz, _ = _settings(d)
        assert (path, tz) == (f"known_{uid}", server_tz)
        assert d.execute("SHOW work_mem").fetchone()[0] == pg.psql("SHOW work_mem")
    with connect(proxy) as b:
        assert _settings(b)[2] == server_tz
