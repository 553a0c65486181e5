"""Event records and the in-memory event log (flight recorder).

Every state machine calls :meth:`EventLog.emit` on each state transition and the daemon records
the inputs that matter for re-execution (accepts, connect results, read sizes and chunk
boundaries, timer firings, clock readings, entropy draws).  A record is a fixed 48-byte struct
(:data:`RECORD`) written into a preallocated ring.

This module is sans-IO: it never touches files, the clock or sockets.  Persistence goes through an
injected ``sink`` callable that receives ``memoryview`` slices of the ring (the file writer lives
in ``pgdog_ev.eventlog.filesink``).  A sink must consume (copy/write) the view before returning,
because the ring memory is reused afterwards, and it must not raise: it may be called from inside
``emit`` when the ring is full.

Two ways to write a record, chosen per log (``words``), that produce the same bytes:

* Compiled (pgdog_ev/native.py) on a little-endian host, the ring is a ``librt`` ``vec[i64]`` and a
  record is six stores of 64-bit words, the u16/u64 fields combined into two of them with native
  integer arithmetic.  About 17 ns per record: ``struct.pack_into`` converts each of nine
  arguments to an object and back, 130 ns even compiled, and a transaction emits seven records.
* Interpreted, or on a big-endian host, the ring is a ``bytearray`` and a record is one
  ``struct.pack_into`` (about 0.2 µs; the six stores cost twice that when interpreted).

Either way there are no per-record objects beyond transient ints.

Digest: a running ``hashlib.sha256`` is fed every record, in order, at the moment it is flushed
(to the sink, or, without a sink, just before the ring would overwrite it).  :meth:`EventLog.digest`
returns that hash extended with the records not yet flushed, so it equals
``sha256(encode(all records ever emitted)).hexdigest()`` no matter when flushes happened.  Two
simulation runs that emitted byte-identical logs have identical digests.

Value ranges: ``kind``, ``machine``, ``frm``, ``to`` are u16, ``id`` is u64, ``a``/``b`` are signed
64-bit, ``now`` is seconds (float or int) stored as ``round(now * 1e9)`` nanoseconds.  Callers should
pass in-range ints (IntEnum members are fine).  Out-of-range or non-integer values do not raise:
a slow path clamps them into range (non-numbers become 0) and increments :attr:`EventLog.clamped`,
which tests and the simulator can assert to be zero.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from enum import IntEnum, unique
from typing import Final, NamedTuple

from librt.vecs import vec
from mypy_extensions import i64

__all__ = [
    "HEADER_MAGIC",
    "LOG_FORMAT_VERSION",
    "RECORD",
    "RECORD_SIZE",
    "EventLog",
    "Kind",
    "LogHeader",
    "Machine",
    "Record",
    "decode_records",
    "encode_records",
]

RECORD: Final = struct.Struct("<QqHHQHHqq")
RECORD_SIZE: Final = RECORD.size  # 48
assert RECORD_SIZE == 48

HEADER_MAGIC: Final = b"PGDOGEV\x00"
LOG_FORMAT_VERSION: Final = 1
_HEADER_PREFIX: Final = struct.Struct("<I")

# A record seen as six 64-bit words in host order: what the compiled ring stores, so that its
# memory holds exactly RECORD's little-endian bytes.
_WORDS: Final = struct.Struct("=6q")
_WORDS_PER_RECORD: Final = 6


def _probe() -> None:
    """Compiled by mypyc, a module's functions are builtins; interpreted, Python functions."""


_COMPILED: Final = not isinstance(_probe, types.FunctionType)
# The word ring writes host-order words, and mypyc's native ints pay off only compiled.
WORDS_BY_DEFAULT: Final = _COMPILED and sys.byteorder == "little"

_U16: Final = (0, 0xFFFF)
_U64: Final = (0, 0xFFFF_FFFF_FFFF_FFFF)
_I64: Final = (-(1 << 63), (1 << 63) - 1)


def ns_of(now: float) -> int:
    """``round(now * 1e9)`` (half to even), in arithmetic compiled code does natively: round()
    looked float.__round__ up and made two objects for every new clock reading."""
    x = now * 1e9
    n = int(x)
    if x < n:
        n -= 1  # floor
    frac = x - n
    if frac > 0.5 or (frac == 0.5 and n & 1):
        n += 1
    return n


