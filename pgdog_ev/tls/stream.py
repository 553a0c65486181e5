"""One TLS session over memory buffers: the sans-IO core of the proxy's TLS.

``ssl.SSLObject`` does the cryptography; two ``ssl.MemoryBIO`` stand where a socket would be.
Ciphertext from the peer goes in through :meth:`TlsStream.receive`, the plaintext it decrypts to
comes out of :meth:`TlsStream.read_into`; plaintext to send goes in through
:meth:`TlsStream.write` and the ciphertext to put on the wire is taken with
:meth:`TlsStream.take_outgoing`. Nothing here touches a socket or a clock, so the same code runs
under the reactor, in unit tests (two streams wired to each other through memory) and, later, over
the simulator's virtual network.
"""

from __future__ import annotations

import re
import ssl

Buffer = bytes | bytearray | memoryview

# OpenSSL's "[SSL: CODE] " prefix and CPython's " (_ssl.c:1006)" suffix: noise in a log line.
_NOISE = re.compile(r"^\[[A-Z0-9_: ]+\]\s*|\s*\(_ssl\.c:\d+\)$")


class TlsError(Exception):
    """The TLS session failed: a handshake that did not verify, a bad record, an alert from the
    peer. ``str()`` is one short line for a log or an ErrorResponse, without OpenSSL's file:line."""


def describe(exc: ssl.SSLError) -> str:
    """Say what went wrong in words an operator can act on: the certificate check's own message
    when there is one ("IP address mismatch, certificate is not valid for '127.0.0.1'")."""
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"certificate verify failed: {verify}"
    text = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    return _NOISE.sub("", text) or type(exc).__name__


class TlsStream:
    """The TLS state of one connection, either side.

    Plaintext written before the handshake finishes is kept and encrypted once it has: the
    server-facing side sends its StartupMessage right after asking for TLS, without waiting.
    """

    __slots__ = ("_in", "_obj", "_out", "_pending", "established", "peer_closed")

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self._pending: list[bytes] = []
        self.established = False
        # The peer sent close_notify: no more plaintext will come.
        self.peer_closed = False

    # -- handshake ---------------------------------------------------------------

    def start(self) -> None:
        """Begin the handshake: the connecting side produces its ClientHello here."""
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            raise TlsError(describe(exc)) from exc
        self.established = True
        pending, self._pending = self._pending, []
        for data in pending:
            self._encrypt(data)

    # -- ciphertext in, plaintext out ----------------------------------------------

    def receive(self, data: Buffer) -> None:
        """Ciphertext from the peer, in chunks of any size. Raises TlsError if the handshake fails."""
        self._in.write(data)
        if not self.established:
            self._handshake()

    def read_into(self, buf: memoryview) -> int:
        """Decrypt into ``buf`` (at most one TLS record's worth per call); 0 when nothing is
        available now, or ever again once ``peer_closed`` is set."""
        if not self.established or self.peer_closed:
            return 0
        try:
            n = self._obj.read(len(buf), buf)
        except ssl.SSLWantReadError:
            return 0
        except ssl.SSLZeroReturnError:
            self.peer_closed = True
            return 0
        except ssl.SSLError as exc:
            raise TlsError(describe(exc)) from exc
        if not n:
            # SSLObject reports the peer's close_notify as a zero-length read.
            self.peer_closed = True
        return n

    def read(self, size: int = 1 << 16) -> bytes:
        """All plaintext available now (for callers without a buffer of their own, such as tests)."""
        buf = bytearray(size)
        view = memoryview(buf)
        parts: list[bytes] = []
        while True:
            n = self.read_into(view)
            if not n:
                break
            parts.append(bytes(view[:n]))
        return b"".join(parts)

    # -- plaintext in, ciphertext out ----------------------------------------------

    def write(self, data: Buffer) -> None:
        """Encrypt ``data`` (any size: it becomes as many records as it needs)."""
        if not self.established:
            self._pending.append(bytes(data))
            return
        self._encrypt(data)

    def _encrypt(self, data: Buffer) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._obj.write(view) :]
        except ssl.SSLError as exc:
            raise TlsError(describe(exc)) from exc

    def take_outgoing(self) -> bytes:
        """Ciphertext to send (handshake messages, records, alerts); b"" when there is none."""
        return self._out.read() if self._out.pending else b""

    def close_notify(self) -> None:
        """Queue our close_notify alert; the peer's is not waited for."""
        if not self.established:
            return
        try:
            self._obj.unwrap()
        except ssl.SSLError:
            pass

    # -- facts for logs ---------------------------------------------------------------

    def version(self) -> str | None:
        return self._obj.version()

    def cipher(self) -> str | None:
        info = self._obj.cipher()
        return info[0] if info else None
