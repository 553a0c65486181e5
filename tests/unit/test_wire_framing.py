from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgdog_ev.wire import errors
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import HEADER, Framer, build

LIMIT = 1 << 20


def test_build_known_vectors() -> None:
    assert build(ord("Z"), b"I") == b"Z\x00\x00\x00\x05I"
    assert build(ord("S"), b"") == b"S\x00\x00\x00\x04"
    assert HEADER.pack(ord("Q"), 9) == b"Q\x00\x00\x00\x09"


def test_single_feed_multiple_messages() -> None:
    f = Framer(LIMIT)
    stream = build(ord("Q"), b"select 1\0") + build(ord("S"), b"") + build(ord("d"), b"xyz")
    assert f.feed(stream) == [(ord("Q"), b"select 1\0"), (ord("S"), b""), (ord("d"), b"xyz")]
    assert f.pending() == 0


def test_partial_header_and_body_are_buffered() -> None:
    f = Framer(LIMIT)
    msg = build(ord("Q"), b"select 1\0")
    assert f.feed(msg[:2]) == []
    assert f.pending() == 2
    assert f.feed(msg[2:7]) == []
    assert f.pending() == 7
    assert f.feed(msg[7:] + msg[:1]) == [(ord("Q"), b"select 1\0")]
    assert f.pending() == 1
    assert f.feed(msg[1:]) == [(ord("Q"), b"select 1\0")]
    assert f.pending() == 0


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_any_buffer(kind: type) -> None:
    msg = build(ord("Q"), b"x\0")
    f = Framer(LIMIT)
    assert f.feed(kind(msg + msg[:3])) == [(ord("Q"), b"x\0")]
    assert f.feed(kind(msg[3:])) == [(ord("Q"), b"x\0")]
    out = f.feed(kind(msg))
    assert out == [(ord("Q"), b"x\0")]
    assert type(out[0][1]) is bytes


def test_caller_buffer_mutation_does_not_leak_in() -> None:
    f = Framer(LIMIT)
    data = bytearray(build(ord("Q"), b"abc\0"))
    assert f.feed(data[:6]) == []
    tail = bytearray(data[6:])
    out = f.feed(tail)
    tail[:] = b"\xff" * len(tail)
    assert out == [(ord("Q"), b"abc\0")]


def test_oversized_rejected_from_header_alone() -> None:
    f = Framer(LIMIT)
    with pytest.raises(ProtocolViolation) as info:
        f.feed(b"Q" + (1 << 30).to_bytes(4, "big"))
    assert info.value.sqlstate == errors.PROGRAM_LIMIT_EXCEEDED
    assert str(info.value) == f"message of {(1 << 30) - 4} bytes exceeds the limit of {LIMIT}"


def test_oversized_rejected_when_header_completes_across_feeds() -> None:
    f = Framer(10)
    assert f.feed(b"Q\x00") == []
    with pytest.raises(ProtocolViolation) as info:
        f.feed(b"\x00\x00\x0f")
    assert info.value.sqlstate == errors.PROGRAM_LIMIT_EXCEEDED


def test_limit_is_inclusive() -> None:
    f = Framer(3)
    assert f.feed(build(ord("d"), b"abc")) == [(ord("d"), b"abc")]
    with pytest.raises(ProtocolViolation):
        Framer(3).feed(build(ord("d"), b"abcd"))


def test_oversized_after_valid_message_in_same_feed() -> None:
    f = Framer(10)
    with pytest.raises(ProtocolViolation):
        f.feed(build(ord("S"), b"") + b"d\xff\xff\xff\xff")


@pytest.mark.parametrize("length", [0, 1, 3])
def test_invalid_length(length: int) -> None:
    f = Framer(LIMIT)
    with pytest.raises(ProtocolViolation, match="invalid message length") as info:
        f.feed(b"Q" + length.to_bytes(4, "big"))
    assert info.value.sqlstate == errors.PROTOCOL_VIOLATION


def test_broken_framer_stays_broken() -> None:
    f = Framer(LIMIT)
    with pytest.raises(ProtocolViolation):
        f.feed(b"Q\x00\x00\x00\x00")
    with pytest.raises(ProtocolViolation):
        f.feed(build(ord("S"), b""))


_messages = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=300)),
    max_size=20,
)


@given(
    _messages, st.lists(st.integers(0, 10_000), max_size=30), st.sampled_from([bytes, bytearray, memoryview])
)
def test_arbitrary_chunking(messages: list[tuple[int, bytes]], cuts: list[int], kind: type) -> None:
    stream = b"".join(build(t, b) for t, b in messages)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    f = Framer(300)
    out: list[tuple[int, bytes]] = []
    for a, b in pairwise(points):
        out.extend(f.feed(kind(stream[a:b])))
        assert f.pending() == b - sum(len(body) + 5 for _, body in out)
    assert out == messages
    assert f.pending() == 0


@given(st.binary(max_size=200), st.integers(1, 50))
def test_garbage_raises_only_protocol_violation(data: bytes, step: int) -> None:
    f = Framer(64)
    try:
        for i in range(0, len(data), step):
            f.feed(data[i : i + step])
    except ProtocolViolation:
        pass
