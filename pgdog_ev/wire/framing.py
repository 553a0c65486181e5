"""Splitting a byte stream into typed messages (type byte + Int32 length + body).

The length is validated the moment its header is visible, before any body
byte is buffered, so a peer claiming a 1 GB message costs us nothing.
"""

from __future__ import annotations

from ._codec import HEADER, Buffer, message1
from .errors import PROGRAM_LIMIT_EXCEEDED, ProtocolViolation

__all__ = ["HEADER", "Framer", "build"]

_unpack_header = HEADER.unpack_from


def _check_length(length: int, limit: int) -> None:
    if length < 4:
        raise ProtocolViolation("invalid message length")
    if length - 4 > limit:
        raise ProtocolViolation(
            f"message of {length - 4} bytes exceeds the limit of {limit}", PROGRAM_LIMIT_EXCEEDED
        )


class Framer:
    """Incremental decoder for one direction of one connection.

    After a ProtocolViolation the stream position is unknown, so the framer
    refuses further input; the caller is expected to close the connection.
    """

    __slots__ = ("_broken", "_buf", "_checked", "max_message_size")

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        # Whether the header at the start of _buf was already validated, so a
        # slowly trickling body does not re-check it on every feed.
        self._checked = False
        self._broken = False

    def pending(self) -> int:
        return len(self._buf)

    def take_pending(self) -> bytes:
        """Hand over the buffered incomplete tail, e.g. when another reader takes the stream over."""
        out = bytes(self._buf)
        self._buf.clear()
        self._checked = False
        return out

    def feed(self, data: Buffer) -> list[tuple[int, bytes]]:
        if self._broken:
            raise ProtocolViolation("message stream is already out of sync")
        buf = self._buf
        if buf:
            buf += data
            src: Buffer = buf
        else:
            # Fast path: nothing pending, parse straight from the caller's buffer
            # and copy only the incomplete tail.
            src = data
        out: list[tuple[int, bytes]] = []
        append = out.append
        limit = self.max_message_size
        pos = 0
        with memoryview(src) as view:
            n = len(view)
            try:
                while n - pos >= 5:
                    type_byte, length = _unpack_header(view, pos)
                    if pos or not self._checked:
                        _check_length(length, limit)
                    end = pos + 1 + length
                    if end > n:
                        break
                    append((type_byte, view[pos + 5 : end].tobytes()))
                    pos = end
            except ProtocolViolation:
                self._broken = True
                raise
            if src is not buf and pos < n:
                buf += view[pos:]
        if src is buf and pos:
            del buf[:pos]
        # The loop validates every header it sees, including the one it stops at.
        self._checked = len(buf) >= 5
        return out


def build(type_byte: int, body: bytes) -> bytes:
    return message1(type_byte, body)
