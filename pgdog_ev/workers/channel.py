"""The private channel between the supervisor and one worker: JSON messages over a socketpair.

Each worker inherits one end of an AF_UNIX stream socketpair made by the supervisor, so the
channel is private by construction (no path in the filesystem, nothing another user could
connect to) and its end of file says, reliably, that the other process is gone. Both ends run it
on their reactor like any other connection: non-blocking, buffered, never waiting on the peer.

A message is a 4-byte big-endian length and that many bytes of UTF-8 JSON (an object with an
``op``). JSON rather than pickle: the peer is our own code, but a channel that can only carry
data cannot be talked into running anything. The messages are small (a cancel key, a command,
a SHOW result); the cap only stops a corrupted length from eating memory.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable
from typing import Any

from loop.protocol import Protocol

log = logging.getLogger("pgdog_ev.workers")

_LENGTH = struct.Struct(">I")
#: Largest message accepted (a SHOW CLIENTS of a very busy worker is a few MB).
MAX_MESSAGE = 256 * 1024 * 1024

Message = dict[str, Any]


class ChannelError(ValueError):
    """The peer sent something that is not a message: the channel is closed."""


def encode(message: Message) -> bytes:
    # ASCII escapes: a string holding a lone surrogate (valid JSON: "\ud800") still encodes.
    body = json.dumps(message, separators=(",", ":")).encode("ascii")
    return _LENGTH.pack(len(body)) + body


class Decoder:
    """Bytes in, whole messages out, whatever the chunking.

    A frame that is not a message stops the decoder for good (``error``), but the messages
    before it are still handed out: what reaches the peer must not depend on where the reads
    happened to cut the stream."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: ChannelError | None = None

    def feed(self, data: bytes | memoryview) -> list[Message]:
        """The messages completed by ``data``; after a bad frame, none ever again."""
        if self.error is not None:
            return []
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        start = 0
        try:
            while len(buf) - start >= 4:
                (length,) = _LENGTH.unpack_from(buf, start)
                if length > MAX_MESSAGE:
                    raise ChannelError(f"message of {length} bytes is over the limit")
                end = start + 4 + length
                if len(buf) < end:
                    break
                out.append(_message(bytes(buf[start + 4:end])))
                start = end
        except ChannelError as exc:
            self.error = exc
            buf.clear()
            return out
        if start:
            del buf[:start]
        return out


def _message(body: bytes) -> Message:
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: a few thousand nested brackets, which the parser follows by recursion.
        raise ChannelError(f"undecodable message: {type(exc).__name__}: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ChannelError("a message must be an object with an op")
    return message


class Channel(Protocol):
    """One end of a channel on a reactor: ``on_message(msg)`` per message, ``on_closed()`` once."""

    def __init__(self, name: str, on_message: Callable[[Message], None], on_closed: Callable[[], None]) -> None:
        self.name = name
        self.on_message = on_message
        self.on_closed = on_closed
        self.transport: Any = None
        self._decoder = Decoder()
        self._closed = False

    @property
    def open(self) -> bool:
        return self.transport is not None and not self._closed

    def send(self, message: Message) -> bool:
        """Queue ``message``; False when the channel is already closed (the peer is gone)."""
        if not self.open:
            return False
        self.transport.write(encode(message))
        return True

    def close(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.close()

    # -- the transport's callbacks ------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: memoryview) -> None:
        decoder = self._decoder
        for message in decoder.feed(data):
            if self._closed:
                return
            try:
                self.on_message(message)
            except Exception:
                # A message its handler cannot take (a field missing or of the wrong type) is a
                # bug on one side; the messages after it in this read must still arrive.
                log.exception("%s: cannot handle message %r; dropped", self.name, message.get("op"))
        if decoder.error is not None and not self._closed:
            log.error("%s: %s; closing the channel", self.name, decoder.error)
            self.transport.close()  # after the replies to the messages before the bad frame

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.on_closed()
