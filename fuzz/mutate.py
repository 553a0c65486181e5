"""Byte-level mutations of seed inputs, as a hypothesis strategy.

The hypothesis engine has no coverage feedback, so it leans on the seeds: most examples are a
real captured stream or statement with a few edits (bit flips, interesting lengths written over
a header, inserted and deleted runs, splices from another seed, truncation). Each edit is drawn
as plain integers, so hypothesis shrinks a failure towards fewer, smaller edits of a shorter seed.
"""

from __future__ import annotations

from hypothesis import strategies as st

# Values a length or count field most often gets wrong.
INTERESTING = (0, 1, 3, 4, 5, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
TOKENS = (b"\0", b"\0\0", b"\xff\xff\xff\xff", b"'", b'"', b"$$", b";", b"/*", b"*/", b"--", b"(", b"\\",
          b"=", b"\n", b"\xc3", b"\xed\xa0\x80")
EDITS = 10

Edit = tuple[int, int, int]


def apply(data: bytes, edits: list[Edit], other: bytes) -> bytes:
    buf = bytearray(data)
    for op, where, value in edits:
        n = len(buf)
        pos = where % (n + 1)
        if op == 0 and n:
            buf[pos % n] ^= 1 << (value % 8)
        elif op == 1 and n:
            buf[pos % n] = value & 0xFF
        elif op == 2:
            buf[pos:pos] = bytes((value & 0xFF,)) * (1 + (value >> 8) % 16)
        elif op == 3:
            del buf[pos : pos + 1 + value % 16]
        elif op == 4:
            end = min(n, pos + 1 + value % 64)
            buf[end:end] = buf[pos:end]
        elif op == 5:
            buf[pos : pos + 4] = INTERESTING[value % len(INTERESTING)].to_bytes(4, "big")
        elif op == 6:
            start = value % (len(other) + 1)
            buf[pos:pos] = other[start : start + 1 + (value >> 4) % 64]
        elif op == 7:
            del buf[pos:]
        elif op == 8:
            buf[pos:pos] = TOKENS[value % len(TOKENS)]
        else:
            end = min(n, pos + 2 + value % 16)
            buf[pos:end] = buf[pos:end][::-1]
    return bytes(buf)


def inputs(seeds: list[bytes], max_size: int) -> st.SearchStrategy[bytes]:
    """Mutated seeds, and (less often) bytes from nothing."""
    generated = st.binary(max_size=min(max_size, 512))
    if not seeds:
        return generated
    edit = st.tuples(st.integers(0, EDITS - 1), st.integers(0, 1 << 16), st.integers(0, 1 << 16))
    pool = st.sampled_from(seeds)
    mutated = st.builds(apply, pool, st.lists(edit, max_size=6), pool).map(lambda b: b[:max_size])
    return st.one_of(mutated, mutated, mutated, generated)
