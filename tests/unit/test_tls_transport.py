"""TlsTransport between a fake socket transport and a recording protocol: one delivery per socket
read, writes before the handshake, close_notify both ways, and failures that are logged and
closed (never raised)."""

from __future__ import annotations

import logging
import ssl

import pytest

from loop.protocol import Protocol
from pgdog_ev.tls.stream import TlsError, TlsStream
from pgdog_ev.tls.transport import TlsTransport
from tests.harness.certs import CertAuthority, Leaf

Pki = tuple[CertAuthority, Leaf]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = CertAuthority(str(tmp_path_factory.mktemp("pki")), "transport test CA")
    return ca, ca.issue("server")


class FakeRaw:
    """The socket transport's surface: records writes and lifecycle calls."""

    def __init__(self) -> None:
        self.protocol: Protocol | None = None
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.peername = ("127.0.0.1", 5555)

    def set_protocol(self, protocol: Protocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.out += data

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return len(self.out)


class Upper(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.eof = 0
        self.lost: list[Exception | None] = []

    def data_received(self, data: memoryview) -> None:
        self.chunks.append(bytes(data))

    def eof_received(self) -> None:
        self.eof += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def contexts(pki: Pki, verify: bool = True) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca, leaf = pki
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(leaf.cert, leaf.key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(ca.cert)
    if not verify:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
    return server, client


def feed(transport: TlsTransport, data: bytes) -> None:
    view = memoryview(bytearray(data))
    transport.data_received(view)


def connected(
    pki: Pki, hostname: str = "127.0.0.1", failures: list[str] | None = None
) -> tuple[TlsTransport, FakeRaw, Upper, TlsStream]:
    """A proxy-side TlsTransport (TLS client, as towards PostgreSQL) and the peer's raw stream."""
    server_ctx, client_ctx = contexts(pki)
    raw, upper = FakeRaw(), Upper()
    stream = TlsStream(client_ctx, server_side=False, server_hostname=hostname)
    tls = TlsTransport(raw, upper, stream, "server 127.0.0.1:5432",
                       on_handshake_failed=None if failures is None else failures.append)
    assert raw.protocol is tls
    peer = TlsStream(server_ctx, server_side=True)
    return tls, raw, upper, peer


def shuttle(tls: TlsTransport, raw: FakeRaw, peer: TlsStream) -> None:
    for _ in range(20):
        out = raw.take()
        if out:
            peer.receive(out)
        back = peer.take_outgoing()
        if back:
            feed(tls, back)
        if not out and not back:
            return


def test_write_before_handshake_then_one_delivery_per_read(pki: Pki) -> None:
    tls, raw, upper, peer = connected(pki)
    tls.write(b"startup packet")  # before the handshake finished: kept, sent after
    shuttle(tls, raw, peer)
    assert tls.established
    assert peer.read() == b"startup packet"
    # Three records from the peer arriving in one socket read reach the protocol in one call.
    for part in (b"a" * 20_000, b"b" * 20_000, b"c"):
        peer.write(part)
    feed(tls, peer.take_outgoing())
    assert upper.chunks == [b"a" * 20_000 + b"b" * 20_000 + b"c"]


def test_close_sends_close_notify_and_peer_close_is_eof(pki: Pki) -> None:
    tls, raw, upper, peer = connected(pki)
    shuttle(tls, raw, peer)
    peer.write(b"bye")
    peer.close_notify()
    feed(tls, peer.take_outgoing())
    assert upper.chunks == [b"bye"] and upper.eof == 1
    assert raw.closed  # the transport closes after the peer's close_notify


def test_our_close_says_close_notify(pki: Pki) -> None:
    tls, raw, _, peer = connected(pki)
    shuttle(tls, raw, peer)
    tls.close()
    assert raw.closed and tls.is_closing()
    peer.receive(raw.take())
    assert peer.read() == b"" and peer.peer_closed
    tls.write(b"ignored after close")
    assert raw.take() == b""


def test_handshake_failure_is_logged_reported_and_closed(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    failures: list[str] = []
    tls, raw, upper, peer = connected(pki, hostname="db.example.invalid", failures=failures)
    with caplog.at_level(logging.WARNING, logger="pgdog_ev.tls"):
        peer.receive(raw.take())  # ClientHello
        feed(tls, peer.take_outgoing())  # the server's certificate: rejected
    # The alert that tells the server why went out before the close.
    with pytest.raises(TlsError, match="alert bad certificate"):
        peer.receive(raw.take())
    assert len(failures) == 1 and "Hostname mismatch" in failures[0]
    assert raw.closed and upper.chunks == []
    (record,) = [r for r in caplog.records if r.name == "pgdog_ev.tls"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "TLS handshake with server 127.0.0.1:5432 failed" in record.getMessage()
    # Anything arriving afterwards is ignored, not decrypted.
    feed(tls, b"\x17\x03\x03\x00\x05hello")
    assert upper.chunks == []


def test_garbage_from_a_client_closes_without_a_callback(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    server_ctx, _ = contexts(pki)
    raw, upper = FakeRaw(), Upper()
    tls = TlsTransport(raw, upper, TlsStream(server_ctx, server_side=True), "client 127.0.0.1:5555")
    with caplog.at_level(logging.WARNING, logger="pgdog_ev.tls"):
        feed(tls, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.closed and upper.chunks == []
    assert any("client 127.0.0.1:5555" in r.getMessage() for r in caplog.records)


def test_lifecycle_and_flow_control_pass_through(pki: Pki) -> None:
    tls, raw, upper, _ = connected(pki)
    tls.pause_reading()
    assert not raw.reading and not tls.is_reading()
    tls.resume_reading()
    assert raw.reading
    tls.connection_lost(None)
    assert upper.lost == [None]
    tls.abort()
    assert raw.aborted
