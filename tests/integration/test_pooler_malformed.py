"""Malformed and oversized packets on raw sockets get an ErrorResponse (08P01 / 54000) or a clean
close, promptly, while a well-behaved psycopg client keeps working all along."""

from __future__ import annotations

import os
import socket
import struct

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import BackgroundClient
from tests.harness.config import app_database, app_user
from tests.harness.rawclient import PROTOCOL_3, error_fields, parse_messages, read_until_close, startup_packet

REPLY_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={
            "auth_type": "trust",
            "default_pool_size": 1,
            "pooler_mode": "transaction",
            "checkout_timeout": 10000,
            "max_message_size": 1 << 20,
        },
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _open(proxy) -> socket.socket:
    s = socket.create_connection((proxy.host, proxy.port), timeout=REPLY_TIMEOUT)
    s.settimeout(REPLY_TIMEOUT)
    return s


def _login(proxy) -> socket.socket:
    """Trust login on a raw socket, up to the first ReadyForQuery."""
    s = _open(proxy)
    s.sendall(startup_packet(APP_USER, APP_DB))
    buf = b""
    while True:
        chunk = s.recv(65536)
        assert chunk, f"closed during login: {buf!r}"
        buf += chunk
        msgs = parse_messages(buf)
        if msgs and msgs[-1][0] == "Z":
            types = [t for t, _ in msgs]
            assert "R" in types and "E" not in types, msgs
            return s
        assert not any(t == "E" for t, _ in msgs), msgs


def _assert_refused(msgs: list[tuple[str, bytes]], how: str, codes: tuple[str, ...] = ("08P01", "54000")) -> None:
    errors = [error_fields(b) for t, b in msgs if t == "E"]
    if errors:
        assert errors[-1].get("C") in codes, errors
        assert errors[-1].get("S") in ("FATAL", "ERROR"), errors
    else:
        assert how in ("eof", "reset")
    assert not any(t == "Z" for t, _ in msgs), msgs


def _check_alive(proxy, bg: BackgroundClient) -> None:
    assert proxy.returncode is None, proxy.log_tail()
    bg.wait_for_more()
    with psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), autocommit=True, connect_timeout=10) as c:
        assert c.execute("SELECT 42").fetchone() == (42,)


def test_garbage_and_bad_startup_packets(proxy):
    with BackgroundClient(proxy, check_on_exit=False) as bg:
        _check_alive(proxy, bg)
        cases = [
            ("http request", b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n"),
            ("random bytes", os.urandom(512)),
            ("startup claims 20000 bytes", struct.pack(">II", 20000, PROTOCOL_3) + b"user\0app\0"),
            ("length below header", struct.pack(">I", 3) + b"\0\0\0\0\0\0"),
            # PostgreSQL answers this one with 0A000 (feature_not_supported).
            ("unknown protocol version", startup_packet(APP_USER, APP_DB, version=(9 << 16) | 0), ("0A000", "08P01")),
            ("startup without terminator", struct.pack(">II", 16, PROTOCOL_3) + b"user\0app"),
        ]
        for label, data, *codes in cases:
            s = _open(proxy)
            try:
                s.sendall(data)
                msgs, how = read_until_close(s, REPLY_TIMEOUT)
            finally:
                s.close()
            try:
                _assert_refused(msgs, how, *codes)
            except AssertionError as e:
                raise AssertionError(f"{label}: {e}") from None
            _check_alive(proxy, bg)
    assert not bg.errors


def test_oversized_and_broken_messages_after_login(proxy):
    with BackgroundClient(proxy, check_on_exit=False) as bg:
        cases = [
            ("length 0xFFFFFFF0", b"Q" + struct.pack(">I", 0xFFFFFFF0)),
            ("length above max_message_size", b"Q" + struct.pack(">I", (1 << 20) + 100) + b"SELECT "),
            ("length below 4", b"Q" + struct.pack(">I", 2)),
            ("Parse claiming 2 GiB", b"P" + struct.pack(">I", 0x7FFFFFFF) + b"\0SELECT 1"),
        ]
        for label, data in cases:
            s = _login(proxy)
            try:
                s.sendall(data)
                msgs, how = read_until_close(s, REPLY_TIMEOUT)
            finally:
                s.close()
            try:
                _assert_refused(msgs, how)
            except AssertionError as e:
                raise AssertionError(f"{label}: {e}") from None
            _check_alive(proxy, bg)
    assert not bg.errors


@pytest.mark.parametrize("cut", [3, 10, 40])
def test_truncated_message_then_close(proxy, cut):
    """Half a query, then the client goes away: the server it may have been given is not reused in
    a broken state (the next queries on the pool of one still work)."""
    query = b"SELECT 'a fairly long query text to be cut somewhere in the middle'"
    msg = b"Q" + struct.pack(">I", len(query) + 5) + query + b"\0"
    with BackgroundClient(proxy, check_on_exit=False) as bg:
        s = _login(proxy)
        s.sendall(msg[:cut])
        s.close()
        _check_alive(proxy, bg)
        # A raw client on the same proxy still gets well-formed answers.
        s = _login(proxy)
        try:
            s.sendall(msg)
            buf = b""
            while not buf.endswith(b"Z\x00\x00\x00\x05I"):
                chunk = s.recv(65536)
                assert chunk, buf
                buf += chunk
            types = [t for t, _ in parse_messages(buf)]
            assert types == ["T", "D", "C", "Z"], types
        finally:
            s.close()
    assert not bg.errors
