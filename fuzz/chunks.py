"""Cutting one byte stream into the reads a socket might deliver.

TCP keeps no message boundaries: a decoder must give the same answer whether a stream arrives
whole, a byte at a time or in any mix. Each target derives one chunking from its input (so a
crash reproduces exactly) and compares it with the whole stream and, for short streams, with
single bytes.
"""

from __future__ import annotations

import random

# Byte-at-a-time feeding costs a Python call per byte: only for streams this short.
SINGLE_BYTES_UP_TO = 256


def split(data: bytes, seed: int) -> list[bytes]:
    """Chunks of ``data`` whose sizes mix 1-byte, header-sized, small and large reads."""
    if not data:
        return []
    rng = random.Random(seed)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        kind = rng.randrange(8)
        if kind == 0:
            size = 1
        elif kind == 1:
            size = rng.randint(2, 6)  # around a 5-byte header
        elif kind < 5:
            size = rng.randint(1, 64)
        else:
            size = rng.randint(64, 4096)
        out.append(data[pos : pos + size])
        pos += size
    return out


def chunkings(data: bytes, seed: int) -> list[list[bytes]]:
    """The whole stream, the seeded chunking, and single bytes when the stream is short."""
    ways = [[data] if data else [], split(data, seed)]
    if len(data) <= SINGLE_BYTES_UP_TO:
        ways.append([data[i : i + 1] for i in range(len(data))])
    return ways