@unique
class Machine(IntEnum):
    DAEMON = 0
    CLIENT = 1
    SERVER = 2
    POOL = 3
    LB = 4
    MONITOR = 5
    TWOPC = 6
    LISTENER = 7
    ADMIN = 8
    SIM = 9  # the simulator's own notes: faults injected, phases of a run


@unique
class Kind(IntEnum):
    """Record kinds.  Unknown values still decode (a Record holds plain ints)."""

    TRANSITION = 1  # frm/to = state values of the machine; a = reason code; b = related id
    ACCEPT = 2  # a = listener port
    CONNECT = 3  # a = 0 ok / errno
    READ = 4  # a = byte count, b = chunk index
    TIMER = 5  # a = timer kind
    CLOCK = 6
    ENTROPY = 7  # a = number of bytes
    CHECKOUT = 8  # id = pool, a = client id, b = server id
    CHECKIN = 9
    ENQUEUE = 10
    DEQUEUE = 11
    TIMEOUT = 12
    AUTH_FAIL = 13
    RELOAD = 14
    SIGNAL = 15
    CLOSE = 16
    ERROR = 17
    ROUTE = 18
    BAN = 19
    UNBAN = 20
    ROLE = 21
    NOTE = 22


class Record(NamedTuple):
    seq: int
    now_ns: int
    kind: int
    machine: int
    id: int
    frm: int
    to: int
    a: int
    b: int


_make_record = Record._make


def encode_records(records: Iterable[Record | tuple]) -> bytes:
    """Pack records (or 9-tuples in field order) into their binary form."""
    out = bytearray()
    pack = RECORD.pack
    for rec in records:
        out += pack(*rec)
    return bytes(out)


def decode_records(data: bytes | bytearray | memoryview) -> list[Record]:
    """Unpack a whole number of records; raises ValueError on a partial record."""
    if len(data) % RECORD_SIZE:
        raise ValueError(
            f"event data length {len(data)} is not a multiple of the {RECORD_SIZE}-byte record size"
        )
    return list(map(_make_record, RECORD.iter_unpack(data)))


def _fit(value: object, bounds: tuple[int, int]) -> int:
    try:
        v = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    lo, hi = bounds
    return lo if v < lo else hi if v > hi else v


