"""TLS spliced between a loop transport and the protocol object that owns the connection.

:class:`TlsTransport` is both: the protocol of the socket transport (ciphertext events arrive
here) and the transport of the connection object (it writes plaintext here). It is inserted only
when a connection switches to TLS, so a plaintext connection keeps its direct path to the socket
and pays nothing for TLS existing.

The decrypted bytes of one socket read are handed up in one call, from a buffer shared by every
TLS connection (as the socket transports share theirs): like the socket transport's, the view is
valid only during ``data_received``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from loop.protocol import Protocol
from loop.transport import Transport
from pgdog_ev.tls.stream import Buffer, TlsError, TlsStream

log = logging.getLogger("pgdog_ev.tls")

# Plaintext of one socket read: at most what was read (64 KiB by default) plus the tail of a
# record begun in the previous read. A fuller buffer is handed up and refilled.
PLAIN_BUFFER_SIZE = 128 * 1024

_plain: list[memoryview] = []


def _plain_buffer() -> memoryview:
    if not _plain:
        _plain.append(memoryview(bytearray(PLAIN_BUFFER_SIZE)))
    return _plain[0]


class TlsTransport(Protocol):
    """Plaintext transport over a ciphertext transport.

    ``label`` names the peer in log lines ("client 10.0.0.7:51234"). ``on_handshake_failed``
    hears why a handshake failed (the server side reports it to its pool's waiting clients);
    either way the failure is logged as a warning and the socket is closed, never a traceback.
    """

    def __init__(
        self,
        raw: Transport,
        upper: Protocol,
        stream: TlsStream,
        label: str,
        on_handshake_failed: Callable[[str], None] | None = None,
    ) -> None:
        self._raw = raw
        self._upper = upper
        self._stream = stream
        self._label = label
        self._on_handshake_failed = on_handshake_failed
        self._closing = False
        self._failed = False
        self.peername: Any = getattr(raw, "peername", None)
        raw.set_protocol(self)
        self._guard(stream.start)

    # -- events from the socket transport --------------------------------------------

    def data_received(self, data: memoryview) -> None:
        if self._failed:
            return
        stream = self._stream
        if not self._guard(stream.receive, data):
            return
        view = _plain_buffer()
        filled = 0
        while True:
            try:
                n = stream.read_into(view[filled:])
            except TlsError as exc:
                self._fail(str(exc))
                return
            if not n:
                break
            filled += n
            if filled == len(view):
                self._deliver(view, filled)
                filled = 0
                if self._failed or self._closing:
                    return
        self._flush()
        if filled:
            self._deliver(view, filled)
        if stream.peer_closed and not self._closing:
            self._upper.eof_received()
            self.close()

    def _deliver(self, view: memoryview, n: int) -> None:
        chunk = view[:n]
        try:
            self._upper.data_received(chunk)
        finally:
            chunk.release()

    def eof_received(self) -> None:
        self._upper.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._upper.connection_lost(exc)

    def pause_writing(self) -> None:
        self._upper.pause_writing()

    def resume_writing(self) -> None:
        self._upper.resume_writing()

    # -- the transport the connection object writes to ----------------------------------

    def write(self, data: Buffer) -> None:
        if self._closing or self._failed or not data:
            return
        self._guard(self._stream.write, data)

    def close(self) -> None:
        """Say close_notify, then let the socket transport flush and close."""
        if self._closing:
            return
        self._closing = True
        if not self._failed:
            self._stream.close_notify()
            self._flush()
        self._raw.close()

    def abort(self) -> None:
        self._closing = True
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._raw.is_closing()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    @property
    def established(self) -> bool:
        return self._stream.established

    # -- internals ----------------------------------------------------------------------

    def _flush(self) -> None:
        out = self._stream.take_outgoing()
        if out:
            self._raw.write(out)

    def _guard(self, step: Callable[..., None], *args: Any) -> bool:
        """Run one stream step and send what it produced; on a TLS failure report it, return False."""
        try:
            step(*args)
        except TlsError as exc:
            self._fail(str(exc))
            return False
        self._flush()
        return True

    def _fail(self, reason: str) -> None:
        if self._failed:
            return
        self._failed = True
        in_handshake = not self._stream.established
        what = "TLS handshake with" if in_handshake else "TLS connection to"
        log.warning("%s %s failed: %s", what, self._label, reason)
        # The alert telling the peer why, if OpenSSL produced one.
        self._flush()
        if in_handshake and self._on_handshake_failed is not None:
            self._on_handshake_failed(reason)
        self._closing = True
        self._raw.close()
