"""Shared binary primitives: precompiled structs and string encoding for builders.

Builders raise ``ValueError`` (a programming error), never ProtocolViolation:
the proxy only builds messages from values it controls or already validated.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

I16 = struct.Struct("!h")
U16 = struct.Struct("!H")
I32 = struct.Struct("!i")
U32 = struct.Struct("!I")
# Type byte + length: the framing header every typed message starts with.
HEADER: Final = struct.Struct("!BI")

Buffer = bytes | bytearray | memoryview


def cstr(value: str | bytes) -> bytes:
    """Encode a NUL-terminated protocol string; an embedded NUL would desynchronise the peer."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if b"\0" in raw:
        raise ValueError(f"protocol strings cannot contain NUL bytes: {value!r}")
    return raw + b"\0"


def message(type_byte: int, parts: Iterable[bytes]) -> bytes:
    """Join body parts behind a header with a single copy of the payload."""
    chunks = [b""]
    chunks.extend(parts)
    size = 4
    for chunk in chunks:
        size += len(chunk)
    chunks[0] = HEADER.pack(type_byte, size)
    return b"".join(chunks)


def message1(type_byte: int, body: bytes) -> bytes:
    return HEADER.pack(type_byte, len(body) + 4) + body


def u32_at(raw: bytes, pos: int) -> int:
    """The big-endian unsigned 32-bit integer at ``pos``: a message length. Over ``bytes``
    compiled code reads it natively, where ``int.from_bytes`` of a slice makes two objects."""
    return (raw[pos] << 24) | (raw[pos + 1] << 16) | (raw[pos + 2] << 8) | raw[pos + 3]


def as_bytes(buf: Buffer) -> bytes:
    """Normalise input once so slices are immutable bytes and ``find`` is available."""
    return buf if type(buf) is bytes else bytes(buf)