class EventLog:
    """Preallocated ring of fixed-size event records.

    * ``seq``: the next sequence number (the first record has seq 0); also the count ever emitted.
    * With a ``sink``: when the ring is full of unflushed records, ``emit`` flushes first, so nothing
      is lost.  Call :meth:`flush` periodically (e.g. once per loop iteration) to batch writes.
    * Without a sink: the ring keeps the last ``capacity`` records (flight recorder).
    * ``enabled = False`` turns ``emit`` into a no-op.
    """

    def __init__(
        self,
        capacity: int = 1 << 16,
        sink: Callable[[memoryview], None] | None = None,
        words: bool | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("EventLog capacity must be >= 1")
        self.capacity = capacity
        self.sink = sink
        self.seq = 0
        self.clamped = 0
        self._cap = capacity
        # ``words``: None picks the faster form for this build (see the module docstring); tests
        # pass True or False to compare the two byte for byte.
        self._words = WORDS_BY_DEFAULT if words is None else bool(words)
        if self._words and sys.byteorder != "little":
            raise ValueError("the word ring needs a little-endian host")
        if self._words:
            self._ring: vec[i64] = vec[i64]([0] * (capacity * _WORDS_PER_RECORD))
            self._buf = bytearray()
            self._view = memoryview(self._ring).cast("B")
        else:
            self._ring = vec[i64]()
            self._buf = bytearray(capacity * RECORD_SIZE)
            self._view = memoryview(self._buf)
        self._pack = RECORD.pack_into
        self._flushed = 0  # seq of the first record not yet flushed (hashed / handed to sink)
        self._next_flush = capacity  # emitting this seq would overwrite an unflushed record
        self._hash = hashlib.sha256()
        self._enabled = True
        # The last ``now`` emit converted to nanoseconds, and the result: one wakeup emits several
        # records at the same time. A float, not the object: compiled, comparing costs no boxing.
        self._now = math.nan
        self._ns = 0

    # -- hot path -------------------------------------------------------------------------------
    def emit(
        self,
        now: float,
        kind: int,
        machine: int,
        id: int,
        frm: int = 0,
        to: int = 0,
        a: int = 0,
        b: int = 0,
    ) -> None:
        if not self._enabled:
            return
        seq = self.seq
        if seq == self._next_flush:
            self.flush()
        # Values beyond 64 bits raise when converted to native ints (compiled: ValueError, at the
        # assignment) or stored (interpreted: OverflowError); the slow path rewrites the record.
        try:
            if now != self._now:
                self._ns = ns_of(now)
                self._now = now
            if not self._words:
                self._pack(self._buf, (seq % self._cap) * 48, seq, self._ns, kind, machine, id, frm, to, a, b)
            else:
                ns: i64 = self._ns
                k: i64 = kind
                m: i64 = machine
                ident: i64 = id
                f: i64 = frm
                t: i64 = to
                # Interpreted, the i64 annotations check nothing: id must be tested here.
                if (k | m | f | t) >> 16 != 0 or ident >> 63 != 0:
                    raise OverflowError
                # The u16/u64 fields at bytes 16-31 as two signed words: kind, machine and the
                # low half of id; then the high half of id, frm and to. The top field of each
                # word is taken as signed so that its product stays within 64 bits, compiled or
                # not.
                low: i64 = ident & 0xFFFF_FFFF
                if low >= 0x8000_0000:
                    low -= 0x1_0000_0000
                if t >= 0x8000:
                    t -= 0x1_0000
                ring = self._ring
                o: i64 = (seq % self._cap) * _WORDS_PER_RECORD
                ring[o] = seq
                ring[o + 1] = ns
                ring[o + 2] = k | (m << 16) | (low * 0x1_0000_0000)
                ring[o + 3] = (ident >> 32) | (f << 32) | (t * 0x1_0000_0000_0000)
                ring[o + 4] = a
                ring[o + 5] = b
        except (struct.error, TypeError, ValueError, OverflowError):
            self._emit_slow(seq, now, kind, machine, id, frm, to, a, b)
        self.seq = seq + 1

    def _emit_slow(
        self, seq: int, now: float, kind: int, machine: int, id: int, frm: int, to: int, a: int, b: int
    ) -> None:
        """A record the fast path cannot store as given: a value out of its field's range or not
        an int (clamped and counted), or one only the struct form takes (a u64 id >= 2**63)."""
        try:
            ns = ns_of(now)
            packed = RECORD.pack(seq, ns, kind, machine, id, frm, to, a, b)
        except (struct.error, TypeError, ValueError, OverflowError):
            self.clamped += 1
            try:
                ns = ns_of(now)
            except (TypeError, ValueError, OverflowError):
                ns = 0
            packed = RECORD.pack(
                seq,
                _fit(ns, _I64),
                _fit(kind, _U16),
                _fit(machine, _U16),
                _fit(id, _U64),
                _fit(frm, _U16),
                _fit(to, _U16),
                _fit(a, _I64),
                _fit(b, _I64),
            )
        if not self._words:
            self._buf[(seq % self._cap) * RECORD_SIZE : (seq % self._cap + 1) * RECORD_SIZE] = packed
            return
        ring = self._ring
        o: i64 = (seq % self._cap) * _WORDS_PER_RECORD
        for i, word in enumerate(_WORDS.unpack(packed)):
            ring[o + i] = word

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)

    # -- flushing -------------------------------------------------------------------------------
    def _parts(self, start: int, end: int) -> tuple[memoryview, ...]:
        """Views of the ring holding records [start, end) (end - start <= capacity), in order."""
        n = end - start
        if n <= 0:
            return ()
        cap = self._cap
        s = start % cap
        e = s + n
        view = self._view
        if e <= cap:
            return (view[s * RECORD_SIZE : e * RECORD_SIZE],)
        return (view[s * RECORD_SIZE :], view[: (e - cap) * RECORD_SIZE])

    def flush(self) -> int:
        """Hash every not-yet-flushed record and hand it to the sink (at most two views, in order).

        Returns the number of records flushed (also when there is no sink: they are then only
        added to the running digest).
        """
        start = self._flushed
        end = self.seq
        if end == start:
            return 0
        # Advance first so a misbehaving sink cannot make us deliver records twice.
        self._flushed = end
        self._next_flush = end + self._cap
        parts = self._parts(start, end)
        h = self._hash
        for p in parts:
            h.update(p)
        sink = self.sink
        if sink is not None:
            for p in parts:
                sink(p)
        return end - start

    @property
    def pending(self) -> int:
        """Records emitted but not yet flushed."""
        return self.seq - self._flushed

    @property
    def retained(self) -> int:
        """Records still held in the ring."""
        return min(self.seq, self._cap)

    # -- inspection -----------------------------------------------------------------------------
    def _bytes(self, start: int, end: int) -> bytes:
        return b"".join(self._parts(start, end))

    def tail(self, n: int) -> list[Record]:
        """The most recent ``n`` retained records, oldest first."""
        n = min(n, self.retained)
        if n <= 0:
            return []
        return decode_records(self._bytes(self.seq - n, self.seq))

    def records(self) -> list[Record]:
        """All retained records, oldest first."""
        return self.tail(self._cap)

    def dump(self) -> bytes:
        """Binary encoding of all retained records (flight-recorder dump)."""
        return self._bytes(self.seq - self.retained, self.seq)

    def digest(self) -> str:
        """sha256 hex over the encoding of every record ever emitted, in order."""
        h = self._hash.copy()
        for p in self._parts(self._flushed, self.seq):
            h.update(p)
        return h.hexdigest()


