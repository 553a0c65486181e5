"""The daemon's own log (stderr): secrets never reach it, even at debug level; JSON formats give
one object per line; an auth failure names the user and the client address."""

from __future__ import annotations

import json
import socket
import uuid

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER, MD5_PASSWORD, MD5_USER
from tests.harness.clients import connect
from tests.harness.config import app_database
from tests.harness.rawclient import RawConn, error_fields, message, startup_packet


def _marker(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex}"


@pytest.mark.parametrize("auth_type", ["scram", "md5", "plain"])
def test_no_passwords_or_parameters_in_debug_log(pg, proxy_factory, auth_type):
    # Proxy-side passwords differ from the server-side ones, so both kinds are checked; the
    # server side logs in with SCRAM (APP_USER) and md5 (MD5_USER).
    front_app, front_md5 = _marker("FrontPw"), _marker("FrontMd5Pw")
    wrong = _marker("WrongPw")
    param = _marker("ParamMarker")
    proxy = proxy_factory(
        general={"log_level": "debug", "auth_type": auth_type, "default_pool_size": 2},
        databases=[app_database(pg)],
        users=[
            {"name": APP_USER, "database": APP_DB, "password": front_app, "server_password": APP_PASSWORD},
            {"name": MD5_USER, "database": APP_DB, "password": front_md5, "server_password": MD5_PASSWORD},
        ],
    )
    for user in (APP_USER, MD5_USER, "nobody"):
        with pytest.raises(psycopg.OperationalError):
            connect(proxy, user=user, password=wrong).close()
    for user, password in ((APP_USER, front_app), (MD5_USER, front_md5)):
        with connect(proxy, user=user, password=password) as c:
            assert c.execute("SELECT %s::text", (param,)).fetchone() == (param,)
            # Named prepared statement, parameters bound again.
            assert c.execute("SELECT %s::text || 'x'", (param,), prepare=True).fetchone() == (param + "x",)
            # A server error quoting the parameter back travels to the client, not to the log.
            with pytest.raises(psycopg.errors.InvalidTextRepresentation, match=param):
                c.execute("SELECT %s::int", (param,))
    assert proxy.stop() == 0
    log = proxy.log_text()
    assert "authentication failed" in log  # the log did record the failures
    for secret in (front_app, front_md5, wrong, param, APP_PASSWORD, MD5_PASSWORD):
        assert secret not in log, f"{secret!r} leaked into the log"


def _wrong_plain_login(host: str, port: int, user: str) -> str:
    """A cleartext-password login with a wrong password; returns the client's own address."""
    conn = RawConn(socket.create_connection((host, port), timeout=10))
    try:
        local = conn.sock.getsockname()
        conn.sock.sendall(startup_packet(user, APP_DB))
        assert conn.until(b"R")[-1] == (b"R", b"\x00\x00\x00\x03")  # AuthenticationCleartextPassword
        conn.sock.sendall(message(b"p", _marker("WrongPw").encode() + b"\0"))
        err = conn.until(b"E")[-1]
        assert error_fields(err[1])["C"] == "28P01"
    finally:
        conn.close()
    return f"{local[0]}:{local[1]}"


@pytest.mark.parametrize("log_format", ["json", "json_flattened"])
def test_json_lines_and_auth_failure_fields(pg, proxy_factory, poll, log_format):
    proxy = proxy_factory(
        general={"log_format": log_format, "auth_type": "plain"},
        databases=[app_database(pg)],
        users=[{"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD}],
    )
    addr = _wrong_plain_login(proxy.host, proxy.port, APP_USER)
    poll(lambda: "authentication failed" in proxy.log_text(), what="auth failure logged")
    assert proxy.stop() == 0

    records = [json.loads(line) for line in proxy.log_text().splitlines() if line.strip()]
    assert records, "empty log"
    for rec in records:
        assert isinstance(rec, dict)
        assert {"time", "level", "message"} <= rec.keys(), rec
        assert rec["time"].endswith("Z")
    failures = [r for r in records if r["message"].startswith("authentication failed")]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["level"] == "warning"
    fields = failure if log_format == "json_flattened" else failure["fields"]
    assert fields["user"] == APP_USER
    assert fields["database"] == APP_DB
    assert fields["addr"] == addr
    if log_format == "json_flattened":
        assert "fields" not in failure
    messages = [r["message"] for r in records]
    assert any(m.startswith("pgdog-ev ") and "listening" in m for m in messages)
    assert any(m.startswith("shutting down") for m in messages)
    assert messages[-1] == "stopped"


def test_text_format_appends_fields(pg, proxy_factory, poll):
    proxy = proxy_factory(
        general={"auth_type": "plain"},
        databases=[app_database(pg)],
        users=[{"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD}],
    )
    addr = _wrong_plain_login(proxy.host, proxy.port, APP_USER)
    line = poll(
        lambda: next((ln for ln in proxy.log_text().splitlines() if "authentication failed" in ln), None),
        what="auth failure logged",
    )
    assert " WARNING pgdog_ev.directory: " in line
    assert f"user={APP_USER} database={APP_DB} addr={addr}" in line


def test_unreachable_server_logged_with_fields(pg, proxy_factory, poll):
    proxy = proxy_factory(
        general={"log_format": "json_flattened", "connect_timeout": 2000, "checkout_timeout": 3000},
        databases=[{"name": APP_DB, "host": "127.0.0.1", "port": 1, "database_name": APP_DB}],
        users=[{"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD}],
    )
    # min_pool_size = 1 makes the pool try at start already; a client makes sure someone waits.
    with pytest.raises(psycopg.OperationalError), connect(proxy) as c:
        c.execute("SELECT 1")

    def failure() -> dict | None:
        for line in proxy.log_text().splitlines():
            rec = json.loads(line)
            if rec["message"].startswith("connect to 127.0.0.1:1 "):
                return rec
        return None

    rec = poll(failure, what="connect failure logged")
    assert rec["level"] == "warning"
    assert rec["addr"] == "127.0.0.1:1" and rec["user"] == APP_USER and rec["database"] == APP_DB


@pytest.mark.parametrize("enabled", [True, False])
def test_log_connections_and_disconnections(pg, proxy_factory, poll, enabled):
    proxy = proxy_factory(
        general={"log_format": "json_flattened", "log_connections": enabled, "log_disconnections": enabled},
        databases=[app_database(pg)],
        users=[{"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD}],
    )
    with connect(proxy, application_name="logged_app") as c:
        c.execute("SELECT 1")
        assert c.execute("SELECT 2").fetchone() == (2,)

    def records() -> list[dict]:
        return [json.loads(line) for line in proxy.log_text().splitlines() if line.strip()]

    if not enabled:
        assert proxy.stop() == 0
        assert not [r for r in records() if "logged in" in r["message"] or " closed (" in r["message"]]
        return
    logout = poll(lambda: next((r for r in records() if " closed (" in r["message"]), None), what="logout logged")
    assert logout["user"] == APP_USER
    assert logout["reason"] == "client_terminate" and logout["queries"] >= 2
    logins = [r for r in records() if "logged in" in r["message"]]
    assert logins[0]["user"] == APP_USER and logins[0]["database"] == APP_DB
    assert logins[0]["application_name"] == "logged_app" and logins[0]["addr"].startswith("127.0.0.1:")
