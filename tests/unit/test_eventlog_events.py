"""Tests for state.events: record encoding, ring, flush, digest, header."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.events import (
    HEADER_MAGIC,
    RECORD,
    RECORD_SIZE,
    EventLog,
    Kind,
    LogHeader,
    Machine,
    Record,
    decode_records,
    encode_records,
    ns_of,
)


def _expected(i: int) -> Record:
    return Record(i, i * 1_000_000, Kind.TRANSITION, Machine.CLIENT, i % 7, i % 5, (i + 1) % 5, -i, i * 3)


def _emit_n(log: EventLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        r = _expected(i)
        log.emit(r.now_ns / 1e9, r.kind, r.machine, r.id, r.frm, r.to, r.a, r.b)


def test_record_layout():
    assert RECORD.format == "<QqHHQHHqq"
    assert RECORD_SIZE == 48
    assert Record._fields == ("seq", "now_ns", "kind", "machine", "id", "frm", "to", "a", "b")


def test_encode_decode_round_trip():
    recs = [
        Record(0, 0, 1, 0, 0, 0, 0, 0, 0),
        Record(1, -5, 0xFFFF, 0xFFFF, (1 << 64) - 1, 0xFFFF, 1, -(1 << 63), (1 << 63) - 1),
        Record(2, 123_456_789, 99, 42, 7, 3, 4, -1, 1),  # unknown kind/machine still decode
    ]
    data = encode_records(recs)
    assert len(data) == 3 * RECORD_SIZE
    assert decode_records(data) == recs
    assert decode_records(b"") == []
    with pytest.raises(ValueError, match="multiple"):
        decode_records(data[:-1])


def test_emit_fields_and_seq():
    log = EventLog(capacity=16)
    assert log.seq == 0
    log.emit(1.5, Kind.CHECKOUT, Machine.POOL, 3, a=17, b=4)
    log.emit(2.25, Kind.TRANSITION, Machine.CLIENT, 17, 1, 2, 5, 4)
    assert log.seq == 2
    assert log.records() == [
        Record(0, 1_500_000_000, 8, 3, 3, 0, 0, 17, 4),
        Record(1, 2_250_000_000, 1, 1, 17, 1, 2, 5, 4),
    ]
    assert log.tail(1) == [Record(1, 2_250_000_000, 1, 1, 17, 1, 2, 5, 4)]
    assert log.tail(0) == []
    assert log.tail(100) == log.records()
    assert log.clamped == 0


@pytest.mark.parametrize("words", [False, True])
def test_out_of_range_values_are_clamped_not_raised(words):
    log = EventLog(capacity=4, words=words)
    log.emit(1.0, 1, 2, -1, frm=70000, to=-5, a=1 << 70, b=-(1 << 70))
    log.emit(float("nan"), 1, 1, 1)
    assert log.clamped == 2
    r, r2 = log.records()
    assert r == Record(0, 1_000_000_000, 1, 2, 0, 0xFFFF, 0, (1 << 63) - 1, -(1 << 63))
    assert r2.now_ns == 0 and r2.seq == 1
    assert log.seq == 2


def test_no_sink_keeps_last_capacity():
    log = EventLog(capacity=8)
    _emit_n(log, 3)
    assert [r.seq for r in log.records()] == [0, 1, 2]
    _emit_n(log, 97, start=3)
    assert log.seq == 100
    assert log.records() == [_expected(i) for i in range(92, 100)]
    assert log.tail(3) == [_expected(i) for i in range(97, 100)]
    assert log.dump() == encode_records(_expected(i) for i in range(92, 100))


@pytest.mark.parametrize("words", [False, True])
@pytest.mark.parametrize("capacity", [1, 3, 8])
def test_sink_receives_everything_in_order_exactly_once(capacity, words):
    chunks: list[bytes] = []
    calls_per_flush: list[int] = []

    def sink(view: memoryview) -> None:
        assert isinstance(view, memoryview)
        chunks.append(bytes(view))

    log = EventLog(capacity=capacity, sink=sink, words=words)
    total = 0
    for step in range(200):
        n = (step * 7) % 13  # varied batch sizes, many wraps
        _emit_n(log, n, start=total)
        total += n
        if step % 3 == 0:
            before = len(chunks)
            flushed = log.flush()
            calls_per_flush.append(len(chunks) - before)
            assert log.pending == 0
            assert flushed >= 0
    log.flush()
    assert all(c <= 2 for c in calls_per_flush)
    data = b"".join(chunks)
    assert decode_records(data) == [_expected(i) for i in range(total)]
    assert log.flush() == 0


# Values around every field's edges, and past them (those take the clamping path).
_EDGES = st.sampled_from([0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                          1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64, -1, -(1 << 63), -(1 << 64)])  # fmt: skip
_FIELD = st.one_of(_EDGES, st.integers(min_value=-(1 << 65), max_value=1 << 65), st.integers(0, 0xFFFF))
_NOW = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.sampled_from([0, 3, float("nan"), float("inf"), 1e300, -1.5]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NOW, *([_FIELD] * 7)), min_size=1, max_size=12))
def test_word_ring_and_struct_ring_write_the_same_bytes(emits):
    """The two forms of the ring (module docstring) are twins: same records, same clamping."""
    logs = [EventLog(capacity=5, words=False), EventLog(capacity=5, words=True)]
    for log in logs:
        for now, kind, machine, ident, frm, to, a, b in emits:
            log.emit(now, kind, machine, ident, frm, to, a, b)
    plain, words = logs
    assert words.dump() == plain.dump()
    assert words.digest() == plain.digest()
    assert words.clamped == plain.clamped
    assert len(words.dump()) == min(len(emits), 5) * RECORD_SIZE


def test_flush_returns_count_and_splits_at_wrap():
    chunks: list[bytes] = []
    log = EventLog(capacity=4, sink=lambda v: chunks.append(bytes(v)))
    _emit_n(log, 3)
    assert log.flush() == 3
    _emit_n(log, 3, start=3)  # occupies slots 3, 0, 1 -> wraps
    assert log.flush() == 3
    assert [len(c) // RECORD_SIZE for c in chunks] == [3, 1, 2]
    assert decode_records(b"".join(chunks)) == [_expected(i) for i in range(6)]


def test_digest_matches_full_encoding_regardless_of_flushing():
    n = 50
    expected = hashlib.sha256(encode_records(_expected(i) for i in range(n))).hexdigest()

    a = EventLog(capacity=4)
    _emit_n(a, n)
    b = EventLog(capacity=1024)
    _emit_n(b, n)
    c = EventLog(capacity=5, sink=lambda v: None)
    for i in range(n):
        _emit_n(c, 1, start=i)
        if i % 4 == 0:
            c.flush()
    assert a.digest() == b.digest() == c.digest() == expected
    assert a.digest() == expected  # digest() does not mutate

    d = EventLog(capacity=4)
    _emit_n(d, n - 1)
    d.emit(999.0, 1, 1, 1)
    assert d.digest() != expected
    assert EventLog().digest() == hashlib.sha256(b"").hexdigest()


def test_disabled_log_is_noop():
    chunks: list[bytes] = []
    log = EventLog(capacity=4, sink=lambda v: chunks.append(bytes(v)))
    log.enabled = False
    assert not log.enabled
    for _ in range(10):
        log.emit(1.0, 1, 1, 1, 2, 3, 4, 5)
    assert log.seq == 0
    assert log.records() == []
    assert log.flush() == 0
    assert chunks == []
    log.enabled = True
    log.emit(1.0, 1, 1, 1)
    assert log.seq == 1


def test_header_round_trip():
    h = LogHeader(
        code_version="0.1.0",
        config_digest="abc",
        seed=42,
        clock_epoch_ns=1_700_000_000_000_000_000,
        monotonic_start_ns=5_000,
        pid=1234,
        hostname="h\u00e9",
    )
    data = h.encode()
    assert data.startswith(HEADER_MAGIC)
    (length,) = struct.unpack_from("<I", data, 8)
    assert len(data) == 12 + length
    decoded, used = LogHeader.decode(data + b"trailing")
    assert decoded == h
    assert used == len(data)
    assert h.format_version == 1


def test_header_errors():
    good = LogHeader().encode()
    with pytest.raises(ValueError, match="bad magic"):
        LogHeader.decode(b"NOTPGDOG" + good[8:])
    with pytest.raises(ValueError, match="too short"):
        LogHeader.decode(b"PGD")
    with pytest.raises(ValueError, match="truncated"):
        LogHeader.decode(good[:-2])
    fields = json.loads(good[12:])
    fields["format_version"] = 2
    payload = json.dumps(fields).encode()
    with pytest.raises(ValueError, match="version 2"):
        LogHeader.decode(HEADER_MAGIC + struct.pack("<I", len(payload)) + payload)
    junk = b"{not json"
    with pytest.raises(ValueError, match="corrupt"):
        LogHeader.decode(HEADER_MAGIC + struct.pack("<I", len(junk)) + junk)


@settings(max_examples=2000)
@given(st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.integers(min_value=-10**9, max_value=10**9).map(lambda k: k / 2e9),  # exact halves of a ns
    st.integers(min_value=0, max_value=10**12),
))
def test_ns_of_is_round_half_even(now: float) -> None:
    """The clock reading's nanoseconds as round(now * 1e9) gives them, compiled or not."""
    assert ns_of(now) == round(now * 1e9)