@dataclass(frozen=True)
class LogHeader:
    """Written once at the start of each log file.

    Binary form: ``HEADER_MAGIC`` (8 bytes), u32 little-endian length ``L`` of the payload, then
    ``L`` bytes of UTF-8 JSON (sorted keys).  Records follow immediately after.
    """

    format_version: int = LOG_FORMAT_VERSION
    code_version: str = ""
    config_digest: str = ""
    seed: int = 0
    clock_epoch_ns: int = 0  # wall-clock ns corresponding to now == 0
    monotonic_start_ns: int = 0  # value of now (in ns) when the log was started
    pid: int = 0
    hostname: str = ""

    def encode(self) -> bytes:
        fields = asdict(self)
        fields["record_size"] = RECORD_SIZE
        payload = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return HEADER_MAGIC + _HEADER_PREFIX.pack(len(payload)) + payload

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> tuple[LogHeader, int]:
        """Parse a header at the start of ``data``; returns (header, bytes consumed).

        Raises ValueError with a readable message on bad magic, truncation, corrupt JSON or an
        unsupported format version.
        """
        mlen = len(HEADER_MAGIC)
        fixed = mlen + _HEADER_PREFIX.size
        if len(data) < fixed:
            raise ValueError(f"not a pgdog-ev event log: {len(data)} bytes is too short for a header")
        if bytes(data[:mlen]) != HEADER_MAGIC:
            raise ValueError("not a pgdog-ev event log: bad magic")
        (length,) = _HEADER_PREFIX.unpack_from(data, mlen)
        end = fixed + length
        if len(data) < end:
            raise ValueError(f"truncated event log header: need {length} bytes, have {len(data) - fixed}")
        try:
            fields = json.loads(bytes(data[fixed:end]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"corrupt event log header: {exc}") from None
        if not isinstance(fields, dict):
            raise ValueError("corrupt event log header: not an object")
        version = fields.get("format_version")
        if version != LOG_FORMAT_VERSION:
            raise ValueError(
                f"unsupported event log format version {version!r} (this build reads {LOG_FORMAT_VERSION})"
            )
        rsize = fields.get("record_size", RECORD_SIZE)
        if rsize != RECORD_SIZE:
            raise ValueError(f"unsupported event record size {rsize!r} (this build reads {RECORD_SIZE})")
        kwargs = {}
        for name, typ in _HEADER_FIELDS.items():
            if name not in fields:
                raise ValueError(f"corrupt event log header: missing field {name!r}")
            value = fields[name]
            if not isinstance(value, typ) or isinstance(value, bool):
                raise ValueError(f"corrupt event log header: field {name!r} has wrong type")
            kwargs[name] = value
        return cls(**kwargs), end  # type: ignore[arg-type]


_HEADER_FIELDS: dict[str, type] = {
    "format_version": int,
    "code_version": str,
    "config_digest": str,
    "seed": int,
    "clock_epoch_ns": int,
    "monotonic_start_ns": int,
    "pid": int,
    "hostname": str,
}
