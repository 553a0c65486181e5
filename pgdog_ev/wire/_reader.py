"""Bounds-checked cursor over a message body.

All parsers go through this so that truncated or garbage input always surfaces
as ProtocolViolation (never IndexError, struct.error or UnicodeDecodeError),
which matters because bodies come straight from untrusted peers.
"""

from __future__ import annotations

from typing import NoReturn

from ._codec import I16, I32, U16, U32, Buffer, as_bytes
from .errors import ProtocolViolation


class Reader:
    __slots__ = ("buf", "end", "pos", "what")

    def __init__(self, buf: Buffer, what: str) -> None:
        self.buf: bytes = as_bytes(buf)
        self.pos = 0
        self.end = len(self.buf)
        self.what = what

    def fail(self, detail: str) -> NoReturn:
        raise ProtocolViolation(f"invalid {self.what} message: {detail}")

    def short(self) -> NoReturn:
        self.fail("insufficient data left in message")

    def remaining(self) -> int:
        return self.end - self.pos

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            self.short()
        self.pos = pos + 1
        return self.buf[pos]

    def i16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            self.short()
        self.pos = pos + 2
        return I16.unpack_from(self.buf, pos)[0]

    def u16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            self.short()
        self.pos = pos + 2
        return U16.unpack_from(self.buf, pos)[0]

    def i32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            self.short()
        self.pos = pos + 4
        return I32.unpack_from(self.buf, pos)[0]

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            self.short()
        self.pos = pos + 4
        return U32.unpack_from(self.buf, pos)[0]

    def i16_array(self, count: int) -> tuple[int, ...]:
        pos = self.pos
        stop = pos + 2 * count
        if stop > self.end:
            self.short()
        self.pos = stop
        return tuple(I16.unpack_from(self.buf, p)[0] for p in range(pos, stop, 2))

    def u32_array(self, count: int) -> tuple[int, ...]:
        pos = self.pos
        stop = pos + 4 * count
        if stop > self.end:
            self.short()
        self.pos = stop
        return tuple(U32.unpack_from(self.buf, p)[0] for p in range(pos, stop, 4))

    def take(self, n: int) -> bytes:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            self.short()
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def value(self) -> bytes | None:
        """An Int32 length (-1 = NULL) followed by that many bytes."""
        n = self.i32()
        if n == -1:
            return None
        return self.take(n)

    def rest(self) -> bytes:
        pos = self.pos
        self.pos = self.end
        return self.buf[pos:]

    def cstr_bytes(self) -> bytes:
        pos = self.pos
        nul = self.buf.find(b"\0", pos)
        if nul < 0:
            self.fail("missing string terminator")
        self.pos = nul + 1
        return self.buf[pos:nul]

    def cstr(self) -> str:
        raw = self.cstr_bytes()
        try:
            return raw.decode()
        except UnicodeDecodeError:
            self.fail("invalid UTF-8 in string")

    def finish(self) -> None:
        if self.pos != self.end:
            self.fail("unexpected trailing data")


def decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ProtocolViolation(f"invalid {what} message: invalid UTF-8 in string") from None
