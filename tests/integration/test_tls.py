"""TLS on both sides of the proxy, with real drivers and a real PostgreSQL (ssl = on): clients that
verify the proxy (psycopg, asyncpg, psql with sslmode=verify-full), tls_client_required, client
certificates, tls_verify towards PostgreSQL (seen from pg_stat_ssl), certificate reload on
SIGHUP, and TLS files that are wrong at start or at reload."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.certs import CertAuthority, Leaf
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.pgserver import PgServer, PgServerError
from tests.harness.ports import free_port
from tests.harness.proxy import REPO_ROOT, ProxyProcess, _child_env, dump_toml
from tests.harness.rawclient import error_fields, startup_packet

SSL_REQUEST = struct.pack("!II", 8, 80877103)
SSL_STAT = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@dataclass(frozen=True)
class Pki:
    """Two CAs for the proxy's certificate (the second for the reload test), one for PostgreSQL's."""

    proxy_ca: CertAuthority
    proxy: Leaf
    client: Leaf
    other_ca: CertAuthority
    other: Leaf
    pg_ca: CertAuthority
    pg: Leaf
    pg_wrong_name: Leaf


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    proxy_ca = CertAuthority(str(base / "proxy-ca"), "proxy CA")
    other_ca = CertAuthority(str(base / "other-ca"), "other CA")
    pg_ca = CertAuthority(str(base / "pg-ca"), "postgres CA")
    return Pki(
        proxy_ca=proxy_ca,
        proxy=proxy_ca.issue("proxy"),
        client=proxy_ca.issue("app", (), client=True),
        other_ca=other_ca,
        other=other_ca.issue("proxy-next"),
        pg_ca=pg_ca,
        pg=pg_ca.issue("postgres"),
        pg_wrong_name=pg_ca.issue("postgres-elsewhere", ("DNS:db.example.invalid",)),
    )


@pytest.fixture(scope="module")
def tls_pg(pki: Pki) -> Iterator[PgServer]:
    """A PostgreSQL with ssl = on (certificate for 127.0.0.1 from pki.pg_ca) and the app user."""
    server = PgServer(name="pg-tls", ssl=(pki.pg.cert, pki.pg.key))
    try:
        server.start()
        server.create_user(APP_USER, APP_PASSWORD)
        server.create_database(APP_DB, owner=APP_USER)
    except PgServerError as e:
        server.cleanup()
        pytest.fail(f"could not start PostgreSQL with ssl = on:\n{e}", pytrace=False)
    yield server
    server.cleanup()


def tls_general(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"tls_certificate": pki.proxy.cert, "tls_private_key": pki.proxy.key, **extra}


def verify_full(proxy: ProxyProcess, root: str, **kw: Any) -> psycopg.Connection:
    """A psycopg client that checks the proxy's certificate and name, as libpq's verify-full does."""
    return connect(proxy, sslmode="verify-full", sslrootcert=root, **kw)


def first_query(proxy: ProxyProcess, *args: str) -> None:
    """Log in (in plaintext) and run one query: the proxy needs a server by then at the latest."""
    with connect(proxy, *args, sslmode="disable") as c:
        c.execute("SELECT 1")


def ssl_stat(conn: psycopg.Connection) -> tuple[bool, str | None]:
    row = conn.execute(SSL_STAT).fetchone()
    assert row is not None
    return row[0], row[1]


# -- clients of the proxy ---------------------------------------------------------------------------


def test_psycopg_verify_full_and_plaintext_side_by_side(pg, pki, proxy_factory):
    proxy = proxy_factory(general=tls_general(pki), databases=[app_database(pg)], users=[app_user()])
    with verify_full(proxy, pki.proxy_ca.cert) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT 1").fetchone() == (1,)
        # Big messages both ways cross many TLS records.
        payload = "x" * 3_000_000
        assert c.execute("SELECT length(%s::text)", (payload,)).fetchone() == (3_000_000,)
        (text,) = c.execute("SELECT string_agg(md5(i::text), '') FROM generate_series(1, 60000) i").fetchone()
        assert len(text) == 32 * 60000
    # TLS is offered, not required: a plaintext client is still served.
    with connect(proxy, sslmode="disable") as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("SELECT 2").fetchone() == (2,)


def test_client_that_does_not_trust_the_proxy_fails_cleanly(pg, pki, proxy_factory, poll):
    proxy = proxy_factory(general=tls_general(pki), databases=[app_database(pg)], users=[app_user()])
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        verify_full(proxy, pki.other_ca.cert)
    poll(lambda: "TLS handshake with client 127.0.0.1:" in proxy.log_text(), what="handshake warning")
    assert "Traceback" not in proxy.log_text()
    with verify_full(proxy, pki.proxy_ca.cert) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_tls_client_required(pg, pki, proxy_factory):
    proxy = proxy_factory(
        general=tls_general(pki, tls_client_required=True), databases=[app_database(pg)], users=[app_user()]
    )
    with pytest.raises(psycopg.OperationalError, match=r"TLS is required by this proxy \(tls_client_required\)"):
        connect(proxy, sslmode="disable")
    with connect(proxy, sslmode="require") as c:
        assert c.pgconn.ssl_in_use and c.execute("SELECT 1").fetchone() == (1,)


def test_asyncpg_with_an_ssl_context(pg, pki, proxy_factory):
    proxy = proxy_factory(general=tls_general(pki), databases=[app_database(pg)], users=[app_user()])
    context = ssl.create_default_context(cafile=pki.proxy_ca.cert)

    async def run() -> tuple[int, bool]:
        conn = await asyncpg.connect(proxy.url(APP_USER, APP_PASSWORD, APP_DB), ssl=context, timeout=10)
        try:
            encrypted = conn._transport.get_extra_info("ssl_object") is not None  # type: ignore[attr-defined]
            rows = await conn.fetch("SELECT generate_series(1, 1000) AS n")
            return len(rows), encrypted
        finally:
            await conn.close()

    assert asyncio.run(run()) == (1000, True)


def test_psql_verify_full(pg, pki, proxy_factory):
    proxy = proxy_factory(general=tls_general(pki), databases=[app_database(pg)], users=[app_user()])
    dsn = f"{proxy.dsn(APP_USER, None, APP_DB)} sslmode=verify-full sslrootcert={pki.proxy_ca.cert}"
    env = {**os.environ, "PGPASSWORD": APP_PASSWORD, "PGCONNECT_TIMEOUT": "10"}
    res = subprocess.run(
        [os.path.join(pg.bindir, "psql"), dsn, "-X", "-c", r"\conninfo", "-c", "SELECT 40 + 2"],
        capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    assert "SSL connection (protocol: TLSv1." in res.stdout and "42" in res.stdout, res.stdout


def test_client_certificates_with_tls_client_ca_certificate(pg, pki, proxy_factory):
    proxy = proxy_factory(
        general=tls_general(pki, tls_client_ca_certificate=pki.proxy_ca.cert, tls_client_required=True),
        databases=[app_database(pg)],
        users=[app_user()],
    )
    with verify_full(proxy, pki.proxy_ca.cert, sslcert=pki.client.cert, sslkey=pki.client.key) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        verify_full(proxy, pki.proxy_ca.cert)


def test_plaintext_pipelined_behind_ssl_request_is_refused(pg, pki, proxy_factory):
    proxy = proxy_factory(general=tls_general(pki), databases=[app_database(pg)], users=[app_user()])
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(SSL_REQUEST + startup_packet(APP_USER, APP_DB))
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    assert buf[:1] == b"E", buf
    fields = error_fields(buf[5:])
    assert fields["C"] == "08P01" and "unencrypted data after SSL request" in fields["M"]


# -- the proxy's connections to PostgreSQL ---------------------------------------------------------


@pytest.mark.parametrize(
    ("general", "encrypted"),
    [
        ({"tls_verify": "verify_full"}, True),
        ({"tls_verify": "verify_ca"}, True),
        ({}, True),  # prefer, the default: encrypted because the server offers it
        ({"tls_verify": "disabled"}, False),
    ],
)
def test_server_side_tls_as_pg_stat_ssl_sees_it(tls_pg, pki, proxy_factory, general, encrypted):
    if general.get("tls_verify", "").startswith("verify"):
        general = {**general, "tls_server_ca_certificate": pki.pg_ca.cert}
    proxy = proxy_factory(general=general, databases=[app_database(tls_pg)], users=[app_user()])
    with connect(proxy, sslmode="disable") as c:
        ssl_on, version = ssl_stat(c)
        assert ssl_on is encrypted
        if encrypted:
            assert version in ("TLSv1.2", "TLSv1.3")
        (text,) = c.execute("SELECT string_agg(md5(i::text), '') FROM generate_series(1, 30000) i").fetchone()
        assert len(text) == 32 * 30000


def test_tls_on_both_sides(tls_pg, pki, proxy_factory):
    general = tls_general(pki, tls_verify="verify_full", tls_server_ca_certificate=pki.pg_ca.cert)
    proxy = proxy_factory(general=general, databases=[app_database(tls_pg)], users=[app_user()])
    with verify_full(proxy, pki.proxy_ca.cert) as c:
        assert c.pgconn.ssl_in_use and ssl_stat(c)[0] is True
        with c.cursor() as cur, cur.copy("COPY (SELECT i, md5(i::text) FROM generate_series(1, 20000) i) TO STDOUT") as copy:
            rows = sum(1 for _ in copy.rows())
        assert rows == 20000


def test_verify_full_against_a_certificate_for_another_name(pki, pg_factory, proxy_factory):
    wrong = pg_factory(name="pg-wrong-name", auth="trust", ssl=(pki.pg_wrong_name.cert, pki.pg_wrong_name.key))
    proxy = proxy_factory(
        general={"tls_verify": "verify_full", "tls_server_ca_certificate": pki.pg_ca.cert, "checkout_timeout": 20_000},
        databases=[{"name": "db", "host": wrong.host, "port": wrong.port, "database_name": "postgres"}],
        users=[{"name": "app", "database": "db", "password": "pw", "server_user": "postgres"}],
    )
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as info:
        first_query(proxy, "app", "pw", "db")
    assert time.monotonic() - started < 10, "the error must come at once, not after checkout_timeout"
    message = str(info.value)
    assert "TLS handshake with the server failed" in message, message
    assert "certificate is not valid for '127.0.0.1'" in message, message
    assert "TLS handshake with server 127.0.0.1:" in proxy.log_text()


def test_verify_ca_against_a_server_without_tls(pg, pki, proxy_factory):
    proxy = proxy_factory(
        general={"tls_verify": "verify_ca", "tls_server_ca_certificate": pki.pg_ca.cert},
        databases=[app_database(pg)],
        users=[app_user()],
    )
    with pytest.raises(psycopg.OperationalError, match=r"server does not support TLS \(tls_verify = verify_ca\)"):
        first_query(proxy)


def test_server_certificate_from_an_unknown_ca(tls_pg, pki, proxy_factory):
    proxy = proxy_factory(
        general={"tls_verify": "verify_ca", "tls_server_ca_certificate": pki.other_ca.cert},
        databases=[app_database(tls_pg)],
        users=[app_user()],
    )
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        first_query(proxy)


# -- reload and bad files ---------------------------------------------------------------------------


def _install(leaf: Leaf, directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "proxy.crt"), os.path.join(directory, "proxy.key")
    for src, dst in ((leaf.cert, cert), (leaf.key, key)):
        shutil.copy(src, dst + ".tmp")
        os.replace(dst + ".tmp", dst)
    return cert, key


def _trusts(proxy: ProxyProcess, root: str) -> bool:
    try:
        with verify_full(proxy, root) as c:
            return c.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_sighup_reloads_certificates(pg, pki, proxy_factory, tmp_path, poll):
    cert, key = _install(pki.proxy, str(tmp_path))
    proxy = proxy_factory(
        general={"tls_certificate": cert, "tls_private_key": key}, databases=[app_database(pg)], users=[app_user()]
    )
    held = verify_full(proxy, pki.proxy_ca.cert)
    try:
        _install(pki.other, str(tmp_path))
        proxy.reload()
        poll(lambda: _trusts(proxy, pki.other_ca.cert), what="new connections present the new certificate")
        assert not _trusts(proxy, pki.proxy_ca.cert)
        # The connection opened before the reload keeps its session.
        assert held.execute("SELECT 3").fetchone() == (3,) and held.pgconn.ssl_in_use
    finally:
        held.close()


def test_reload_with_a_broken_certificate_keeps_the_old_one(pg, pki, proxy_factory, tmp_path, poll):
    cert, key = _install(pki.proxy, str(tmp_path))
    proxy = proxy_factory(
        general={"tls_certificate": cert, "tls_private_key": key}, databases=[app_database(pg)], users=[app_user()]
    )
    Path(cert).write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    proxy.reload()
    poll(lambda: "TLS settings not reloaded" in proxy.log_text(), what="reload error in the log")
    line = next(x for x in proxy.log_text().splitlines() if "TLS settings not reloaded" in x)
    assert "tls_certificate" in line and cert in line, line
    assert _trusts(proxy, pki.proxy_ca.cert)


@pytest.mark.parametrize("key", ["tls_certificate", "tls_private_key", "tls_server_ca_certificate"])
def test_unreadable_tls_file_at_start_is_a_config_error(pg, pki, tmp_path, key):
    general: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), **tls_general(pki)}
    if key == "tls_server_ca_certificate":
        general["tls_verify"] = "verify_full"
    missing = str(tmp_path / "missing.pem")
    general[key] = missing
    config, users = tmp_path / "pgdog.toml", tmp_path / "users.toml"
    config.write_text(dump_toml({"general": general, "databases": [app_database(pg)]}))
    users.write_text(dump_toml({"users": [app_user()]}))
    for command, code in (("run", 2), ("configcheck", 1)):
        res = subprocess.run(
            [sys.executable, "-m", "pgdog_ev", command, "-c", str(config), "-u", str(users)],
            capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, env=_child_env(None),
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode == code, (command, res.stdout, res.stderr)
        assert key in res.stderr and missing in res.stderr and str(config) in res.stderr, res.stderr
        assert "Traceback" not in res.stderr + res.stdout
