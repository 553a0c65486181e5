"""TlsStream, the sans-IO TLS session: two streams talking through memory, ciphertext moved in
chunks of arbitrary (seeded random) sizes, as a network would split and merge it."""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator

import pytest

from pgdog_ev.tls.stream import TlsError, TlsStream
from tests.harness.certs import CertAuthority, Leaf

Pki = tuple[CertAuthority, Leaf, CertAuthority]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost from it, and an unrelated CA."""
    base = tmp_path_factory.mktemp("pki")
    ca = CertAuthority(str(base / "ca"), "stream test CA")
    other = CertAuthority(str(base / "other"), "other CA")
    return ca, ca.issue("server"), other


def server_context(leaf: Leaf) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    return ctx


def client_context(cafile: str | None, *, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = check_hostname
    return ctx


def chunks(data: bytes, rng: random.Random, largest: int) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        n = rng.randint(1, largest)
        yield data[i : i + n]
        i += n


def pump(a: TlsStream, b: TlsStream, rng: random.Random, largest: int = 700) -> tuple[bytes, bytes]:
    """Move ciphertext both ways until both sides are quiet; return the plaintext each side read
    (what a received, what b received)."""
    got_a, got_b = bytearray(), bytearray()
    for _ in range(10_000):
        out_a, out_b = a.take_outgoing(), b.take_outgoing()
        if not out_a and not out_b:
            return bytes(got_a), bytes(got_b)
        for piece in chunks(out_a, rng, largest):
            b.receive(piece)
            got_b += b.read()
        for piece in chunks(out_b, rng, largest):
            a.receive(piece)
            got_a += a.read()
    raise AssertionError("the streams never went quiet")


def pair(pki: Pki, *, hostname: str = "127.0.0.1", cafile: str | None = "ca") -> tuple[TlsStream, TlsStream]:
    ca, leaf, _ = pki
    client = TlsStream(
        client_context(ca.cert if cafile == "ca" else cafile), server_side=False, server_hostname=hostname
    )
    server = TlsStream(server_context(leaf), server_side=True)
    client.start()
    server.start()
    return client, server


@pytest.mark.parametrize("seed", range(8))
def test_handshake_and_data_survive_any_chunking(pki: Pki, seed: int) -> None:
    rng = random.Random(seed)
    client, server = pair(pki)
    # Written before the handshake: kept and sent once it is done (the proxy's StartupMessage).
    client.write(b"startup")
    got_client, got_server = pump(client, server, rng, largest=rng.choice([1, 5, 64, 1500, 20_000]))
    assert client.established and server.established
    assert got_server == b"startup" and got_client == b""
    # Many small writes, then one large one (several TLS records), both ways.
    small = [rng.randbytes(rng.randint(1, 40)) for _ in range(200)]
    for piece in small:
        server.write(piece)
    big = rng.randbytes(300_000)
    client.write(memoryview(big))
    got_client, got_server = pump(client, server, rng, largest=rng.choice([3, 999, 70_000]))
    assert got_client == b"".join(small)
    assert got_server == big


def test_read_into_a_small_buffer_takes_a_record_in_parts(pki: Pki) -> None:
    client, server = pair(pki)
    pump(client, server, random.Random(1))
    server.write(b"x" * 10_000)
    client.receive(server.take_outgoing())
    buf = memoryview(bytearray(333))
    total = bytearray()
    while n := client.read_into(buf):
        assert n <= 333
        total += buf[:n]
    assert total == b"x" * 10_000
    assert not client.peer_closed


def test_close_notify_ends_the_plaintext(pki: Pki) -> None:
    client, server = pair(pki)
    pump(client, server, random.Random(2))
    server.write(b"last words")
    server.close_notify()
    client.receive(server.take_outgoing())
    assert client.read() == b"last words"
    assert client.peer_closed
    assert client.read_into(memoryview(bytearray(10))) == 0


def test_hostname_mismatch_fails_with_the_reason(pki: Pki) -> None:
    client, server = pair(pki, hostname="db.example.invalid")
    with pytest.raises(TlsError, match="certificate verify failed: Hostname mismatch"):
        pump(client, server, random.Random(3))


def test_unknown_ca_fails_and_the_server_hears_an_alert(pki: Pki) -> None:
    _, _, other = pki
    client, server = pair(pki, cafile=other.cert)
    server.receive(client.take_outgoing())  # ClientHello
    with pytest.raises(TlsError, match="certificate verify failed") as info:
        client.receive(server.take_outgoing())
    assert "_ssl.c" not in str(info.value)
    alert = client.take_outgoing()
    assert alert, "the client tells the server why"
    with pytest.raises(TlsError, match=r"(?i)unknown ca"):
        server.receive(alert)


def test_plaintext_where_a_handshake_belongs_is_an_error(pki: Pki) -> None:
    _, server = pair(pki)
    # A PostgreSQL StartupMessage sent by a client that did not really want TLS.
    with pytest.raises(TlsError):
        server.receive(b"\x00\x00\x00\x08\x00\x03\x00\x00" + b"\x00" * 40)


def test_unverified_client_context_encrypts_without_checking(pki: Pki) -> None:
    client, server = pair(pki, hostname="anything.invalid", cafile=None)
    client.write(b"hello")
    _, got_server = pump(client, server, random.Random(4))
    assert got_server == b"hello"
    assert client.version() in ("TLSv1.2", "TLSv1.3") and client.cipher()
