"""Parameters read off the front of a fuzz input.

libFuzzer and hypothesis both hand a target one byte string. Targets that need a few choices
(a chunking seed, a pooler mode, which table to use) take them from the first bytes and treat
the rest as the payload, like libFuzzer's FuzzedDataProvider but in pure Python, so that every
engine, the tests and ``python -m fuzz repro`` decode an input the same way. Reading past the
end yields zeros: every byte string is a valid input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class ByteSource:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            return 0
        self.pos = pos + 1
        return self.data[pos]

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def text(self) -> str:
        """The rest as text the way a protocol field would carry it: UTF-8 (bad bytes replaced)
        without NULs, since every SQL text and name reaches the proxy as a C string."""
        return self.rest().decode("utf-8", "replace").replace("\0", " ")
