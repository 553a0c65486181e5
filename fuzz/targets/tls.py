"""TLS from a hostile client (pgdog_ev/tls/stream.py): what arrives after the SSLRequest.

The proxy's accepting side is a TlsStream over memory buffers; OpenSSL does the cryptography,
and what this target checks is our wrapper around it: that only TlsError ever leaves it, that a
failed stream stays failed instead of answering later, and that the plaintext it hands to the
client machine is exactly what the peer sent, whatever the cut of the ciphertext.

Input: a mode byte, a chunking seed byte, then the payload.

* mode 0: the payload is the client's first flight (a ClientHello, or not).
* mode 1: a real client completes the handshake and sends the payload as plaintext; the server
  side must read exactly the payload.
* mode 2: as mode 1 with a fixed plaintext, but the payload is XORed over the ciphertext
  records: the server reads a prefix of the plaintext (records are authenticated) and then
  stops, with a TlsError or by reading nothing more.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from functools import cache

from fuzz.chunks import split
from fuzz.oracle import check
from fuzz.source import ByteSource
from pgdog_ev.tls.stream import TlsError, TlsStream

PLAINTEXT = b"Q\x00\x00\x00\x0dSELECT 1;\x00" * 40


@cache
def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a throwaway certificate, and a client context that trusts it
    (made once per process: the openssl command line takes a moment)."""
    from tests.harness.certs import CertAuthority

    directory = tempfile.mkdtemp(prefix="pgdog-ev-fuzz-tls-")
    try:
        ca = CertAuthority(os.path.join(directory, "ca"))
        leaf = ca.issue("server")
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(leaf.cert, leaf.key)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(ca.cert)
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # the contexts hold what they need
    return server, client


def _feed(server: TlsStream, data: bytes, seed: int) -> tuple[bytes, bool]:
    """Ciphertext in, cut by ``seed``; (plaintext read, whether the stream failed)."""
    got = bytearray()
    buf = memoryview(bytearray(1 << 14))
    for piece in split(data, seed):
        try:
            server.receive(piece)
            while n := server.read_into(buf):
                got += buf[:n]
        except TlsError as exc:
            check(str(exc), "a TlsError without a message")
            return bytes(got), True
    return bytes(got), False


def _handshake(seed: int) -> tuple[TlsStream, TlsStream]:
    server_ctx, client_ctx = _contexts()
    client = TlsStream(client_ctx, server_side=False, server_hostname="127.0.0.1")
    server = TlsStream(server_ctx, server_side=True)
    client.start()
    for _ in range(8):
        out = client.take_outgoing()
        if not out:
            break
        _, failed = _feed(server, out, seed)
        check(not failed, "a real client's handshake failed")
        client.receive(server.take_outgoing())
    check(client.established and server.established, "a real client's handshake did not finish")
    return client, server


def tls_stream(data: bytes) -> None:
    src = ByteSource(data)
    mode = src.byte() % 3
    seed = src.byte()
    payload = data[src.pos:]
    if mode == 0:
        server_ctx, _ = _contexts()
        server = TlsStream(server_ctx, server_side=True)
        got, failed = _feed(server, payload, seed)
        check(got == b"", "plaintext came out of a handshake that never finished")
        if failed:
            # A failed stream stays failed: more bytes give no plaintext and raise nothing else.
            more, _ = _feed(server, payload[:64], seed)
            check(more == b"", "a failed stream produced plaintext")
        return
    client, server = _handshake(seed)
    if mode == 1:
        client.write(payload)
        got, failed = _feed(server, client.take_outgoing(), seed)
        check(not failed and got == payload, "the server did not read exactly what the client sent")
        return
    client.write(PLAINTEXT)
    records = bytearray(client.take_outgoing())
    for i, b in enumerate(payload[: len(records)]):
        records[i] ^= b
    got, _failed = _feed(server, bytes(records), seed)
    check(PLAINTEXT.startswith(got), "corrupted records decrypted to something the client never sent")
